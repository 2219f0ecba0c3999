"""The make targets in infra/terraform.mk, run by real make against stand-in `terraform` and
`gcloud` scripts that log their arguments (no cloud here): confirmation, flags, ordering."""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest
from tfhelpers import REPO

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="make is not on PATH")

# The state bucket as `gcloud storage buckets describe --raw --format=json` prints it (the
# Cloud Storage JSON API's bucket resource), trimmed to what the check reads.
PROJECT_NUMBER = "123456789012"


def bucket_json(owner: str = PROJECT_NUMBER, hardened: bool = True) -> str:
    return json.dumps(
        {
            "kind": "storage#bucket",
            "name": "demo-proj-tfstate",
            "projectNumber": owner,
            "location": "US-CENTRAL1",
            "iamConfiguration": {
                "uniformBucketLevelAccess": {"enabled": hardened},
                "publicAccessPrevention": "enforced" if hardened else "inherited",
            },
            "versioning": {"enabled": hardened},
        }
    )


# Stand-in gcloud/terraform/mnistkit: log the call; `buckets create` makes the bucket exist;
# STUB_FAIL names a call prefix that fails.
STUB = """#!/bin/sh
vars="force_destroy=$TF_VAR_force_destroy project=$TF_VAR_project_id region=$TF_VAR_region"
echo "$(basename "$0") $* | $vars" >> "$STUB_LOG"
case "$*" in
  "$STUB_FAIL"*) [ -n "$STUB_FAIL" ] && { echo "ERROR: (gcloud) stub failure" >&2; exit 1; } ;;
esac
case "$*" in
  "projects describe"*) printf '%s\\n' "$STUB_PROJECT_NUMBER" ;;
  "storage buckets create"*) touch "$STUB_STATE" ;;
  "storage buckets describe"*) [ -e "$STUB_STATE" ] && printf '%s' "$STUB_BUCKET_JSON" ;;
  "dataflow jobs list"*) printf '%s' "$STUB_ACTIVE_JOBS" ;;
esac
"""


@pytest.fixture
def make(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in ("terraform", "gcloud", "mnistkit"):
        (bin_dir / name).write_text(STUB)
        (bin_dir / name).chmod(0o755)
    log = tmp_path / "calls.log"

    def run(*args: str, stdin: str = "", **stub_env: str) -> tuple[int, str, list[str]]:
        env = {
            k: v
            for k, v in os.environ.items()
            if k
            not in {
                "MAKEFLAGS",
                "MFLAGS",
                "MAKELEVEL",
                "PROJECT_ID",
                "REGION",
                "AUTO_APPROVE",
                "FORCE_DESTROY",
                "TF_STATE_BUCKET",
                "TF_STATE_PREFIX",
                "TF",
            }
        }
        state = tmp_path / "state-bucket"
        state.unlink(missing_ok=True)
        if stub_env.pop("STUB_BUCKET_EXISTS", None):
            state.touch()
        stub_env.setdefault("STUB_BUCKET_JSON", bucket_json())
        stub_env.setdefault("STUB_PROJECT_NUMBER", PROJECT_NUMBER)
        env.update(PATH=f"{bin_dir}:{env['PATH']}", STUB_LOG=str(log), STUB_STATE=str(state), **stub_env)
        log.write_text("")
        result = subprocess.run(
            ["make", "--no-print-directory", "-C", str(REPO), f"MNISTKIT={bin_dir / 'mnistkit'}", *args],
            input=stdin,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        return result.returncode, result.stdout + result.stderr, log.read_text().splitlines()

    return run


def test_destroy_aborts_without_the_typed_project_id(make):
    code, output, calls = make("destroy", "PROJECT_ID=demo-proj", stdin="yes\n")
    assert code != 0 and "Aborted." in output
    assert not [c for c in calls if c.startswith("terraform")]


def test_destroy_keeps_data_by_default(make):
    code, output, calls = make("destroy", "PROJECT_ID=demo-proj", "REGION=us-east1", stdin="demo-proj\n")
    assert code == 0, output
    assert "Buckets that hold objects and the BigQuery tables are kept" in output
    tf = [c for c in calls if c.startswith("terraform")]
    assert len(tf) == 2
    assert "init -input=false -reconfigure -backend-config=bucket=demo-proj-tfstate" in tf[0]
    assert "-backend-config=prefix=mnist-dataflow-kit" in tf[0]
    assert tf[1].startswith("terraform -chdir=infra destroy -input=false -auto-approve")
    assert "force_destroy=false project=demo-proj region=us-east1" in tf[1]


def test_force_destroy_applies_the_flags_before_destroying(make):
    code, output, calls = make("destroy", "PROJECT_ID=demo-proj", "AUTO_APPROVE=1", "FORCE_DESTROY=1")
    assert code == 0, output
    tf = [c for c in calls if c.startswith("terraform")]
    assert [c.split(" |")[0] for c in tf[1:]] == [
        "terraform -chdir=infra apply -input=false -auto-approve -target=module.storage -target=module.bigquery",
        "terraform -chdir=infra destroy -input=false -auto-approve",
    ]
    assert all("force_destroy=true" in c for c in tf)


def test_destroy_refuses_while_jobs_run(make):
    code, output, calls = make("destroy", "PROJECT_ID=demo-proj", "AUTO_APPROVE=1", STUB_ACTIVE_JOBS="2025-01-01_job")
    assert code != 0 and "Cancel them first" in output
    assert not [c for c in calls if c.startswith("terraform")]


DESCRIBE = "gcloud storage buckets describe gs://demo-proj-tfstate --project=demo-proj --raw --format=json"


def test_deploy_bootstraps_state_then_enables_apis_then_applies(make):
    code, output, calls = make("deploy", "PROJECT_ID=demo-proj", "REGION=europe-west4", "AUTO_APPROVE=yes")
    assert code == 0, output
    steps = [c.split(" |")[0] for c in calls]
    assert steps == [
        "gcloud projects describe demo-proj --format=value(projectNumber)",
        DESCRIBE,
        "gcloud storage buckets create gs://demo-proj-tfstate --project=demo-proj "
        "--location=europe-west4 --uniform-bucket-level-access --public-access-prevention",
        DESCRIBE,
        "gcloud storage buckets update gs://demo-proj-tfstate "
        "--uniform-bucket-level-access --public-access-prevention --versioning",
        DESCRIBE,
        steps[6],
        "terraform -chdir=infra apply -input=false -auto-approve -target=module.services",
        "terraform -chdir=infra apply -input=false -auto-approve",
        "mnistkit config refresh",
    ]
    assert steps[6].startswith("terraform -chdir=infra init")
    assert "project=demo-proj region=europe-west4" in calls[8]


def test_deploy_reuses_the_state_bucket_and_lets_terraform_ask(make):
    code, output, calls = make("deploy", "PROJECT_ID=demo-proj", STUB_BUCKET_EXISTS="1")
    assert code == 0, output
    assert "exists; checking that project demo-proj owns it" in output
    steps = [c.split(" |")[0] for c in calls]
    assert not [s for s in steps if "buckets create" in s]
    assert steps[-2:] == ["terraform -chdir=infra apply", "mnistkit config refresh"]


def test_deploy_refuses_a_state_bucket_of_another_project(make):
    code, output, calls = make(
        "deploy", "PROJECT_ID=demo-proj", "AUTO_APPROVE=1", STUB_BUCKET_EXISTS="1", STUB_BUCKET_JSON=bucket_json("999")
    )
    assert code != 0
    assert "gs://demo-proj-tfstate belongs to project number 999, not to this project (123456789012)" in output
    assert "set TF_STATE_BUCKET" in output
    steps = [c.split(" |")[0] for c in calls]
    assert not [s for s in steps if "buckets update" in s or s.startswith(("terraform", "mnistkit"))], steps


@pytest.mark.parametrize("failing", ["projects describe", "storage buckets update", "storage buckets create"])
def test_bootstrap_state_fails_closed_when_gcloud_fails(make, failing):
    code, output, calls = make("bootstrap-state", "PROJECT_ID=demo-proj", STUB_FAIL=failing)
    assert code != 0, output
    assert calls[-1].startswith(f"gcloud {failing}"), calls
    assert "stub failure" in output


def test_bootstrap_state_refuses_a_bucket_left_unhardened(make):
    # The update "succeeded" but the bucket still is not locked down: the final check catches it.
    code, output, calls = make(
        "bootstrap-state", "PROJECT_ID=demo-proj", STUB_BUCKET_EXISTS="1", STUB_BUCKET_JSON=bucket_json(hardened=False)
    )
    assert code != 0
    assert "does not enforce public access prevention" in output and "is not versioned" in output
    assert calls[-1].split(" |")[0] == DESCRIBE


def test_deploy_needs_the_cli_before_touching_anything(make):
    code, output, calls = make("deploy", "PROJECT_ID=demo-proj", "MNISTKIT=/nonexistent/mnistkit")
    assert code != 0 and "run make setup first" in output
    assert not calls


def test_destroy_fails_closed_when_jobs_cannot_be_listed(make):
    code, output, calls = make("destroy", "PROJECT_ID=demo-proj", "AUTO_APPROVE=1", STUB_FAIL="dataflow jobs list")
    assert code != 0 and "Could not list active Dataflow jobs" in output
    assert not [c for c in calls if c.startswith("terraform")]


def test_cloud_targets_need_a_project(make):
    code, output, calls = make("plan")
    assert code != 0 and "Set PROJECT_ID=" in output
    assert not [c for c in calls if c.startswith("terraform")]
