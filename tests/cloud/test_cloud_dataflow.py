"""Dataflow launches: options from the config, GPUs, the code wheel, and a real job built and staged offline."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import hcl2
import pytest
from click.testing import CliRunner
from cloudtest import DATA_BUCKET, DATAFLOW_BUCKET, DATASET, PROJECT, SUBNETWORK, WORKER_IMAGE, WORKER_SA

from mnistkit.cli.main import cli
from mnistkit.pipeline.cloud.config import ConfigError, load_config
from mnistkit.pipeline.cloud.gpus import GPU_TYPES, gpu_machine_type, parse_gpu
from mnistkit.pipeline.cloud.launch import build_code_wheel, dataflow_args

REPO = Path(__file__).resolve().parents[2]


def _config(**settings):
    return load_config({name: (str(value), f"flag --{name}") for name, value in settings.items()})


def test_gpu_specs():
    assert str(parse_gpu("t4:1")) == "nvidia-tesla-t4:1" and str(parse_gpu("L4")) == "nvidia-l4:1"
    assert parse_gpu("nvidia-tesla-a100:2").service_option == (
        "worker_accelerator=type:nvidia-tesla-a100;count:2;install-nvidia-driver"
    )
    for bad, message in (("k80:1", "unknown GPU type"), ("t4:3", "comes 1, 2, 4 per worker"), ("t4:x", "whole")):
        with pytest.raises(ConfigError, match=message):
            parse_gpu(bad)


def test_machine_type_must_fit_the_gpu():
    l4 = parse_gpu("l4:1")
    assert gpu_machine_type(l4, None, from_user=False) == "g2-standard-4"
    assert gpu_machine_type(l4, "g2-standard-8", from_user=True) == "g2-standard-8"
    # Inherited from infra deployed for T4s: replaced. Asked for by the user: refused.
    assert gpu_machine_type(l4, "n1-standard-4", from_user=False) == "g2-standard-4"
    with pytest.raises(ConfigError, match="g2-standard-24 \\(2\\)"):
        gpu_machine_type(l4, "g2-standard-24", from_user=True)
    assert gpu_machine_type(parse_gpu("t4:2"), "n1-highmem-8", from_user=True) == "n1-highmem-8"


def test_the_gpu_catalog_matches_the_terraform_one():
    with (REPO / "infra" / "modules" / "gpu_placement" / "main.tf").open() as f:
        catalog = hcl2.load(f)["locals"][0]["catalog"]

    def unquote(text):
        return text.strip('"') if isinstance(text, str) else text

    terraform = {
        unquote(name): (
            unquote(entry["quota_metric"]),
            unquote(entry["family"]),
            {int(unquote(k)): unquote(v) for k, v in entry["defaults"].items()},
            entry["bundled"],
            {unquote(k): v for k, v in entry["extra_machines"].items()},
        )
        for name, entry in catalog.items()
    }
    python = {
        name: (gpu.quota_metric, gpu.family, gpu.defaults, gpu.bundled, gpu.extra_machines)
        for name, gpu in GPU_TYPES.items()
    }
    assert python == terraform


def test_cpu_options_come_from_the_config(cloud_env):
    args = dataflow_args(load_config(), job_name="mnistkit-test", code_wheel="/tmp/code.whl")
    assert "--runner=DataflowRunner" in args and f"--project={PROJECT}" in args and "--region=us-central1" in args
    assert f"--temp_location=gs://{DATAFLOW_BUCKET}/tmp" in args
    assert f"--staging_location=gs://{DATAFLOW_BUCKET}/staging" in args
    assert f"--service_account_email={WORKER_SA}" in args and f"--subnetwork={SUBNETWORK}" in args
    assert "--no_use_public_ips" in args and "--max_num_workers=4" in args
    assert "--autoscaling_algorithm=THROUGHPUT_BASED" in args and "--labels=app=mnistkit" in args
    assert f"--sdk_container_image={WORKER_IMAGE}" in args and "--sdk_location=container" in args
    assert "--extra_package=/tmp/code.whl" in args and "--job_name=mnistkit-test" in args
    assert not [a for a in args if "accelerator" in a or "machine_type" in a or "experiments" in a]


def test_gpu_options(cloud_env, monkeypatch):
    monkeypatch.setenv("MNISTKIT_NUM_WORKERS", "2")
    args = dataflow_args(_config(gpu="l4:1", labels="team=ml,env=dev"), job_name="j")
    assert "--dataflow_service_options=worker_accelerator=type:nvidia-l4;count:1;install-nvidia-driver" in args
    assert "--machine_type=g2-standard-4" in args and "--experiments=no_use_multiple_sdk_containers" in args
    assert "--num_workers=2" in args and "--labels=team=ml" in args and "--labels=env=dev" in args
    with pytest.raises(ConfigError, match="does not carry"):
        dataflow_args(_config(gpu="l4:1", machine_type="n1-standard-4"), job_name="j")
    with pytest.raises(ConfigError, match="not configured: worker_image"):
        dataflow_args(_config(worker_image="none"), job_name="j")
    with pytest.raises(ConfigError, match="job name"):
        dataflow_args(_config(), job_name="Bad_Name")


def test_the_code_wheel_installs_offline_without_dependencies(tmp_path):
    wheel = build_code_wheel(tmp_path / "dist")
    assert wheel.name == "mnist_dataflow_kit-0.1.0-py3-none-any.whl"
    assert build_code_wheel(tmp_path / "again").read_bytes() == wheel.read_bytes()  # reproducible
    target = tmp_path / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--no-index",
            "--no-deps",
            "--quiet",
            "--target",
            str(target),
            str(wheel),
        ],
        check=True,
    )
    assert (target / "mnistkit" / "pipeline" / "batch.py").read_bytes() == (REPO / "pipeline" / "batch.py").read_bytes()
    assert not (target / "mnistkit" / "cli").exists() and not (target / "pipeline").exists()
    # What a worker does with it: import the kit's pipeline from the wheel alone, as `mnistkit.*`.
    probe = "import mnistkit.pipeline.batch as b, mnistkit.pipeline.io.parsing as p; print(b.__file__, p.__file__)"
    imported = subprocess.run(
        [sys.executable, "-c", probe], env={**os.environ, "PYTHONPATH": str(target)}, cwd=tmp_path,
        capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    assert all(path.startswith(str(target)) for path in imported), imported
    metadata = next(target.glob("mnist_dataflow_kit-*.dist-info")) / "METADATA"
    assert "Requires-Dist" not in metadata.read_text()


@pytest.fixture
def staged(cloud_env, gcs, exported_model, mnist_test_set, tmp_path):
    """The exported model and a text input on the GCS emulator, as `mnistkit stage` puts them."""
    import numpy as np

    from mnistkit.pipeline.cloud.staging import stage
    from mnistkit.pipeline.io.formats import encode_text

    images, _ = mnist_test_set
    path = tmp_path / "digits.txt"
    path.write_bytes(encode_text(np.arange(50), images[:50].reshape(50, -1)) + b"bad:row\n")
    report = stage(load_config(), exported_model, [path], load_bigquery=False, progress=False)
    return report


def _gcs_objects(prefix: str) -> dict[str, bytes]:
    from google.cloud import storage

    client = storage.Client(project=PROJECT)
    return {b.name: b.download_as_bytes() for b in client.list_blobs(DATAFLOW_BUCKET, prefix=prefix)}


def test_a_gpu_job_is_built_and_staged_without_being_submitted(staged, google_apis):
    """The dry run: Beam's DataflowRunner stages everything on the GCS emulator and writes the job."""
    result = CliRunner().invoke(
        cli,
        [
            "predict", "--runner", "dataflow", "--dry-run", "--gpu", "t4:1", "--max-workers", "3",
            "--job-name", "mnistkit-dry-run",
            "--model", staged.model_uri, "--input", f"bq://{PROJECT}.{DATASET}.images",
            "--output", f"bq://{PROJECT}.{DATASET}.predictions", "--bigquery-write", "truncate",
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    description = f"gs://{DATAFLOW_BUCKET}/tmp/dry-runs/mnistkit-dry-run.json"
    assert f"Job description: {description}" in result.output
    assert f"Dead letters: gs://{DATA_BUCKET}/runs/mnistkit-dry-run-errors-*.jsonl" in result.output
    # The quota gate ran first (T4: 3 free in the region, 7 in all regions).
    assert [path.rsplit("/", 1)[-1] for path, _, _ in google_apis.requests] == ["us-central1", PROJECT]

    job = json.loads(_gcs_objects("tmp/dry-runs/")["tmp/dry-runs/mnistkit-dry-run.json"])
    environment = job["environment"]
    (pool,) = environment["workerPools"]
    assert job["name"] == "mnistkit-dry-run" and job["type"] == "JOB_TYPE_BATCH"
    assert environment["serviceAccountEmail"] == WORKER_SA
    assert environment["serviceOptions"] == ["worker_accelerator=type:nvidia-tesla-t4;count:1;install-nvidia-driver"]
    assert "no_use_multiple_sdk_containers" in environment["experiments"]
    assert pool["subnetwork"] == SUBNETWORK and pool["ipConfiguration"] == "WORKER_IP_PRIVATE"
    assert pool["machineType"] == "n1-standard-4" and pool["autoscalingSettings"]["maxNumWorkers"] == 3
    assert pool["workerHarnessContainerImage"] == WORKER_IMAGE
    assert {image["containerImage"] for image in pool["sdkHarnessContainerImages"]} == {WORKER_IMAGE}
    assert job["labels"] == {"app": "mnistkit"}

    # The project's code reaches the workers: the wheel is staged and listed for installation.
    packages = {p["name"]: p["location"] for p in pool["packages"]}
    wheel_name = "mnist_dataflow_kit-0.1.0-py3-none-any.whl"
    assert wheel_name in packages and "extra_packages.txt" in packages
    staged_files = _gcs_objects("staging/")
    by_name = {name.rsplit("/", 1)[-1]: data for name, data in staged_files.items()}
    assert by_name["extra_packages.txt"].decode().split() == [wheel_name]
    with zipfile.ZipFile(io.BytesIO(by_name[wheel_name])) as wheel:
        names = set(wheel.namelist())
    assert {
        "mnistkit/pipeline/batch.py",
        "mnistkit/pipeline/io/bigquery.py",
        "mnistkit/pipeline/inference/handler.py",
        "mnistkit/model_export/model.py",
    } <= names
    # ... and the pipeline really is the kit's: its steps, and options naming the staged model.
    options = environment["sdkPipelineOptions"]["options"]
    assert options["machine_type"] == "n1-standard-4" and options["sdk_location"] == "container"
    assert "pipeline.pb" in by_name and b"ReadBigQuery" in by_name["pipeline.pb"]
    assert b"mnistkit_RunInference" in by_name["pipeline.pb"] or b"RunInference" in by_name["pipeline.pb"]


def test_a_cpu_job_with_gcs_files(staged, google_apis):
    result = CliRunner().invoke(
        cli,
        [
            "predict", "--runner", "dataflow", "--dry-run", "--job-name", "mnistkit-cpu",
            "--model", staged.model_uri, "--input", staged.input_uris[0],
            "--output", f"gs://{DATA_BUCKET}/predictions/run1",
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert not google_apis.requests  # no GPU, no quota check
    job = json.loads(_gcs_objects("tmp/dry-runs/")["tmp/dry-runs/mnistkit-cpu.json"])
    (pool,) = job["environment"]["workerPools"]
    assert "serviceOptions" not in job["environment"] and "machineType" not in pool
    assert pool["ipConfiguration"] == "WORKER_IP_PRIVATE"
    assert "use_multiple_sdk_containers" in job["environment"]["experiments"]


def test_the_quota_gate_stops_a_gpu_launch(staged, google_apis):
    result = CliRunner().invoke(
        cli,
        [
            "predict", "--runner", "dataflow", "--dry-run", "--gpu", "t4:1", "--max-workers", "9",
            "--model", staged.model_uri, "--input", staged.input_uris[0], "--output", f"gs://{DATA_BUCKET}/p/x",
        ],
    )  # fmt: skip
    assert result.exit_code == 1
    assert "Raise NVIDIA_T4_GPUS and GPUS_ALL_REGIONS to at least 9" in result.output
    assert not _gcs_objects("staging/") and not _gcs_objects("tmp/")
