"""Static contract of infra/, read with python-hcl2: outputs the CLI relies on, typed and
described variables, bucket hardening, least-privilege IAM, and docs that match the code."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from tfhelpers import (
    INFRA,
    MODULE_NAMES,
    MODULES,
    TERRAFORM,
    load_hcl,
    load_module,
    requires_terraform,
    terraform_env,
)

# What the CLI's config loader reads from `terraform -chdir=infra output -json`.
CLI_OUTPUTS = {
    "project_id",
    "region",
    "model_bucket",
    "data_bucket",
    "temp_location",
    "staging_location",
    "bigquery_dataset",
    "input_table",
    "input_bytes_table",
    "predictions_table",
    "worker_service_account",
    "subnetwork",
    "network",
    "artifact_registry_repo",
    "worker_image",
    "gpu",
    "max_workers",
}
PRIMITIVE_ROLE = re.compile(r"roles/(owner|editor|viewer)\b")
ALL_DIRS = [INFRA] + [MODULES / m for m in MODULE_NAMES]


@pytest.fixture(scope="module")
def root() -> dict:
    return load_module(INFRA)


@pytest.fixture(scope="module")
def modules() -> dict[str, dict]:
    return {name: load_module(MODULES / name) for name in MODULE_NAMES}


def strings(node):
    """Every string anywhere in a parsed HCL structure."""
    if isinstance(node, dict):
        for k, v in node.items():
            yield k
            yield from strings(v)
    elif isinstance(node, list):
        for v in node:
            yield from strings(v)
    elif isinstance(node, str):
        yield node


def roles_in(node) -> set[str]:
    """Role names anywhere in a block, including inside expressions (kept as strings)."""
    return set(re.findall(r"roles/[A-Za-z0-9_.]+", " ".join(strings(node))))


def resources(parsed_modules, rtype):
    for name, mod in parsed_modules.items():
        for rname, body in mod["resource"].get(rtype, {}).items():
            yield f"{name}.{rtype}.{rname}", body


def test_every_module_has_the_standard_files():
    for name in MODULE_NAMES:
        present = {p.name for p in (MODULES / name).iterdir()}
        assert {"main.tf", "variables.tf", "outputs.tf", "versions.tf", "README.md"} <= present, name


def test_root_exposes_every_output_the_cli_reads(root):
    missing = CLI_OUTPUTS - set(root["output"])
    assert not missing, f"root outputs missing for the CLI: {sorted(missing)}"


def test_uri_outputs_have_the_documented_shape(root, modules):
    storage = modules["storage"]["output"]
    assert storage["model_bucket"]["value"].startswith("gs://")
    assert storage["data_bucket"]["value"].startswith("gs://")
    assert storage["temp_location"]["value"].startswith("gs://") and storage["temp_location"][
        "value"
    ].endswith("/tmp")
    assert storage["staging_location"]["value"].endswith("/staging")
    assert modules["artifact_registry"]["output"]["url"]["value"].startswith(
        "${google_artifact_registry_repository.this.location}-docker.pkg.dev/"
    )
    assert root["output"]["worker_image"]["value"].endswith(
        "/${var.worker_image_name}:${var.worker_image_tag}"
    )
    assert root["variable"]["worker_image_name"]["default"] == "mnistkit-worker"


@pytest.mark.parametrize("directory", ALL_DIRS, ids=lambda d: d.name)
def test_variables_are_typed_and_described(directory):
    for name, body in load_module(directory)["variable"].items():
        assert body.get("type"), f"{directory.name}: variable {name} has no type"
        assert len(body.get("description", "")) > 10, f"{directory.name}: variable {name} has no description"


@pytest.mark.parametrize("directory", ALL_DIRS, ids=lambda d: d.name)
def test_outputs_are_described(directory):
    for name, body in load_module(directory)["output"].items():
        assert len(body.get("description", "")) > 5, f"{directory.name}: output {name} has no description"


def test_buckets_have_ubla_enforced_pap_and_versioning(modules):
    buckets = list(resources(modules, "google_storage_bucket"))
    assert buckets
    for address, body in buckets:
        assert body["uniform_bucket_level_access"] is True, address
        assert body["public_access_prevention"] == "enforced", address
        assert body["versioning"][0]["enabled"] is True, address


def test_temp_and_staging_expire_without_soft_delete(modules):
    dataflow = modules["storage"]["locals"]["buckets"]["dataflow"]
    assert sorted(dataflow["scratch_prefixes"]) == ["staging/", "tmp/"]
    assert dataflow["soft_delete_seconds"] == 0


def test_no_service_account_keys_and_only_additive_iam(root, modules):
    everything = {"root": root, **modules}
    types = {rtype for mod in everything.values() for rtype in mod["resource"]}
    assert "google_service_account_key" not in types
    authoritative = sorted(t for t in types if t.endswith(("_iam_policy", "_iam_binding")))
    assert not authoritative, f"authoritative IAM would wipe other grants: {authoritative}"


def test_no_primitive_roles_anywhere():
    for path in INFRA.rglob("*.tf"):
        offending = [s for s in strings(load_hcl(path)) if PRIMITIVE_ROLE.search(s)]
        assert not offending, f"{path}: {offending}"


WORKER_BASE_ROLES = {"roles/dataflow.worker", "roles/bigquery.jobUser"}
READ_SESSION_USER = "roles/bigquery.readSessionUser"


def _project_roles_block() -> str:
    """The iam module's `locals` block that defines project_roles (it depends on variables only)."""
    text = (MODULES / "iam" / "main.tf").read_text()
    for match in re.finditer(r"^locals \{$", text, re.M):
        depth = 0
        for end in range(match.end() - 1, len(text)):
            depth += {"{": 1, "}": -1}.get(text[end], 0)
            if depth == 0:
                block = text[match.start() : end + 1]
                break
        if re.search(r"^\s*project_roles\s*=", block, re.M):
            return block
    raise AssertionError("modules/iam/main.tf has no locals block defining project_roles")


def test_worker_project_roles_are_exactly_base_plus_read_session_user_by_flag(root, modules):
    iam = modules["iam"]
    flag = iam["variable"]["bigquery_direct_read"]
    assert "bool" in str(flag["type"]) and flag["default"] is True
    assert root["variable"]["bigquery_direct_read"]["default"] is True
    assert root["module"]["iam"]["bigquery_direct_read"] == "${var.bigquery_direct_read}"
    worker = iam["locals"]["project_roles"]["worker"]
    assert roles_in(worker) == WORKER_BASE_ROLES | {READ_SESSION_USER}, worker
    # readSessionUser comes only through the flag, and only for the worker.
    expression = " ".join(strings(worker))
    assert f'var.bigquery_direct_read ? ["{READ_SESSION_USER}"] : []' in expression, expression
    granted_elsewhere = [
        name
        for name, mod in modules.items()
        for kind in ("resource", "locals", "module")
        if READ_SESSION_USER in roles_in({k: v for k, v in mod[kind].items() if k != "project_roles"})
    ]
    assert not granted_elsewhere and READ_SESSION_USER not in roles_in(iam["locals"]["project_roles"]["launcher"])
    project_level = roles_in(iam["locals"]["project_roles"])
    assert not [r for r in project_level if "admin" in r.lower() or r.startswith("roles/iam.")], project_level
    assert not [r for r in project_level if PRIMITIVE_ROLE.search(r)], project_level
    reads = root["output"]["bigquery_read_method"]["value"]
    assert reads == '${var.bigquery_direct_read ? "DIRECT_READ" : "EXPORT"}', reads


@requires_terraform
@pytest.mark.parametrize(
    ("flag", "expected"),
    [
        (None, WORKER_BASE_ROLES | {READ_SESSION_USER}),
        (True, WORKER_BASE_ROLES | {READ_SESSION_USER}),
        (False, WORKER_BASE_ROLES),
    ],
)
def test_worker_project_roles_evaluate_per_flag(flag, expected, tmp_path):
    """Evaluated by terraform itself: exactly the base roles, plus readSessionUser only when on."""
    workdir = tmp_path / "iam"
    workdir.mkdir()
    shutil.copy(MODULES / "iam" / "variables.tf", workdir)
    (workdir / "locals.tf").write_text(_project_roles_block() + "\n")
    args = [
        "-var=project_id=demo-proj",
        "-var=object_admin_buckets={}",
        "-var=object_viewer_buckets={}",
        "-var=dataset_id=mnist",
        "-var=artifact_registry_location=us-central1",
        "-var=artifact_registry_repository=mnistkit",
    ]
    if flag is not None:
        args.append(f"-var=bigquery_direct_read={str(flag).lower()}")
    result = subprocess.run(
        [TERRAFORM, "console", "-no-color", *args],
        input="jsonencode(local.project_roles)\n",
        cwd=workdir,
        env=terraform_env(tmp_path / "data"),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0 and "Error:" not in result.stderr, result.stdout + result.stderr
    roles = json.loads(json.loads(result.stdout.strip().splitlines()[-1]))
    assert len(roles["worker"]) == len(set(roles["worker"]))
    assert set(roles["worker"]) == expected
    assert set(roles["launcher"]) == {"roles/dataflow.developer", "roles/bigquery.jobUser"}
    everything = {r for rs in roles.values() for r in rs}
    assert not [r for r in everything if PRIMITIVE_ROLE.search(r) or "admin" in r.lower()], everything


def test_act_as_is_granted_on_the_worker_account_only(modules):
    rtypes = {t for m in modules.values() for t in m["resource"]}
    grants = [
        a
        for t in rtypes
        for a, body in resources(modules, t)
        if "roles/iam.serviceAccountUser" in roles_in(body)
    ]
    assert grants == ["iam.google_service_account_iam_member.launcher"]
    assert not [m for m, mod in modules.items() if "roles/iam.serviceAccountUser" in roles_in(mod["locals"])]
    body = modules["iam"]["resource"]["google_service_account_iam_member"]["launcher"]
    assert body["service_account_id"] == "${google_service_account.worker.name}"


def test_worker_gets_resource_level_grants(modules):
    iam = modules["iam"]
    dataset_roles = {b["role"] for b in iam["resource"]["google_bigquery_dataset_iam_member"].values()}
    assert dataset_roles == {"roles/bigquery.dataEditor"}
    assert "roles/artifactregistry.reader" in roles_in(iam["locals"]["repository_bindings"])
    assert {"roles/storage.objectAdmin", "roles/storage.objectViewer"} <= roles_in(
        iam["locals"]["bucket_roles"]
    )
    assert "google_storage_bucket_iam_member" in iam["resource"]


def test_network_is_private_logged_and_only_opens_dataflow_ports(modules):
    net = modules["network"]["resource"]
    subnet = net["google_compute_subnetwork"]["workers"]
    assert subnet["private_ip_google_access"] is True
    assert subnet["log_config"], "flow logs"
    (firewall,) = net["google_compute_firewall"].values()
    assert firewall["direction"] == "INGRESS"
    assert "source_ranges" not in firewall, "only tagged workers may connect"
    assert firewall["source_tags"] == firewall["target_tags"] == ["${var.worker_tag}"]
    assert modules["network"]["variable"]["worker_tag"]["default"] == "dataflow"
    assert firewall["allow"] == [{"protocol": "tcp", "ports": ["12345-12346"]}]
    assert net["google_compute_network"]["this"]["auto_create_subnetworks"] is False


def test_services_stay_enabled_on_destroy(modules):
    body = modules["services"]["resource"]["google_project_service"]["this"]
    assert body["disable_on_destroy"] is False
    apis = set(modules["services"]["variable"]["services"]["default"])
    needed = {"dataflow", "compute", "storage", "bigquery", "artifactregistry", "iam", "cloudquotas"}
    assert {f"{a}.googleapis.com" for a in needed} <= apis


def test_gpu_placement_is_provider_free(modules):
    gpu = modules["gpu_placement"]
    assert not gpu["resource"] and not gpu["data"] and not gpu["provider"]
    assert all("required_providers" not in block for block in gpu["terraform"])


def test_root_backend_is_empty_gcs_and_quota_feeds_the_gate(root):
    (backend,) = [b["backend"] for b in root["terraform"] if "backend" in b]
    assert backend == [{"gcs": {}}]
    quota = root["data"]["google_cloud_quotas_quota_info"]["gpu"]
    assert quota["service"] == "compute.googleapis.com"
    assert "module.gpu_placement.quota_ids" in quota["for_each"]
    assert (
        "data.google_cloud_quotas_quota_info.gpu" in root["module"]["gpu_placement"]["quota_dimensions_infos"]
    )


def test_destroy_protection_follows_force_destroy(root, modules):
    assert root["variable"]["force_destroy"]["default"] is False
    assert root["module"]["storage"]["force_destroy"] == "${var.force_destroy}"
    assert root["module"]["bigquery"]["deletion_protection"] == "${!var.force_destroy}"
    assert modules["bigquery"]["variable"]["deletion_protection"]["default"] is True


def test_tfvars_example_only_sets_known_variables(root):
    example = load_hcl(INFRA / "terraform.tfvars.example")
    assert example, "the example should set something"
    assert set(example) <= set(root["variable"]), set(example) - set(root["variable"])


def _readme(directory: Path) -> str:
    return (directory / "README.md").read_text()


@pytest.mark.parametrize("directory", ALL_DIRS, ids=lambda d: d.name)
def test_readmes_document_every_variable_and_output(directory):
    mod, text = load_module(directory), _readme(directory)
    undocumented = [n for n in [*mod["variable"], *mod["output"]] if f"`{n}`" not in text]
    assert not undocumented, f"{directory.name}/README.md misses {undocumented}"
