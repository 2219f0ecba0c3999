"""`mnistkit doctor`: is this machine and project ready to launch? And the GPU quota gate of predict.

Every check runs even when an earlier one fails, so one run lists everything to fix. Google's
REST APIs are called as io/google_apis.py calls them: MNISTKIT_COMPUTE_ENDPOINT and
MNISTKIT_SERVICEUSAGE_ENDPOINT may point at another https Google API host only (the token goes
with every request); a refused override is a failed check.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from mnistkit.pipeline.cloud.config import CloudConfig, ConfigError
from mnistkit.pipeline.cloud.gpus import GpuSpec, configured_gpu
from mnistkit.pipeline.io.google_apis import EndpointRefused, api_endpoint, call_json, session

__all__ = [
    "Check",
    "OPTIONAL_APIS",
    "QUOTA_CONSOLE",
    "QuotaError",
    "REQUIRED_APIS",
    "check_apis",
    "check_buckets",
    "check_credentials",
    "check_dataset",
    "check_gpu_quota",
    "require_gpu_quota",
    "run_doctor",
]

REQUIRED_APIS = (
    "dataflow.googleapis.com",
    "compute.googleapis.com",
    "storage.googleapis.com",
    "bigquery.googleapis.com",
    "bigquerystorage.googleapis.com",
    "artifactregistry.googleapis.com",
)
# Only `mnistkit image build` needs it, so its absence is a warning.
OPTIONAL_APIS = ("cloudbuild.googleapis.com",)
QUOTA_CONSOLE = "https://console.cloud.google.com/iam-admin/quotas"


@dataclass(frozen=True)
class Check:
    """One line of the doctor's report; `ok` None means it could not be checked (a warning)."""

    name: str
    ok: bool | None
    detail: str


class QuotaError(Exception):
    """The GPU quota cannot hold a fully scaled-out job; the message names the quota to raise."""


def _get_json(http: Any, url: str, **params: Any) -> dict[str, Any]:
    return call_json(http, "GET", url, PermissionError, timeout_s=30, params=params or None)


def check_credentials() -> Check:
    import google.auth
    from google.auth.exceptions import DefaultCredentialsError

    try:
        credentials, project = google.auth.default(scopes=["https://www.googleapis.com/auth/cloud-platform"])
    except DefaultCredentialsError as exc:
        return Check("credentials", False, f"{exc} Run `gcloud auth application-default login`.")
    who = getattr(credentials, "service_account_email", None) or type(credentials).__name__
    return Check("credentials", True, f"{who} (ADC project: {project or 'none'})")


def check_apis(config: CloudConfig, http: Any) -> Check:
    url = f"{api_endpoint('serviceusage')}/projects/{config.project_id}/services"
    enabled: set[str] = set()
    token = None
    while True:
        page = _get_json(http, url, filter="state:ENABLED", pageSize=200, **({"pageToken": token} if token else {}))
        enabled |= {s["config"]["name"] for s in page.get("services", [])}
        token = page.get("nextPageToken")
        if not token:
            break
    missing = [api for api in REQUIRED_APIS if api not in enabled]
    if missing:
        return Check("APIs", False, f"not enabled: {', '.join(missing)} (`make deploy` enables them)")
    optional = [api for api in OPTIONAL_APIS if api not in enabled]
    if optional:
        return Check("APIs", None, f"required APIs enabled; {', '.join(optional)} is not (mnistkit image build)")
    return Check("APIs", True, f"{len(REQUIRED_APIS) + len(OPTIONAL_APIS)} APIs enabled")


def check_buckets(config: CloudConfig, client: Any) -> list[Check]:
    """Listing one object needs storage.objects.list, which every launcher role includes."""
    from mnistkit.pipeline.cloud.staging import split_gcs

    checks = []
    for name in ("model_bucket", "data_bucket", "temp_location"):
        uri = getattr(config, name)
        if not uri:
            checks.append(Check(name, False, "not configured"))
            continue
        bucket, _ = split_gcs(uri)
        try:
            list(client.list_blobs(bucket, max_results=1))
        except Exception as exc:  # NotFound, Forbidden, transport errors: all mean "fix access"
            checks.append(Check(name, False, f"gs://{bucket}: {type(exc).__name__}: {exc}"))
        else:
            checks.append(Check(name, True, f"gs://{bucket} readable"))
    return checks


def check_dataset(config: CloudConfig, client: Any) -> Check:
    if not config.bigquery_dataset:
        return Check("bigquery_dataset", False, "not configured")
    try:
        dataset = client.get_dataset(config.bigquery_dataset)
    except Exception as exc:  # as in check_buckets
        return Check("bigquery_dataset", False, f"{config.bigquery_dataset}: {type(exc).__name__}: {exc}")
    return Check("bigquery_dataset", True, f"{dataset.project}.{dataset.dataset_id} ({dataset.location or '?'})")


def _quota(quotas: list[dict[str, Any]], metric: str) -> tuple[float, float] | None:
    for quota in quotas:
        if quota.get("metric") == metric:
            return float(quota.get("limit", 0)), float(quota.get("usage", 0))
    return None


def check_gpu_quota(config: CloudConfig, gpu: GpuSpec, http: Any) -> Check:
    """Free GPUs (limit − usage) ≥ max_workers × count, in the region and across all regions."""
    needed = config.max_workers * gpu.count
    wanted = f"max_workers {config.max_workers} × {gpu.count} {gpu.type.name} = {needed} GPUs"
    base = f"{api_endpoint('compute')}/projects/{config.project_id}"
    scopes = [
        (gpu.type.quota_metric, f"region {config.region}", f"{base}/regions/{config.region}"),
        ("GPUS_ALL_REGIONS", "all regions", base),
    ]
    short = []
    seen = []
    for metric, scope, url in scopes:
        found = _quota(_get_json(http, url).get("quotas", []), metric)
        if found is None:
            if metric == gpu.type.quota_metric:
                short.append((metric, scope, 0.0, 0.0))
            continue
        limit, usage = found
        seen.append(f"{metric} {limit - usage:g} free of {limit:g} ({scope})")
        if limit >= 0 and limit - usage < needed:
            short.append((metric, scope, limit, usage))
    if not short:
        return Check("gpu_quota", True, f"{wanted}: {'; '.join(seen)}")
    problems = "; ".join(
        f"{m} ({s}) has {lim - use:g} free (limit {lim:g}, in use {use:g})" for m, s, lim, use in short
    )
    metrics = " and ".join(m for m, *_ in short)
    return Check(
        "gpu_quota",
        False,
        f"{wanted}, but {problems}. Raise {metrics} to at least {needed} at "
        f"{QUOTA_CONSOLE}?project={config.project_id} (service compute.googleapis.com), "
        "or lower --max-workers / the GPU count.",
    )


def require_gpu_quota(config: CloudConfig, http: Any | None = None) -> Check | None:
    """The gate `predict --runner dataflow --gpu` passes before launching; raises QuotaError."""
    gpu = configured_gpu(config)
    if gpu is None:
        return None
    check = check_gpu_quota(config, gpu, http or session())
    if not check.ok:
        raise QuotaError(check.detail)
    return check


def run_doctor(
    config: CloudConfig,
    *,
    http: Any | None = None,
    storage_client: Any | None = None,
    bigquery_client: Any | None = None,
) -> list[Check]:
    """Every check for `config`; the GPU quota only when config.gpu is set."""
    checks = [check_credentials()]
    if not checks[0].ok:
        return checks
    if not config.project_id:
        return [*checks, Check("project_id", False, "not configured: deploy infra/ and `mnistkit config refresh`")]
    from google.cloud import bigquery, storage

    http = http or session()
    steps: list[tuple[str, Callable[[], list[Check] | Check]]] = [
        ("APIs", lambda: check_apis(config, http)),
        ("buckets", lambda: check_buckets(config, storage_client or storage.Client(project=config.project_id))),
        (
            "bigquery_dataset",
            lambda: check_dataset(config, bigquery_client or bigquery.Client(project=config.project_id)),
        ),
        ("worker_image", lambda: _check_worker_image(config)),
    ]
    gpu = configured_gpu(config)
    if gpu:
        steps.append(("gpu_quota", lambda: check_gpu_quota(config, gpu, http)))
    for name, step in steps:
        try:
            result = step()
        except (ConfigError, EndpointRefused) as exc:  # a setting to fix: a failure, not a warning
            result = Check(name, False, str(exc))
        except Exception as exc:  # one broken check must not hide the others
            result = Check(name, None, f"could not check: {exc}")
        checks += result if isinstance(result, list) else [result]
    return checks


def _check_worker_image(config: CloudConfig) -> Check:
    if not config.worker_image:
        return Check("worker_image", False, "not configured (Terraform output worker_image)")
    return Check("worker_image", True, f"{config.worker_image} (build it with `mnistkit image build`)")
