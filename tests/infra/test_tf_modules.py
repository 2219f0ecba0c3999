"""Real terraform on what works offline: fmt, `terraform test` of gpu_placement, its quota
message, a real apply through pytest-terraform, and root validate when the provider exists."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import hcl2
import pytest
from pytest_terraform import terraform
from tfhelpers import (
    IAM_VARS,
    INFRA,
    MODULES,
    TERRAFORM,
    copy_module,
    load_hcl,
    load_module,
    requires_terraform,
    run_terraform,
    terraform_env,
    top_level_blocks,
)

pytestmark = requires_terraform

GPU_TESTS = MODULES / "gpu_placement" / "tests"


@pytest.fixture(scope="module")
def gpu_module(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    """An initialised copy of gpu_placement (init once: it is the slow part)."""
    tmp = tmp_path_factory.mktemp("gpu_placement")
    workdir = copy_module(MODULES / "gpu_placement", tmp / "module")
    env = terraform_env(tmp / "data")
    result = run_terraform(["init", "-backend=false", "-input=false"], workdir, env)
    assert result.returncode == 0, result.stdout + result.stderr
    return workdir, env


def test_fmt_is_clean(tmp_path):
    result = run_terraform(["fmt", "-check", "-recursive", "-diff", str(INFRA)], INFRA, terraform_env(tmp_path))
    assert result.returncode == 0, f"run `terraform fmt -recursive infra`:\n{result.stdout}{result.stderr}"


def test_gpu_placement_terraform_test_passes(gpu_module):
    workdir, env = gpu_module
    result = run_terraform(["test"], workdir, env)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    runs = sum(len(re.findall(r'^run "', p.read_text(), re.M)) for p in GPU_TESTS.glob("*.tftest.hcl"))
    assert runs >= 20
    assert f"Success! {runs} passed, 0 failed." in output, output


def _plan_json(workdir: Path, env: dict[str, str], tmp_path: Path, variables: dict) -> tuple[int, list[dict]]:
    var_file = tmp_path / "plan.tfvars.json"
    var_file.write_text(json.dumps(variables))
    result = run_terraform(["plan", "-json", "-input=false", f"-var-file={var_file}"], workdir, env)
    messages = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    return result.returncode, [m["diagnostic"] for m in messages if m.get("type") == "diagnostic"]


def plan_error(gpu_module, tmp_path: Path, **variables) -> str:
    """The one error a failing plan reports, whitespace-normalised (terraform wraps lines)."""
    code, diagnostics = _plan_json(*gpu_module, tmp_path, variables)
    errors = [d for d in diagnostics if d["severity"] == "error"]
    assert code != 0 and len(errors) == 1, diagnostics
    return " ".join(errors[0]["detail"].split())


def test_quota_shortfall_names_the_quota_to_raise(gpu_module, tmp_path):
    detail = plan_error(
        gpu_module,
        tmp_path,
        region="us-central1",
        gpu_type="nvidia-tesla-t4",
        max_workers=8,
        quota_dimensions_infos={
            "regional": [{"dimensions": {"region": "us-central1"}, "details": [{"value": "4"}]}],
            "all_regions": [{"dimensions": {}, "details": [{"value": "-1"}]}],
        },
    )
    assert "max_workers (8) x gpu_count (1) = 8 GPUs" in detail
    assert "NVIDIA_T4_GPUS (region us-central1) is 4" in detail
    assert "Raise NVIDIA_T4_GPUS to at least 8" in detail
    assert "GPUS_ALL_REGIONS" not in detail, "an unlimited quota (-1) is not a shortfall"


def test_both_quotas_short_are_both_named(gpu_module, tmp_path):
    detail = plan_error(
        gpu_module,
        tmp_path,
        region="europe-west4",
        gpu_type="nvidia-l4",
        gpu_count=2,
        max_workers=2,
        quota_dimensions_infos={
            "regional": [{"dimensions": {}, "details": [{"value": "1"}]}],
            "all_regions": [{"dimensions": {}, "details": [{"value": "0"}]}],
        },
    )
    assert "GPUS_ALL_REGIONS (all regions) is 0; NVIDIA_L4_GPUS (region europe-west4) is 1" in detail
    assert "Raise GPUS_ALL_REGIONS and NVIDIA_L4_GPUS to at least 4" in detail


def test_wrong_machine_family_message_explains_the_family(gpu_module, tmp_path):
    detail = plan_error(gpu_module, tmp_path, region="us-central1", gpu_type="nvidia-l4", machine_type="n1-standard-8")
    assert "L4 GPUs come only with G2 machine types" in detail


def test_tfvars_example_is_a_valid_gpu_plan(gpu_module, tmp_path):
    example = load_hcl(INFRA / "terraform.tfvars.example")
    # Root variable -> gpu_placement variable, as wired in infra/main.tf.
    names = {
        "region": "region",
        "gpu_type": "gpu_type",
        "gpu_count": "gpu_count",
        "max_workers": "max_workers",
        "worker_machine_type": "machine_type",
        "worker_zone": "zone",
    }
    variables = {"region": load_module(INFRA)["variable"]["region"]["default"]}
    variables.update({names[k]: v for k, v in example.items() if k in names})
    assert variables.get("gpu_type"), "the example should show a GPU setup"
    code, diagnostics = _plan_json(*gpu_module, tmp_path, variables)
    assert code == 0, diagnostics


def harness(module_dir: Path, dest: Path, with_locals: bool = False) -> Path:
    """A module's variables (and optionally its locals) without its resources: enough for
    `terraform console` to run the variable validations and evaluate the locals when the
    resources' provider is not installable."""
    dest.mkdir()
    shutil.copy(module_dir / "variables.tf", dest)
    if with_locals:
        blocks = top_level_blocks((module_dir / "main.tf").read_text(), "locals")
        (dest / "locals.tf").write_text("\n\n".join(blocks) + "\n")
    return dest


def console(workdir: Path, env: dict[str, str], expression: str, *args: str) -> subprocess.CompletedProcess:
    # console reports invalid variables on stderr but still exits 0: callers read stderr.
    return subprocess.run(
        [TERRAFORM, "console", "-no-color", *args],
        input=f"jsonencode({expression})\n",
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def console_json(workdir: Path, env: dict[str, str], expression: str, *args: str):
    result = console(workdir, env, expression, *args)
    assert result.returncode == 0 and "Error:" not in result.stderr, result.stdout + result.stderr
    return json.loads(json.loads(result.stdout.strip().splitlines()[-1]))


# Realistic values for each google-backed module's required variables.
REQUIRED_VARS = {
    "services": ["-var=project_id=demo-proj"],
    "storage": [
        "-var=project_id=demo-proj",
        "-var=location=us-central1",
        "-var=name_prefix=demo-proj-mnistkit",
    ],
    "bigquery": ["-var=project_id=demo-proj", "-var=location=us-central1"],
    "iam": [
        *IAM_VARS,
        '-var=launcher_members=["user:you@example.com"]',
        '-var=model_publisher_members=["group:ml-release@example.com"]',
    ],
    "pubsub": ["-var=project_id=demo-proj"],
    "cmek": ["-var=project_id=demo-proj"],
    "artifact_registry": ["-var=project_id=demo-proj", "-var=location=us-central1"],
    "network": [
        "-var=project_id=demo-proj",
        "-var=region=us-central1",
        "-var=worker_service_account=mnistkit-worker@demo-proj.iam.gserviceaccount.com",
    ],
    "vertex_endpoint": ["-var=project_id=demo-proj", "-var=region=us-central1"],
    "root": ["-var=project_id=demo-proj", f"-var-file={INFRA / 'terraform.tfvars.example'}"],
}


@pytest.mark.parametrize("module", list(REQUIRED_VARS))
def test_defaults_and_realistic_values_pass_validation(module, tmp_path):
    """Validation rules of the google-backed modules run nowhere else offline."""
    workdir = harness(INFRA if module == "root" else MODULES / module, tmp_path / module)
    assert console_json(workdir, terraform_env(tmp_path / "data"), "true", *REQUIRED_VARS[module]) is True


@pytest.mark.parametrize(
    ("module", "bad"),
    [
        ("root", "-var=project_id=Demo_Proj"),
        ("storage", "-var=name_prefix=UPPER"),
        ("bigquery", "-var=dataset_id=has-dash"),
        ("iam", '-var=launcher_members=["you@example.com"]'),
        ("network", "-var=subnet_cidr=10.10.0.0"),
        ("artifact_registry", "-var=repository_id=Repo"),
        ("root", "-var=worker_image_tag=latest"),
        ("root", "-var=kms_key_name=projects/p/locations/europe-west4/keyRings/r/cryptoKeys/k"),
        ("iam", '-var=prefixes={outputs = "", temp = "tmp/", build_source = "cloudbuild/"}'),
        ("pubsub", "-var=max_delivery_attempts=4"),
        ("network", "-var=worker_service_account=someone@example.com"),
        ("cmek", "-var=kms_key_name=not-a-key"),
        ("vertex_endpoint", "-var=endpoint_id=mnistkit"),
        ("iam", '-var=endpoint_invoker_members=["app@example.com"]'),
        ("root", "-var=serving_image_tag=latest"),
    ],
)
def test_validation_rejects_bad_values(module, bad, tmp_path):
    workdir = harness(INFRA if module == "root" else MODULES / module, tmp_path / module)
    result = console(workdir, terraform_env(tmp_path / "data"), "true", *REQUIRED_VARS[module], bad)
    assert "Error: Invalid value for variable" in result.stderr, result.stdout + result.stderr


TFTEST = Path(__file__).parent / "tftest"


@pytest.mark.parametrize("module", sorted(p.name.removesuffix(".tftest.hcl") for p in TFTEST.glob("*.tftest.hcl")))
def test_variable_validation_with_terraform_test(module, tmp_path):
    """`terraform test` on a module's variables alone: the google-backed modules cannot be
    planned offline, their variables can."""
    workdir = harness(INFRA if module == "root" else MODULES / module, tmp_path / module)
    (workdir / "tests").mkdir()
    shutil.copy(TFTEST / f"{module}.tftest.hcl", workdir / "tests")
    env = terraform_env(tmp_path / "data")
    init = run_terraform(["init", "-backend=false", "-input=false"], workdir, env)
    assert init.returncode == 0, init.stdout + init.stderr
    result = run_terraform(["test"], workdir, env)
    output = result.stdout + result.stderr
    runs = len(re.findall(r'^run "', (TFTEST / f"{module}.tftest.hcl").read_text(), re.M))
    assert result.returncode == 0 and f"Success! {runs} passed, 0 failed." in output, output


def test_every_module_with_new_validations_has_a_terraform_test():
    assert {p.name.removesuffix(".tftest.hcl") for p in TFTEST.glob("*.tftest.hcl")} >= {
        "root",
        "iam",
        "pubsub",
        "network",
        "cmek",
        "bigquery",
        "vertex_endpoint",
    }


def test_bigquery_schemas_match_the_pipeline_rows(tmp_path):
    workdir = harness(MODULES / "bigquery", tmp_path / "bigquery", with_locals=True)
    tables = console_json(workdir, terraform_env(tmp_path / "data"), "local.tables", *REQUIRED_VARS["bigquery"])
    assert {k: t["id"] for k, t in tables.items()} == {
        "input": "images",
        "input_bytes": "images_bytes",
        "predictions": "predictions",
        "stream_predictions": "stream_predictions",
    }
    columns = {k: [(c["name"], c["type"], c["mode"]) for c in t["schema"]] for k, t in tables.items()}
    assert columns["input"] == [("key", "INTEGER", "REQUIRED"), ("image", "STRING", "REQUIRED")]
    assert columns["input_bytes"] == [("key", "INTEGER", "REQUIRED"), ("image", "BYTES", "REQUIRED")]
    assert columns["predictions"][:3] == [
        ("key", "INTEGER", "REQUIRED"),
        ("class", "INTEGER", "REQUIRED"),
        ("confidence", "FLOAT", "REQUIRED"),
    ]
    assert columns["predictions"][3:] == [(f"pred{d}", "FLOAT", "NULLABLE") for d in range(10)]
    # pipeline/stream_io.py STREAM_PREDICTIONS_SCHEMA: the predictions columns, then the timing
    # columns every streamed row carries (pipeline/stream_rows.py output_rows), same order and modes.
    assert columns["stream_predictions"] == columns["predictions"] + [
        ("event_time", "TIMESTAMP", "NULLABLE"),
        ("prediction_time", "TIMESTAMP", "NULLABLE"),
        ("latency_ms", "FLOAT", "NULLABLE"),
        ("model_version", "STRING", "NULLABLE"),
    ]
    assert tables["stream_predictions"]["partitioning"] == "prediction_time"
    assert {k: t["partitioning"] for k, t in tables.items() if k != "stream_predictions"} == dict.fromkeys(
        ["input", "input_bytes", "predictions"]
    )
    assert all(c["description"] for t in tables.values() for c in t["schema"])


@terraform("gpu_quota_loop")
def test_apply_gpu_placement_with_quota_loop(gpu_quota_loop):
    """Real init + apply + destroy (pytest-terraform) of a provider-free harness."""
    outputs = {name: value["value"] for name, value in gpu_quota_loop.outputs.items()}
    assert outputs["gpu"] == {
        "gpu_type": "nvidia-l4",
        "gpu_count": 2,
        "machine_type": "g2-standard-24",
        "worker_accelerator": "worker_accelerator=type:nvidia-l4;count:2;install-nvidia-driver",
        "zone": "europe-west4-a",
        "max_workers": 3,
    }
    assert outputs["required_gpus"] == 6
    assert outputs["quota_ids"] == {
        "regional": "NVIDIA-L4-GPUS-per-project-region",
        "all_regions": "GPUS-ALL-REGIONS-per-project",
    }
    # The region's own limit (8) wins over the default (2), so the apply got past the gate.
    assert outputs["quota_limits"] == {"regional": 8, "all_regions": 8}
    assert set(gpu_quota_loop.resources["terraform_data"]) == {"quota"}


# Where Terraform looks for providers without asking the registry (CLI config docs, "Implied
# Local Mirror Directories" on Linux).
IMPLIED_MIRRORS = [
    Path.home() / ".terraform.d" / "plugins",
    Path.home() / ".local" / "share" / "terraform" / "plugins",
    Path("/usr/local/share/terraform/plugins"),
    Path("/usr/share/terraform/plugins"),
]
GOOGLE = Path("registry.terraform.io", "hashicorp", "google")


def google_provider_source() -> str | None:
    """Where `terraform init` could get hashicorp/google from, or None offline."""
    if os.environ.get("MNISTKIT_TF_PROVIDER_ONLINE") == "1":
        return "the public registry (MNISTKIT_TF_PROVIDER_ONLINE=1)"
    mirrors = list(IMPLIED_MIRRORS)
    config = Path(os.environ.get("TF_CLI_CONFIG_FILE") or Path.home() / ".terraformrc")
    if config.is_file():
        with config.open() as fh:
            parsed = hcl2.load(fh)
        for installation in parsed.get("provider_installation", []):
            for kind, blocks in installation.items():
                for block in blocks if isinstance(blocks, list) else [blocks]:
                    if not isinstance(block, dict):
                        continue
                    if "network_mirror" in kind:
                        return f"network mirror {block.get('url')}"
                    if "filesystem_mirror" in kind and block.get("path"):
                        mirrors.insert(0, Path(str(block["path"]).strip('"')))
    for mirror in mirrors:
        if (mirror / GOOGLE).is_dir():
            return f"filesystem mirror {mirror}"
    return None


def test_provider_detection_follows_the_cli_config(tmp_path, monkeypatch):
    if any((m / GOOGLE).is_dir() for m in IMPLIED_MIRRORS):
        pytest.skip("this machine has the google provider in an implied mirror")
    mirror = tmp_path / "mirror"
    config = tmp_path / "terraformrc"
    config.write_text(
        "provider_installation {\n"
        f'  filesystem_mirror {{\n    path = "{mirror}"\n'
        '    include = ["registry.terraform.io/hashicorp/*"]\n  }\n'
        '  direct {\n    exclude = ["registry.terraform.io/hashicorp/*"]\n  }\n}\n'
    )
    monkeypatch.setenv("TF_CLI_CONFIG_FILE", str(config))
    monkeypatch.delenv("MNISTKIT_TF_PROVIDER_ONLINE", raising=False)
    assert google_provider_source() is None, "a mirror without hashicorp/google does not count"
    (mirror / GOOGLE / "6.30.0" / "linux_amd64").mkdir(parents=True)
    assert google_provider_source() == f"filesystem mirror {mirror}"


def test_root_module_validates(tmp_path):
    source = google_provider_source()
    if source is None:
        pytest.skip(
            "hashicorp/google cannot be installed offline: no filesystem_mirror/network_mirror for it in "
            f"{os.environ.get('TF_CLI_CONFIG_FILE') or '~/.terraformrc'} nor in an implied plugin directory "
            "(set MNISTKIT_TF_PROVIDER_ONLINE=1 where registry.terraform.io is reachable)"
        )
    workdir = copy_module(INFRA, tmp_path / "infra")
    env = terraform_env(tmp_path / "data")
    init = run_terraform(["init", "-backend=false", "-input=false"], workdir, env)
    assert init.returncode == 0, f"init with the provider from {source}:\n{init.stdout}{init.stderr}"
    validate = run_terraform(["validate"], workdir, env)
    assert validate.returncode == 0, validate.stdout + validate.stderr
