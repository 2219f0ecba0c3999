#!/usr/bin/env python3
"""Refuse a Terraform state bucket that is not the project's own, or not locked down.

Reads the bucket as the Cloud Storage JSON API returns it (`gcloud storage buckets describe
gs://B --raw --format=json`) from a file or stdin and checks `projectNumber` against the
project's number (`gcloud projects describe P --format='value(projectNumber)'`). Bucket names
are global: a `PROJECT-tfstate` bucket created by someone else would otherwise receive this
project's state, secrets in it included. With --hardened it also requires uniform bucket-level
access, enforced public access prevention and versioning.

Exit status 0 when the bucket passes, 1 with the reason on stderr otherwise: empty or invalid
input (gcloud failed) is a refusal too, never a pass.
"""

from __future__ import annotations

import argparse
import json
import sys


def problems(bucket: object, project_number: str, hardened: bool) -> list[str]:
    """Why `bucket` (the JSON API resource) must not hold the project's state; [] if it may."""
    if not project_number.isdigit():
        return [f"the project number is {project_number!r}, not digits: could not look the project up"]
    if not isinstance(bucket, dict) or not bucket.get("name"):
        return ["no bucket description (did gcloud storage buckets describe --raw fail?)"]
    name = bucket["name"]
    owner = str(bucket.get("projectNumber", ""))
    if owner != project_number:
        who = f"project number {owner}" if owner else "an unknown project (no projectNumber)"
        return [
            f"gs://{name} belongs to {who}, not to this project ({project_number}). "
            "Bucket names are global: set TF_STATE_BUCKET to a bucket of your own."
        ]
    if not hardened:
        return []
    iam = bucket.get("iamConfiguration") or {}
    found = []
    if (iam.get("uniformBucketLevelAccess") or {}).get("enabled") is not True:
        found.append(f"gs://{name} does not have uniform bucket-level access")
    if iam.get("publicAccessPrevention") != "enforced":
        found.append(f"gs://{name} does not enforce public access prevention")
    if (bucket.get("versioning") or {}).get("enabled") is not True:
        found.append(f"gs://{name} is not versioned")
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--project-number", required=True, help="number of the project that must own the bucket")
    parser.add_argument("--hardened", action="store_true", help="also require UBLA, enforced PAP and versioning")
    parser.add_argument("bucket_json", nargs="?", type=argparse.FileType(), default=sys.stdin)
    args = parser.parse_args(argv)
    text = args.bucket_json.read()
    try:
        bucket = json.loads(text) if text.strip() else None
    except json.JSONDecodeError as error:
        print(f"State bucket refused: unreadable bucket description ({error}).", file=sys.stderr)
        return 1
    found = problems(bucket, args.project_number.strip(), args.hardened)
    for problem in found:
        print(f"State bucket refused: {problem}", file=sys.stderr)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
