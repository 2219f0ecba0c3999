"""Dataflow launches: options from the config, the launch guards, GPUs, the code wheel, and a real job
built and staged offline (its options, and the tables, model and dead-letter prefix inside its pipeline)."""

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
from cloudtest import (
    DATA_BUCKET,
    DATAFLOW_BUCKET,
    DATASET,
    INPUT_SUBSCRIPTION,
    KMS_KEY,
    OUTPUT_LOCATION,
    PROJECT,
    SUBNETWORK,
    WORKER_IMAGE,
    WORKER_SA,
    terraform_outputs,
)

from mnistkit.cli.main import cli
from mnistkit.pipeline.cloud.config import ConfigError, load_config, write_config_file
from mnistkit.pipeline.cloud.gpus import GPU_TYPES, gpu_machine_type, parse_gpu
from mnistkit.pipeline.cloud.launch import (
    DataflowRunnerConfig,
    LaunchRefused,
    build_code_wheel,
    dataflow_args,
    launch_stream,
    stream_input,
)

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


# The refusals' texts, as infra/README.md promises them.
NO_SA = (
    "Dataflow launch refused: no worker service account. Set worker_service_account from the Terraform output "
    "worker_service_account (make deploy, then mnistkit config refresh); without it Dataflow runs as the "
    "Compute Engine default service account."
)
NO_SUBNET = (
    "Dataflow launch refused: no subnetwork. Set subnetwork from the Terraform output subnetwork (make deploy, "
    "then mnistkit config refresh); without it workers start on the project's default network."
)
PUBLIC_IPS = (
    "Dataflow launch refused: public worker IPs requested. The Terraform output use_public_ips is false: "
    "workers reach Google APIs privately and the network allows no other egress; remove the use_public_ips "
    "override."
)
NO_KEY = (
    "Dataflow launch refused: the kit encrypts with CMEK but no Dataflow key is set. Set dataflow_kms_key from "
    "the Terraform output dataflow_kms_key."
)


@pytest.mark.parametrize(
    ("settings", "refusals"),
    [
        ({"worker_service_account": "none"}, [NO_SA]),
        ({"subnetwork": "none"}, [NO_SUBNET]),
        ({"use_public_ips": "true"}, [PUBLIC_IPS]),
        ({"worker_service_account": "", "subnetwork": "none", "use_public_ips": "yes"}, [NO_SA, NO_SUBNET, PUBLIC_IPS]),
    ],
)
def test_a_launch_without_the_kits_identity_or_network_is_refused(cloud_env, settings, refusals):
    with pytest.raises(LaunchRefused) as refused:
        dataflow_args(_config(**settings), job_name="j")
    lines = str(refused.value).splitlines()
    assert [line.split(" (given by")[0] for line in lines] == refusals
    if "use_public_ips" in settings:
        assert lines[-1].endswith("(given by flag --use_public_ips)")


def test_public_ips_from_the_environment_or_the_config_file_are_refused_too(cloud_env, monkeypatch):
    monkeypatch.setenv("MNISTKIT_USE_PUBLIC_IPS", "true")
    with pytest.raises(LaunchRefused, match="env MNISTKIT_USE_PUBLIC_IPS"):
        dataflow_args(load_config(), job_name="j")
    monkeypatch.delenv("MNISTKIT_USE_PUBLIC_IPS")
    write_config_file(cloud_env, terraform_outputs(), {"use_public_ips": True}, source="tests")
    with pytest.raises(LaunchRefused, match="public worker IPs requested.*config file"):
        dataflow_args(load_config(), job_name="j")


def test_the_cmek_key_reaches_dataflow_and_cannot_be_dropped(cloud_env, monkeypatch):
    assert not [a for a in dataflow_args(load_config(), job_name="j") if "kms" in a]  # no CMEK deployed
    write_config_file(cloud_env, terraform_outputs(dataflow_kms_key=KMS_KEY), {}, source="tests")
    assert f"--dataflow_kms_key={KMS_KEY}" in dataflow_args(load_config(), job_name="j")
    other = KMS_KEY.replace("/data", "/other")
    assert f"--dataflow_kms_key={other}" in dataflow_args(_config(dataflow_kms_key=other), job_name="j")
    for unset in ("none", ""):
        with pytest.raises(LaunchRefused) as refused:
            dataflow_args(_config(dataflow_kms_key=unset), job_name="j")
        assert str(refused.value) == NO_KEY
    # Set by hand without Terraform's CMEK, the key still reaches the job.
    monkeypatch.setenv("MNISTKIT_DATAFLOW_KMS_KEY", KMS_KEY)
    write_config_file(cloud_env, terraform_outputs(), {}, source="tests")
    assert f"--dataflow_kms_key={KMS_KEY}" in dataflow_args(load_config(), job_name="j")


def test_a_stream_on_dataflow_reads_the_kits_subscription_not_a_topic(cloud_env, exported_model, tmp_path):
    from mnistkit.pipeline.streaming.pipeline import StreamConfig

    config = load_config()
    assert stream_input(None, config) == f"pubsub://{INPUT_SUBSCRIPTION}"
    assert stream_input(f"pubsub://{INPUT_SUBSCRIPTION}", config) == f"pubsub://{INPUT_SUBSCRIPTION}"
    topic = f"pubsub://projects/{PROJECT}/topics/mnistkit-input"
    stream = StreamConfig(model=str(exported_model), input=topic, output=f"{OUTPUT_LOCATION}/stream")
    # Refused before the wheel, the quota or Beam: nothing is needed to see that.
    with pytest.raises(
        LaunchRefused, match=f"is a topic.*pubsub_input_subscription.*--input pubsub://{INPUT_SUBSCRIPTION}"
    ):
        launch_stream(stream, DataflowRunnerConfig(config, job_name="s"))
    with pytest.raises(ConfigError, match="not configured: pubsub_input_subscription"):
        stream_input("", _config(pubsub_input_subscription="none"))


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


def _staged_pipeline(staged_files: dict[str, bytes]):
    """The pipeline proto the dry run staged: what Dataflow would run."""
    from apache_beam.portability.api import beam_runner_api_pb2

    (data,) = [data for name, data in staged_files.items() if name.endswith("/pipeline.pb")]
    pipeline = beam_runner_api_pb2.Pipeline()
    pipeline.ParseFromString(data)
    return pipeline


def _display_data(pipeline) -> dict[str, dict[str, object]]:
    """{transform name: {label: value}} of every transform's display data."""
    from apache_beam.portability.api import beam_runner_api_pb2

    shown: dict[str, dict[str, object]] = {}
    for transform in pipeline.components.transforms.values():
        for item in transform.display_data:
            payload = beam_runner_api_pb2.LabelledPayload()
            payload.ParseFromString(item.payload)
            shown.setdefault(transform.unique_name, {})[payload.label] = getattr(payload, payload.WhichOneof("value"))
    return shown


def _served_model(pipeline) -> str:
    """The model URI inside the staged RunInference step (unpickled as a worker would)."""
    from apache_beam.internal import pickler
    from apache_beam.portability.api import beam_runner_api_pb2

    (transform,) = [t for t in pipeline.components.transforms.values() if t.unique_name.endswith("BeamML_RunInference")]
    payload = beam_runner_api_pb2.ParDoPayload()
    payload.ParseFromString(transform.spec.payload)
    do_fn = pickler.loads(payload.do_fn.payload)[0]
    return do_fn._model_handler._model_uri  # the handler's only record of it


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
    # A table output's dead letters go under output_location, the one data prefix the worker may write.
    assert f"Dead letters: {OUTPUT_LOCATION}/runs/mnistkit-dry-run-errors-*.jsonl" in result.output
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
    # What the staged pipeline reads, serves and writes: the tables, the write disposition, the
    # model version resolved at launch, and the dead-letter prefix.
    pipeline = _staged_pipeline(staged_files)
    shown = _display_data(pipeline)
    read = shown["ReadBigQuery/Read/Read"]
    assert "tableId: 'images'" in read["table_reference"] and f"projectId: '{PROJECT}'" in read["table_reference"]
    assert read["method"] == "DIRECT_READ"
    assert shown["WritePredictions/Write"]["Table"] == f"{PROJECT}:{DATASET}.predictions"
    (load,) = [v for k, v in shown.items() if "TriggerLoadJobsWithoutTempTables" in k]
    assert (load["write_disposition"], load["create_disposition"]) == ("WRITE_TRUNCATE", "CREATE_IF_NEEDED")
    (version,) = {
        u.removeprefix(f"{staged.model_uri}/").split("/")[0]
        for u in staged.uploaded
        if u.startswith(f"{staged.model_uri}/")
    }
    assert _served_model(pipeline) == f"{staged.model_uri}/{version}"
    assert shown["WriteDeadLetters/Write/WriteImpl/WriteBundles"]["File Pattern"].startswith(
        f"{OUTPUT_LOCATION}/runs/mnistkit-dry-run-errors-"
    )


def test_a_cpu_job_with_gcs_files_and_cmek(staged, google_apis, cloud_env):
    write_config_file(cloud_env, terraform_outputs(dataflow_kms_key=KMS_KEY), {}, source="tests")
    output = f"{OUTPUT_LOCATION}/predictions/run1"
    result = CliRunner().invoke(
        cli,
        [
            "predict", "--runner", "dataflow", "--dry-run", "--job-name", "mnistkit-cpu",
            "--model", staged.model_uri, "--input", staged.input_uris[0], "--output", output,
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert not google_apis.requests  # no GPU, no quota check
    job = json.loads(_gcs_objects("tmp/dry-runs/")["tmp/dry-runs/mnistkit-cpu.json"])
    environment = job["environment"]
    (pool,) = environment["workerPools"]
    assert "serviceOptions" not in environment and "machineType" not in pool
    assert pool["ipConfiguration"] == "WORKER_IP_PRIVATE" and pool["subnetwork"] == SUBNETWORK
    assert environment["serviceAccountEmail"] == WORKER_SA and environment["serviceKmsKeyName"] == KMS_KEY
    assert "use_multiple_sdk_containers" in environment["experiments"]
    # A file output keeps its dead letters beside the predictions, all under output_location.
    shown = _display_data(_staged_pipeline(_gcs_objects("staging/")))
    patterns = {k.split("/")[0]: v["File Pattern"] for k, v in shown.items() if "File Pattern" in v}
    assert patterns["WritePredictions"].startswith(f"{output}-") and patterns["WriteDeadLetters"].startswith(
        f"{output}-errors-"
    )


@pytest.mark.parametrize(
    ("settings", "refusal"),
    [(["--set", "worker_service_account=none"], NO_SA), (["--set", "subnetwork="], NO_SUBNET),
     (["--set", "use_public_ips=true"], PUBLIC_IPS)],
)  # fmt: skip
def test_a_refused_gpu_launch_stages_nothing_and_asks_no_api(staged, google_apis, settings, refusal):
    result = CliRunner().invoke(
        cli,
        [
            "predict", "--runner", "dataflow", "--dry-run", "--gpu", "t4:1", *settings,
            "--model", staged.model_uri, "--input", staged.input_uris[0], "--output", f"{OUTPUT_LOCATION}/p/x",
        ],
    )  # fmt: skip
    assert result.exit_code == 1 and refusal in " ".join(result.output.split())
    assert not google_apis.requests and not _gcs_objects("staging/") and not _gcs_objects("tmp/")


@pytest.mark.parametrize("flag", ["--output", "--errors-output"])
def test_outputs_the_worker_cannot_write_are_refused(staged, google_apis, flag):
    outputs = {"--output": f"{OUTPUT_LOCATION}/p/x", flag: f"gs://{DATA_BUCKET}/inputs/x"}
    result = CliRunner().invoke(
        cli,
        ["predict", "--runner", "dataflow", "--dry-run", "--model", staged.model_uri, "--input", staged.input_uris[0],
         *[arg for pair in outputs.items() for arg in pair]],
    )  # fmt: skip
    assert result.exit_code == 1
    assert f"{flag} gs://{DATA_BUCKET}/inputs/x is in the data bucket outside {OUTPUT_LOCATION}/" in result.output
    assert not _gcs_objects("staging/")


def test_the_quota_gate_stops_a_gpu_launch(staged, google_apis):
    result = CliRunner().invoke(
        cli,
        [
            "predict", "--runner", "dataflow", "--dry-run", "--gpu", "t4:1", "--max-workers", "9",
            "--model", staged.model_uri, "--input", staged.input_uris[0], "--output", f"{OUTPUT_LOCATION}/p/x",
        ],
    )  # fmt: skip
    assert result.exit_code == 1
    assert "Raise NVIDIA_T4_GPUS and GPUS_ALL_REGIONS to at least 9" in result.output
    assert not _gcs_objects("staging/") and not _gcs_objects("tmp/")


def test_a_stream_dry_run_reads_the_kits_subscription_and_writes_under_output_location(staged, google_apis):
    """No input on Dataflow: the staged streaming job reads pubsub_input_subscription; a table
    output's dead letters default to output_location/runs/JOB."""
    from mnistkit.pipeline.cloud.launch import dry_run_location
    from mnistkit.pipeline.streaming.pipeline import StreamConfig

    cloud = load_config()
    runner = DataflowRunnerConfig(
        cloud, job_name="mnistkit-stream-dry", template_location=dry_run_location(cloud, "mnistkit-stream-dry")
    )
    output = f"bq://{PROJECT}.{DATASET}.stream_predictions"
    launch = launch_stream(StreamConfig(model=staged.model_uri, input="", output=output), runner)
    assert not launch.submitted
    assert launch.run.config.input == f"pubsub://{INPUT_SUBSCRIPTION}"
    assert launch.run.config.errors_folder == f"{OUTPUT_LOCATION}/runs/mnistkit-stream-dry"
    job = json.loads(_gcs_objects("tmp/dry-runs/")["tmp/dry-runs/mnistkit-stream-dry.json"])
    assert job["type"] == "JOB_TYPE_STREAMING" and job["environment"]["serviceAccountEmail"] == WORKER_SA
    shown = str(_display_data(_staged_pipeline(_gcs_objects("staging/"))))
    assert INPUT_SUBSCRIPTION in shown and "topics/" not in shown


def test_a_local_stream_still_needs_its_input(cloud_env, exported_model, tmp_path):
    result = CliRunner().invoke(cli, ["stream", "--model", str(exported_model), "--output", str(tmp_path)])
    assert result.exit_code == 2 and "a local stream needs --input" in result.output


def test_simulate_stream_defaults_to_the_kits_topic_only_when_configured(cloud_env, tmp_path, monkeypatch):
    monkeypatch.setenv("MNISTKIT_CONFIG", str(tmp_path / "none.json"))
    result = CliRunner().invoke(cli, ["simulate-stream", "--count", "1"])
    assert result.exit_code == 1 and "not configured: pubsub_input_topic" in result.output
