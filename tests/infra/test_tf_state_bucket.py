"""infra/scripts/check_state_bucket.py on recorded-shape responses: the JSON API bucket resource
that `gcloud storage buckets describe --raw --format=json` prints, and what a failing gcloud
leaves behind (nothing, or an error text)."""

from __future__ import annotations

import copy
import json
import subprocess
import sys

import pytest
from tfhelpers import INFRA

SCRIPT = INFRA / "scripts" / "check_state_bucket.py"
NUMBER = "123456789012"
# Shaped like a real response (fields the check does not read included).
RECORDED = {
    "kind": "storage#bucket",
    "selfLink": "https://www.googleapis.com/storage/v1/b/demo-proj-tfstate",
    "id": "demo-proj-tfstate",
    "name": "demo-proj-tfstate",
    "projectNumber": NUMBER,
    "generation": "1719230000000000",
    "metageneration": "3",
    "location": "US-CENTRAL1",
    "storageClass": "STANDARD",
    "etag": "CAM=",
    "timeCreated": "2024-06-24T12:00:00.000Z",
    "updated": "2024-06-24T12:05:00.000Z",
    "versioning": {"enabled": True},
    "iamConfiguration": {
        "bucketPolicyOnly": {"enabled": True, "lockedTime": "2024-09-22T12:00:00.000Z"},
        "uniformBucketLevelAccess": {"enabled": True, "lockedTime": "2024-09-22T12:00:00.000Z"},
        "publicAccessPrevention": "enforced",
    },
    "locationType": "region",
    "softDeletePolicy": {"retentionDurationSeconds": "604800", "effectiveTime": "2024-06-24T12:00:00.000Z"},
}


def check(stdin: str, *args: str, number: str = NUMBER) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(SCRIPT), "--project-number", number, *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=30,
    )


def variant(**changes) -> str:
    bucket = copy.deepcopy(RECORDED)
    for path, value in changes.items():
        node = bucket
        *parents, leaf = path.split("__")
        for key in parents:
            node = node[key]
        if value is None:
            node.pop(leaf)
        else:
            node[leaf] = value
    return json.dumps(bucket)


@pytest.mark.parametrize("hardened", [[], ["--hardened"]])
def test_the_projects_own_locked_down_bucket_passes(hardened):
    result = check(json.dumps(RECORDED), *hardened)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""


def test_a_bucket_owned_by_another_project_number_is_refused():
    result = check(variant(projectNumber="987654321098"))
    assert result.returncode == 1
    assert "gs://demo-proj-tfstate belongs to project number 987654321098, not to this project (123456789012)" in (
        result.stderr
    )


def test_a_bucket_without_a_project_number_is_refused():
    result = check(variant(projectNumber=None))
    assert result.returncode == 1 and "an unknown project" in result.stderr


@pytest.mark.parametrize(
    "stdin",
    [
        "",
        "ERROR: (gcloud.storage.buckets.describe) HTTPError 403: caller does not have storage.buckets.get access",
        "null",
        "[]",
        '{"error": {"code": 404, "message": "The specified bucket does not exist."}}',
    ],
    ids=["nothing", "error-text", "null", "list", "api-error"],
)
def test_gcloud_failure_fails_closed(stdin):
    result = check(stdin)
    assert result.returncode == 1 and result.stderr.startswith("State bucket refused:"), result.stderr


@pytest.mark.parametrize("number", ["", "ERROR: (gcloud.projects.describe) permission denied", "None"])
def test_an_unknown_project_number_fails_closed(number):
    result = check(json.dumps(RECORDED), number=number)
    assert result.returncode == 1 and "could not look the project up" in result.stderr


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"iamConfiguration__uniformBucketLevelAccess__enabled": False}, "uniform bucket-level access"),
        ({"iamConfiguration__publicAccessPrevention": "inherited"}, "public access prevention"),
        ({"versioning": None}, "is not versioned"),
        ({"versioning__enabled": False}, "is not versioned"),
    ],
)
def test_hardened_requires_ubla_pap_and_versioning(changes, message):
    stdin = variant(**changes)
    assert check(stdin).returncode == 0, "ownership alone passes before the settings are re-applied"
    result = check(stdin, "--hardened")
    assert result.returncode == 1 and message in result.stderr


def test_the_file_argument_is_read_like_stdin(tmp_path):
    path = tmp_path / "bucket.json"
    path.write_text(variant(projectNumber="1"))
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--project-number", NUMBER, str(path)], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 1 and "project number 1," in result.stderr
