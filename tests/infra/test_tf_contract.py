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
    IAM_VARS,
    INFRA,
    MODULE_NAMES,
    MODULES,
    TERRAFORM,
    load_hcl,
    load_module,
    requires_terraform,
    run_terraform,
    terraform_env,
    top_level_blocks,
    variables_only_locals,
)
from tfhelpers import REPO as REPO_ROOT

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
    "use_public_ips",
    "input_location",
    "output_location",
    "stream_predictions_table",
    "pubsub_input_topic",
    "pubsub_input_subscription",
    "pubsub_dead_letter_topic",
    "pubsub_dead_letter_subscription",
    "training_service_account",
    "cloudbuild_service_account",
    "build_source_location",
    "dataflow_kms_key",
    "vertex_endpoint",
    "serving_image",
    "serving_service_account",
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
    for name in ("model_bucket", "data_bucket", "input_location", "output_location", "temp_location"):
        assert storage[name]["value"].startswith("gs://"), name
    for name, prefix in [
        ("input_location", "inputs"),
        ("output_location", "outputs"),
        ("temp_location", "temp"),
        ("staging_location", "staging"),
        ("build_source_location", "build_source"),
    ]:
        assert storage[name]["value"].endswith(f'/${{trimsuffix(local.prefixes.{prefix}, "/")}}'), name
    assert modules["artifact_registry"]["output"]["url"]["value"].startswith(
        "${google_artifact_registry_repository.this.location}-docker.pkg.dev/"
    )
    assert root["output"]["worker_image"]["value"].endswith("/${var.worker_image_name}:${var.worker_image_tag}")
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
    storage = modules["storage"]["locals"]
    dataflow = storage["buckets"]["dataflow"]
    assert dataflow["scratch_prefixes"] == [
        "${local.prefixes.temp}",
        "${local.prefixes.staging}",
        "${local.prefixes.build_source}",
    ]
    assert storage["prefixes"] == {
        "inputs": "inputs/",
        "outputs": "outputs/",
        "temp": "tmp/",
        "staging": "staging/",
        "build_source": "cloudbuild/",
    }
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
LAUNCHER_PROJECT_ROLES = {
    "roles/dataflow.developer",
    "roles/bigquery.jobUser",
    "roles/cloudbuild.builds.editor",
    "roles/aiplatform.user",
}
IAM_RESOURCE = re.compile(r"^google_.*_iam_(member|binding|policy|audit_config)$")


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
    assert not granted_elsewhere, granted_elsewhere
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
    (workdir / "locals.tf").write_text(variables_only_locals(MODULES / "iam") + "\n")
    args = list(IAM_VARS)
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
    assert set(roles["launcher"]) == LAUNCHER_PROJECT_ROLES
    assert roles["training"] == roles["cloudbuild"] == ["roles/logging.logWriter"]
    everything = {r for rs in roles.values() for r in rs}
    assert not [r for r in everything if PRIMITIVE_ROLE.search(r) or "admin" in r.lower()], everything


# What the root module's wiring hands modules/iam, as the real modules compute it for
# project_id demo-proj with the default names (tests below check each stand-in against the
# real module's outputs).
BUCKET = {k: f"demo-proj-mnistkit-{k}" for k in ("models", "data", "dataflow")}
STAND_INS = {
    "services": {"enabled_services": []},
    "storage": {
        "bucket_names": BUCKET,
        "prefixes": {
            "inputs": "inputs/",
            "outputs": "outputs/",
            "temp": "tmp/",
            "staging": "staging/",
            "build_source": "cloudbuild/",
        },
    },
    "bigquery": {
        "dataset_id": "mnist",
        "table_ids": {
            "input": "images",
            "input_bytes": "images_bytes",
            "predictions": "predictions",
            "stream_predictions": "stream_predictions",
        },
    },
    "artifact_registry": {"location": "us-central1", "repository_id": "mnistkit"},
    "pubsub": {
        "names": {
            "input_topic": "mnistkit-input",
            "input_subscription": "mnistkit-input",
            "dead_letter_topic": "mnistkit-input-dead-letter",
            "dead_letter_subscription": "mnistkit-input-dead-letter",
        }
    },
}
LAUNCHER = "user:launcher@example.com"
PUBLISHER = "group:release@example.com"
PUSHER = "user:pusher@example.com"
INVOKER = "serviceAccount:app@demo-proj.iam.gserviceaccount.com"
INVOKER_ROLE = "projects/demo-proj/roles/mnistkitEndpointInvoker"
MODELS, DATA, DATAFLOW = (f"bucket:{BUCKET[k]}" for k in ("models", "data", "dataflow"))
SUB, DL_SUB = "subscription:mnistkit-input", "subscription:mnistkit-input-dead-letter"
TOPIC, DL_TOPIC = "topic:mnistkit-input", "topic:mnistkit-input-dead-letter"
REPO = "repository:mnistkit"
PROJECT = "project:demo-proj"

# Each identity's exact grants, "scope:resource role[ if prefix]"; not a superset, not a subset.
EXACT_ACCESS = {
    "worker": {
        f"{PROJECT} roles/dataflow.worker",
        f"{PROJECT} roles/bigquery.jobUser",
        f"{PROJECT} roles/bigquery.readSessionUser",
        f"{MODELS} roles/storage.objectViewer",
        f"{DATA} roles/storage.objectViewer",
        f"{DATA} roles/storage.objectUser if outputs/",
        f"{DATAFLOW} roles/storage.objectViewer",
        f"{DATAFLOW} roles/storage.objectUser if tmp/",
        "table:images roles/bigquery.dataViewer",
        "table:images_bytes roles/bigquery.dataViewer",
        "table:predictions roles/bigquery.dataEditor",
        "table:stream_predictions roles/bigquery.dataEditor",
        f"{REPO} roles/artifactregistry.reader",
        f"{SUB} roles/pubsub.subscriber",
        f"{PROJECT} {INVOKER_ROLE}",
    },
    "serving": {f"{MODELS} roles/storage.objectViewer"},
    INVOKER: {f"{PROJECT} {INVOKER_ROLE}"},
    "training": {
        f"{PROJECT} roles/logging.logWriter",
        f"{DATA} roles/storage.objectViewer",
        f"{MODELS} roles/storage.objectUser",
    },
    "cloudbuild": {
        f"{PROJECT} roles/logging.logWriter",
        f"{DATAFLOW} roles/storage.objectViewer if cloudbuild/",
        f"{REPO} roles/artifactregistry.writer",
    },
    "pubsub_service_agent": {f"{SUB} roles/pubsub.subscriber", f"{DL_TOPIC} roles/pubsub.publisher"},
    PUBLISHER: {f"{MODELS} roles/storage.objectUser"},
    PUSHER: {f"{REPO} roles/artifactregistry.writer"},
    LAUNCHER: {
        *(f"{PROJECT} {r}" for r in LAUNCHER_PROJECT_ROLES),
        "service_account:worker roles/iam.serviceAccountUser",
        "service_account:cloudbuild roles/iam.serviceAccountUser",
        "service_account:training roles/iam.serviceAccountUser",
        "service_account:serving roles/iam.serviceAccountUser",
        f"{DATA} roles/storage.objectUser",
        f"{DATAFLOW} roles/storage.objectUser",
        f"{MODELS} roles/storage.objectViewer",
        "table:images roles/bigquery.dataEditor",
        "table:images_bytes roles/bigquery.dataEditor",
        "table:predictions roles/bigquery.dataViewer",
        "table:stream_predictions roles/bigquery.dataViewer",
        f"{REPO} roles/artifactregistry.reader",
        f"{TOPIC} roles/pubsub.publisher",
        f"{DL_SUB} roles/pubsub.subscriber",
    },
}


@pytest.fixture(scope="module")
def wired_access(tmp_path_factory) -> dict[str, list[str]]:
    """modules/iam's grants as the root module wires it: infra/main.tf's `module "iam"` block
    verbatim, applied by terraform with stand-ins for the modules it reads from."""
    if TERRAFORM is None:
        pytest.skip("terraform is not on PATH")
    tmp = tmp_path_factory.mktemp("wiring")
    work = tmp / "root"
    (work / "modules" / "iam").mkdir(parents=True)
    shutil.copy(MODULES / "iam" / "variables.tf", work / "modules" / "iam")
    (work / "modules" / "iam" / "main.tf").write_text(
        variables_only_locals(MODULES / "iam") + '\n\noutput "access" {\n  value = local.access\n}\n'
    )
    for name, outputs in STAND_INS.items():
        (work / "modules" / name).mkdir()
        body = "".join(
            f'output "{k}" {{\n  value = jsondecode({json.dumps(json.dumps(v))})\n}}\n' for k, v in outputs.items()
        )
        (work / "modules" / name / "main.tf").write_text(body)
    shutil.copy(INFRA / "variables.tf", work)
    (iam_block,) = top_level_blocks((INFRA / "main.tf").read_text(), 'module "iam"')
    stand_ins = "".join(f'module "{n}" {{\n  source = "./modules/{n}"\n}}\n\n' for n in STAND_INS)
    (work / "main.tf").write_text(stand_ins + iam_block + '\n\noutput "access" {\n  value = module.iam.access\n}\n')
    env = terraform_env(tmp / "data")
    variables = [
        "-var=project_id=demo-proj",
        f"-var=launcher_members=[{json.dumps(LAUNCHER)}]",
        f"-var=model_publisher_members=[{json.dumps(PUBLISHER)}]",
        f"-var=image_pusher_members=[{json.dumps(PUSHER)}]",
        f"-var=endpoint_invoker_members=[{json.dumps(INVOKER)}]",
    ]
    for args in (["init", "-backend=false", "-input=false"], ["apply", "-auto-approve", "-input=false", *variables]):
        result = run_terraform(args, work, env)
        assert result.returncode == 0, result.stdout + result.stderr
    result = run_terraform(["output", "-json", "access"], work, env)
    assert result.returncode == 0, result.stdout + result.stderr
    return json.loads(result.stdout)


def test_stand_ins_match_the_real_modules(modules):
    for name, outputs in STAND_INS.items():
        assert set(outputs) <= set(modules[name]["output"]), name
    storage = modules["storage"]
    assert STAND_INS["storage"]["prefixes"] == storage["locals"]["prefixes"]
    assert storage["resource"]["google_storage_bucket"]["this"]["name"] == "${var.name_prefix}-${each.key}"
    assert set(BUCKET) == set(storage["locals"]["buckets"])
    bigquery = modules["bigquery"]["variable"]
    assert {k: bigquery[f"{k}_table_id"]["default"] for k in STAND_INS["bigquery"]["table_ids"]} == (
        STAND_INS["bigquery"]["table_ids"]
    )
    pubsub = modules["pubsub"]
    assert pubsub["variable"]["input_topic_name"]["default"] == "mnistkit-input"
    assert pubsub["resource"]["google_pubsub_topic"]["dead_letter"]["name"] == "${var.input_topic_name}-dead-letter"


def test_each_identity_has_exactly_its_roles(wired_access):
    """Kills a root wiring typo (a bucket, table or topic passed for another) and any role
    added to or dropped from an identity."""
    got = {who: set(grants) for who, grants in wired_access.items()}
    assert set(got) == set(EXACT_ACCESS)
    for who, expected in EXACT_ACCESS.items():
        assert got[who] == expected, (
            f"{who}: extra {sorted(got[who] - expected)}, missing {sorted(expected - got[who])}"
        )
    assert all(len(g) == len(set(g)) for g in wired_access.values())


def _holders(wired_access, resource: str, roles: set[str]) -> set[str]:
    return {
        who
        for who, grants in wired_access.items()
        for g in grants
        if g.split(" ")[0] == resource and g.split(" ")[1] in roles
    }


def test_only_the_publishers_write_the_model_bucket(wired_access):
    writers = {
        "roles/storage.objectUser",
        "roles/storage.objectCreator",
        "roles/storage.objectAdmin",
        "roles/storage.admin",
    }
    assert _holders(wired_access, MODELS, writers) == {"training", PUBLISHER}
    assert not _holders(wired_access, MODELS, {"roles/storage.objectAdmin", "roles/storage.admin"})


def test_worker_has_no_object_admin_and_no_dataset_wide_editor(wired_access, modules):
    assert not [g for g in wired_access["worker"] if "objectAdmin" in g or "storage.admin" in g]
    # Unconditional write access for the worker: none at all on buckets.
    assert not [g for g in wired_access["worker"] if g.startswith("bucket:") and "objectUser" in g and " if " not in g]
    editors = {g.split(" ")[0] for g in wired_access["worker"] if "dataEditor" in g}
    assert editors == {"table:predictions", "table:stream_predictions"}
    types = {t for m in modules.values() for t in m["resource"]}
    assert "google_bigquery_dataset_iam_member" not in types and "google_bigquery_dataset_access" not in types
    assert "roles/storage.objectAdmin" not in roles_in(modules["iam"])


def test_the_input_subscription_is_pulled_by_the_worker_only(wired_access):
    pullers = _holders(wired_access, SUB, {"roles/pubsub.subscriber", "roles/pubsub.editor", "roles/pubsub.admin"})
    # The Pub/Sub agent's pull is how it moves undeliverable messages to the dead-letter topic.
    assert pullers == {"worker", "pubsub_service_agent"}
    everything = {g.split(" ")[1] for grants in wired_access.values() for g in grants}
    assert not {"roles/pubsub.editor", "roles/pubsub.admin"} & everything
    assert not [g for grants in wired_access.values() for g in grants if g.startswith(PROJECT) and "pubsub" in g]


def test_iam_conditions_cover_the_writable_prefixes_only(modules):
    body = modules["iam"]["resource"]["google_storage_bucket_iam_member"]["this"]
    (condition,) = body["dynamic"][0]["condition"]["content"]
    assert condition["expression"] == (
        'resource.name.startsWith("projects/_/buckets/${condition.value.name}/objects/${condition.value.prefix}")'
    )
    rule = modules["iam"]["variable"]["prefixes"]["validation"][0]["condition"]
    assert "/$" in rule, "an empty prefix would open the whole bucket"


def test_grants_live_in_the_iam_and_cmek_modules_only(root, modules):
    """Kills a grant added anywhere else, e.g. objectAdmin for the worker in infra/main.tf."""
    everything = {"root": root, **modules}
    placed = sorted(
        f"{name}.{rtype}.{rname}"
        for name, mod in everything.items()
        for rtype, named in mod["resource"].items()
        if IAM_RESOURCE.match(rtype)
        for rname in named
    )
    assert placed == [
        "cmek.google_kms_crypto_key_iam_member.agents",
        "iam.google_artifact_registry_repository_iam_member.this",
        "iam.google_bigquery_table_iam_member.this",
        "iam.google_project_iam_member.this",
        "iam.google_pubsub_subscription_iam_member.this",
        "iam.google_pubsub_topic_iam_member.this",
        "iam.google_service_account_iam_member.this",
        "iam.google_storage_bucket_iam_member.this",
        "services.google_project_iam_audit_config.storage",
    ], placed
    wiring = roles_in({k: root[k] for k in ("resource", "data", "module", "locals")})
    assert not wiring, f"infra/main.tf names roles: {sorted(wiring)}"
    # Every member of every iam resource comes from the identity table.
    for rtype, named in modules["iam"]["resource"].items():
        if IAM_RESOURCE.match(rtype):
            assert named["this"]["member"] == "${local.members[each.value.who]}", rtype
            assert named["this"]["for_each"] == f"${{local.by_scope.{rtype_scope(rtype)}}}", rtype


def rtype_scope(rtype: str) -> str:
    return {
        "google_project_iam_member": "project",
        "google_storage_bucket_iam_member": "bucket",
        "google_bigquery_table_iam_member": "table",
        "google_artifact_registry_repository_iam_member": "repository",
        "google_pubsub_topic_iam_member": "topic",
        "google_pubsub_subscription_iam_member": "subscription",
        "google_service_account_iam_member": "service_account",
    }[rtype]


def test_act_as_is_granted_on_the_kits_own_accounts_only(modules, wired_access):
    acts = {g for grants in wired_access.values() for g in grants if "serviceAccountUser" in g}
    assert acts == {
        "service_account:worker roles/iam.serviceAccountUser",
        "service_account:cloudbuild roles/iam.serviceAccountUser",
        "service_account:training roles/iam.serviceAccountUser",
        "service_account:serving roles/iam.serviceAccountUser",
    }
    assert _holders(wired_access, "service_account:worker", {"roles/iam.serviceAccountUser"}) == {LAUNCHER}
    iam = modules["iam"]
    assert iam["locals"]["service_accounts"] == {
        "worker": "${google_service_account.worker.name}",
        "cloudbuild": "${google_service_account.cloudbuild.name}",
        "training": "${google_service_account.training.name}",
        "serving": "${google_service_account.serving.name}",
    }
    assert iam["resource"]["google_service_account_iam_member"]["this"]["service_account_id"] == (
        "${local.service_accounts[each.value.name]}"
    )


def test_cmek_reaches_every_service_agent_and_dataflow(root, modules):
    cmek = modules["cmek"]
    assert set(cmek["locals"]["agents"]) == {
        "storage",
        "bigquery",
        "artifact_registry",
        "pubsub",
        "dataflow",
        "compute",
        "vertex_ai",
    }
    grant = cmek["resource"]["google_kms_crypto_key_iam_member"]["agents"]
    assert grant["role"] == "roles/cloudkms.cryptoKeyEncrypterDecrypter"
    assert grant["crypto_key_id"] == "${var.kms_key_name}"
    assert grant["for_each"] == "${var.kms_key_name == null ? {} : local.agents}"
    for name in ("storage", "bigquery", "artifact_registry", "pubsub", "vertex_endpoint"):
        assert root["module"][name]["kms_key_name"] == "${module.cmek.kms_key_name}", name
    assert root["module"]["cmek"]["kms_key_name"] == "${var.kms_key_name}"
    assert root["output"]["dataflow_kms_key"]["value"] == "${module.cmek.kms_key_name}"
    assert "google_kms_crypto_key_iam_member.agents" in cmek["output"]["kms_key_name"]["value"]


def _firewalls(modules) -> dict:
    return modules["network"]["resource"]["google_compute_firewall"]


def test_egress_is_denied_by_default_and_only_google_apis_and_workers_are_allowed(modules):
    rules = _firewalls(modules)
    assert set(rules) == {"deny_all_egress", "allow_google_apis_egress", "allow_worker_egress", "allow_worker_ingress"}
    deny = rules["deny_all_egress"]
    assert deny["direction"] == "EGRESS" and deny["destination_ranges"] == ["0.0.0.0/0"]
    assert deny["deny"] == [{"protocol": "all"}] and "allow" not in deny
    # It applies to every instance on the network, not only the workers.
    assert not {"target_tags", "target_service_accounts"} & set(deny)
    api = rules["allow_google_apis_egress"]
    assert api["direction"] == "EGRESS" and api["destination_ranges"] == ["${local.google_api_range}"]
    assert api["allow"] == [{"protocol": "tcp", "ports": ["443"]}]
    assert modules["network"]["locals"]["google_api_range"] == "199.36.153.8/30"
    assert all(deny["priority"] > r["priority"] for k, r in rules.items() if k != "deny_all_egress")
    workers = rules["allow_worker_egress"]
    assert workers["destination_ranges"] == ["${var.subnet_cidr}"]
    assert modules["network"]["locals"]["worker_ports"] == ["12345-12346"]
    for name in ("allow_worker_egress", "allow_worker_ingress"):
        assert rules[name]["allow"] == [{"protocol": "tcp", "ports": "${local.worker_ports}"}], name
    ingress = rules["allow_worker_ingress"]
    assert ingress["direction"] == "INGRESS" and "source_ranges" not in ingress
    assert ingress["source_service_accounts"] == "${local.worker_sa}"


def test_every_firewall_rule_logs_and_allows_target_the_worker_account(root, modules):
    for name, rule in _firewalls(modules).items():
        assert rule["log_config"] == [{"metadata": "INCLUDE_ALL_METADATA"}], name
        assert "source_tags" not in rule and "target_tags" not in rule, name
        if "allow" in rule:
            assert rule["target_service_accounts"] == "${local.worker_sa}", name
    assert modules["network"]["locals"]["worker_sa"] == ["${var.worker_service_account}"]
    assert root["module"]["network"]["worker_service_account"] == "${module.iam.worker_service_account}"


def test_workers_resolve_google_to_the_private_range_and_have_no_internet_route(modules):
    net = modules["network"]
    res = net["resource"]
    assert res["google_compute_network"]["this"]["delete_default_routes_on_create"] is True
    assert res["google_compute_network"]["this"]["auto_create_subnetworks"] is False
    (route,) = res["google_compute_route"].values()
    assert route["dest_range"] == "${local.google_api_range}"
    assert route["next_hop_gateway"] == "default-internet-gateway"
    assert res["google_compute_subnetwork"]["workers"]["private_ip_google_access"] is True
    assert res["google_compute_subnetwork"]["workers"]["log_config"], "flow logs"
    domains = net["locals"]["google_domains"]
    assert domains["googleapis"] == {"dns_name": "googleapis.com.", "target": "private.googleapis.com."}
    assert {d["dns_name"] for d in domains.values()} == {"googleapis.com.", "pkg.dev.", "gcr.io."}
    zone = res["google_dns_managed_zone"]["google"]
    assert zone["visibility"] == "private"
    assert zone["private_visibility_config"][0]["networks"][0]["network_url"] == "${google_compute_network.this.id}"
    records = res["google_dns_record_set"]
    assert records["addresses"]["type"] == "A" and records["addresses"]["rrdatas"] == "${local.google_api_addresses}"
    assert records["wildcard"]["type"] == "CNAME" and records["wildcard"]["name"] == "*.${each.value.dns_name}"


def test_pubsub_has_input_subscription_and_kept_dead_letters(modules):
    res = modules["pubsub"]["resource"]
    assert set(res["google_pubsub_topic"]) == {"input", "dead_letter"}
    subscription = res["google_pubsub_subscription"]["input"]
    assert subscription["topic"] == "${google_pubsub_topic.input.id}"
    assert subscription["dead_letter_policy"] == [
        {
            "dead_letter_topic": "${google_pubsub_topic.dead_letter.id}",
            "max_delivery_attempts": "${var.max_delivery_attempts}",
        }
    ]
    assert subscription["expiration_policy"] == [{"ttl": ""}]
    # Messages published to a topic without subscriptions are lost.
    assert res["google_pubsub_subscription"]["dead_letter"]["topic"] == "${google_pubsub_topic.dead_letter.id}"


def test_image_tags_are_immutable_and_never_latest(root, modules):
    repo = modules["artifact_registry"]["resource"]["google_artifact_registry_repository"]["this"]
    assert repo["docker_config"] == [{"immutable_tags": True}]
    tag = root["variable"]["worker_image_tag"]
    assert tag["default"] != "latest" and 'var.worker_image_tag != "latest"' in tag["validation"][0]["condition"]


def test_gcs_data_access_logs_back_the_bucket_logging_skip(root, modules):
    audit = modules["services"]["resource"]["google_project_iam_audit_config"]["storage"]
    assert audit["service"] == "storage.googleapis.com"
    assert [c["log_type"] for c in audit["audit_log_config"]] == ["DATA_READ", "DATA_WRITE"]
    assert audit["count"] == "${var.gcs_data_access_logs ? 1 : 0}"
    assert modules["services"]["variable"]["gcs_data_access_logs"]["default"] is True
    assert root["variable"]["gcs_data_access_logs"]["default"] is True
    assert root["module"]["services"]["gcs_data_access_logs"] == "${var.gcs_data_access_logs}"
    reason = (MODULES / "storage" / "main.tf").read_text()
    assert "#checkov:skip=CKV_GCP_62:" in reason and "Data Access audit logs" in reason


def test_worker_image_base_is_pinned_by_digest_and_built_as_the_builder():
    dockerfile = (REPO_ROOT / "pipeline" / "cloud" / "worker" / "Dockerfile").read_text()
    (base,) = re.findall(r"^FROM (\S+)", dockerfile, re.M)
    assert base.endswith("@${BEAM_BASE_DIGEST}"), base
    recipe = (REPO_ROOT / "pipeline" / "cloud" / "worker" / "cloudbuild.yaml").read_text()
    assert "--build-arg=BEAM_BASE_DIGEST=${_BEAM_BASE_DIGEST}" in recipe
    assert re.search(
        r"^serviceAccount: projects/\$\{PROJECT_ID\}/serviceAccounts/\$\{_SERVICE_ACCOUNT\}$", recipe, re.M
    )
    assert "logging: CLOUD_LOGGING_ONLY" in recipe


def test_services_stay_enabled_on_destroy(modules):
    body = modules["services"]["resource"]["google_project_service"]["this"]
    assert body["disable_on_destroy"] is False
    apis = set(modules["services"]["variable"]["services"]["default"])
    needed = {
        "dataflow",
        "compute",
        "storage",
        "bigquery",
        "artifactregistry",
        "iam",
        "cloudquotas",
        "pubsub",
        "dns",
        "cloudbuild",
        "aiplatform",
    }
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
    assert "data.google_cloud_quotas_quota_info.gpu" in root["module"]["gpu_placement"]["quota_dimensions_infos"]


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
