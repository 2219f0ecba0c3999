"""The make targets in infra/terraform.mk, run by real make against stand-in `terraform` and
`gcloud` scripts that log their arguments (no cloud here): confirmation, flags, ordering."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest
from tfhelpers import REPO

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="make is not on PATH")

STUB = """#!/bin/sh
vars="force_destroy=$TF_VAR_force_destroy project=$TF_VAR_project_id region=$TF_VAR_region"
echo "$(basename "$0") $* | $vars" >> "$STUB_LOG"
case "$*" in
  "storage buckets describe"*) [ -n "$STUB_BUCKET_EXISTS" ] ;;
  "dataflow jobs list"*) printf '%s' "$STUB_ACTIVE_JOBS" ;;
esac
"""


@pytest.fixture
def make(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in ("terraform", "gcloud"):
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
        env.update(PATH=f"{bin_dir}:{env['PATH']}", STUB_LOG=str(log), **stub_env)
        log.write_text("")
        result = subprocess.run(
            ["make", "--no-print-directory", "-C", str(REPO), *args],
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
        "terraform -chdir=infra apply -input=false -auto-approve"
        " -target=module.storage -target=module.bigquery",
        "terraform -chdir=infra destroy -input=false -auto-approve",
    ]
    assert all("force_destroy=true" in c for c in tf)


def test_destroy_refuses_while_jobs_run(make):
    code, output, calls = make(
        "destroy", "PROJECT_ID=demo-proj", "AUTO_APPROVE=1", STUB_ACTIVE_JOBS="2025-01-01_job"
    )
    assert code != 0 and "Cancel them first" in output
    assert not [c for c in calls if c.startswith("terraform")]


def test_deploy_bootstraps_state_then_enables_apis_then_applies(make):
    code, output, calls = make("deploy", "PROJECT_ID=demo-proj", "REGION=europe-west4", "AUTO_APPROVE=yes")
    assert code == 0, output
    steps = [c.split(" |")[0] for c in calls]
    assert steps[0] == "gcloud storage buckets describe gs://demo-proj-tfstate --project=demo-proj"
    assert steps[1] == (
        "gcloud storage buckets create gs://demo-proj-tfstate --project=demo-proj "
        "--location=europe-west4 --uniform-bucket-level-access --public-access-prevention"
    )
    assert steps[2] == "gcloud storage buckets update gs://demo-proj-tfstate --versioning"
    assert steps[3].startswith("terraform -chdir=infra init")
    assert steps[4] == "terraform -chdir=infra apply -input=false -auto-approve -target=module.services"
    assert steps[5] == "terraform -chdir=infra apply -input=false -auto-approve"
    assert "project=demo-proj region=europe-west4" in calls[5]


def test_deploy_reuses_the_state_bucket_and_lets_terraform_ask(make):
    code, output, calls = make("deploy", "PROJECT_ID=demo-proj", STUB_BUCKET_EXISTS="1")
    assert code == 0, output
    steps = [c.split(" |")[0] for c in calls]
    assert not [s for s in steps if "buckets create" in s]
    assert steps[-1] == "terraform -chdir=infra apply"


def test_cloud_targets_need_a_project(make):
    code, output, calls = make("plan")
    assert code != 0 and "Set PROJECT_ID=" in output
    assert not [c for c in calls if c.startswith("terraform")]
