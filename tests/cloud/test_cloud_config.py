"""The config handoff: real `terraform output -json`, the cached file, env vars, flags, provenance."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import hcl2
import pytest
from click.testing import CliRunner
from cloudtest import PROJECT, WORKER_IMAGE, terraform_outputs

from mnistkit.cli.main import cli
from mnistkit.pipeline.cloud.config import SETTING_NAMES, ConfigError, load_config, refresh_config, write_config_file

REPO = Path(__file__).resolve().parents[2]


def test_the_fake_outputs_cover_the_infra_contract():
    with (REPO / "infra" / "outputs.tf").open() as f:
        declared = {name for block in hcl2.load(f)["output"] for name in block}
    assert set(terraform_outputs()) == {name.strip('"') for name in declared}


@pytest.fixture(scope="module")
def applied_module(tmp_path_factory) -> Path:
    """A provider-free root module whose outputs are terraform_outputs() (GPU variant), applied to local state.

    `terraform output -json` then prints exactly what it prints for the real infra/: the same
    names and JSON types (the gpu object, nulls, booleans, numbers).
    """
    if shutil.which("terraform") is None:
        pytest.skip("terraform is not installed")
    module = tmp_path_factory.mktemp("infra")
    outputs = terraform_outputs(
        gpu={
            "gpu_type": "nvidia-tesla-t4",
            "gpu_count": 1,
            "machine_type": "n1-standard-4",
            "worker_accelerator": "worker_accelerator=type:nvidia-tesla-t4;count:1;install-nvidia-driver",
            "zone": "us-central1-a",
            "max_workers": 4,
        },
        worker_machine_type="n1-standard-4",
    )
    (module / "main.tf").write_text(
        "".join(
            f"output {json.dumps(k)} {{\n  value = jsondecode({json.dumps(json.dumps(v))})\n}}\n"
            for k, v in outputs.items()
        )
    )
    for command in (["init", "-input=false"], ["apply", "-input=false", "-auto-approve"]):
        subprocess.run(["terraform", f"-chdir={module}", *command], check=True, capture_output=True, timeout=120)
    return module


def test_refresh_reads_terraform_and_keeps_pinned_settings(applied_module, tmp_path):
    path = tmp_path / "config.json"
    write_config_file(path, {}, {"max_workers": 2}, source="by hand")
    refresh_config(path, infra_dir=applied_module)
    document = json.loads(path.read_text())
    assert document["settings"] == {"max_workers": 2}
    assert document["terraform"]["outputs"]["gpu"]["gpu_type"] == "nvidia-tesla-t4"

    config = load_config(path=path, environ={})
    assert (config.project_id, config.worker_image, config.use_public_ips) == (PROJECT, WORKER_IMAGE, False)
    assert (config.gpu, config.worker_zone, config.machine_type) == (
        "nvidia-tesla-t4:1",
        "us-central1-a",
        "n1-standard-4",
    )
    assert config.max_workers == 2 and config.sources["max_workers"] == f"config file {path}"
    assert config.sources["gpu"] == "terraform output gpu"
    assert config.sources["worker_zone"] == "terraform output gpu.zone"


def test_a_missing_cache_is_filled_from_a_deployed_infra_dir(applied_module, tmp_path):
    (applied_module / ".terraform").mkdir(exist_ok=True)  # what `terraform init` leaves behind
    path = tmp_path / "fresh" / "config.json"
    config = load_config(path=path, environ={}, infra_dir=applied_module)
    assert config.project_id == PROJECT and path.is_file()


def test_precedence_flag_env_file_terraform_default(tmp_path):
    path = tmp_path / "config.json"
    write_config_file(path, terraform_outputs(max_workers=4), {"region": "europe-west4", "max_workers": 6}, "t")
    env = {"MNISTKIT_MAX_WORKERS": "8", "MNISTKIT_GPU": "none", "MNISTKIT_NUM_WORKERS": ""}
    config = load_config({"max_workers": ("10", "flag --max-workers")}, path=path, environ=env)
    assert config.max_workers == 10 and config.sources["max_workers"] == "flag --max-workers"
    assert config.region == "europe-west4" and config.sources["region"].startswith("config file")
    assert config.project_id == PROJECT and config.sources["project_id"] == "terraform output project_id"
    assert config.autoscaling_algorithm == "THROUGHPUT_BASED" and config.sources["autoscaling_algorithm"] == "default"
    assert config.num_workers is None and config.sources["num_workers"] == "default"
    assert config.gpu is None and config.sources["gpu"] == "env MNISTKIT_GPU (none: default)"
    assert load_config(path=path, environ=env).max_workers == 8
    assert config.model_uri == f"gs://{PROJECT}-mnistkit-models/mnist"
    assert config.label_dict() == {"app": "mnistkit"}


def test_data_locations_default_to_the_buckets_layout_and_the_deployment_is_kept(tmp_path):
    path = tmp_path / "config.json"
    outputs = terraform_outputs()
    del outputs["input_location"], outputs["output_location"]  # a cache from before infra/ published them
    write_config_file(path, outputs, {}, "t")
    config = load_config({"dataflow_kms_key": ("none", "flag --set dataflow_kms_key")}, path=path, environ={})
    assert config.input_location == f"gs://{PROJECT}-mnistkit-data/inputs"
    assert config.output_location == f"gs://{PROJECT}-mnistkit-data/outputs"
    assert config.sources["output_location"] == "default (<data_bucket>/outputs)"
    # What Terraform deployed stays visible under the overrides (the launch guards compare the two).
    assert config.deployed == outputs and config.dataflow_kms_key is None


def test_bad_values_and_names_are_reported(tmp_path):
    path = tmp_path / "config.json"
    with pytest.raises(ConfigError, match="max_workers must be an integer"):
        load_config(path=path, environ={"MNISTKIT_MAX_WORKERS": "many"})
    with pytest.raises(ConfigError, match="unknown settings"):
        load_config({"max_worker": ("1", "flag")}, path=path, environ={})
    path.write_text('{"settings": {"projet_id": "x"}}')
    with pytest.raises(ConfigError, match="projet_id"):
        load_config(path=path, environ={})
    with pytest.raises(ConfigError, match="not configured: project_id, worker_image.*MNISTKIT_PROJECT_ID"):
        load_config(path=tmp_path / "none.json", environ={}).require("project_id", "worker_image")


def test_config_show_prints_values_and_sources(cloud_env, monkeypatch):
    monkeypatch.setenv("MNISTKIT_REGION", "asia-east1")
    result = CliRunner().invoke(cli, ["config", "show", "--json", "--set", "gpu=l4:1"])
    assert result.exit_code == 0, result.output
    shown = json.loads(result.output)
    assert set(shown) == set(SETTING_NAMES)
    assert shown["gpu"] == {"value": "l4:1", "source": "flag --set gpu"}
    assert shown["region"] == {"value": "asia-east1", "source": "env MNISTKIT_REGION"}
    assert shown["worker_image"]["source"] == "terraform output worker_image"
    table = CliRunner().invoke(cli, ["config", "show"]).output
    assert f"Config file: {cloud_env}" in table and "terraform output subnetwork" in table


def test_config_refresh_without_terraform_outputs_says_so(tmp_path, monkeypatch):
    monkeypatch.setenv("MNISTKIT_CONFIG", str(tmp_path / "c.json"))
    fake = tmp_path / "bin" / "terraform"
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\necho '{}'\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake.parent}:/usr/bin:/bin")
    result = CliRunner().invoke(cli, ["config", "refresh", "--infra-dir", str(tmp_path)])
    assert result.exit_code == 1 and "has no outputs: run `make deploy` first" in result.output
