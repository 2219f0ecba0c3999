"""`mnistkit doctor` and the GPU quota gate, against recorded-shape API responses and the emulators."""

from __future__ import annotations

import pytest
from click.testing import CliRunner
from cloudtest import PROJECT

from mnistkit.cli.main import cli
from mnistkit.pipeline.cloud.config import load_config
from mnistkit.pipeline.cloud.doctor import QuotaError, check_gpu_quota, require_gpu_quota, run_doctor
from mnistkit.pipeline.cloud.gpus import parse_gpu
from mnistkit.pipeline.io.google_apis import API_ENDPOINTS, EndpointRefused, api_endpoint, session


def _config(**settings):
    return load_config({name: (str(value), "test") for name, value in settings.items()})


@pytest.mark.parametrize(
    ("gpu", "workers", "ok", "named"),
    [
        ("t4:1", 3, True, None),  # T4: limit 4, 1 in use → 3 free; all regions 7 free
        ("t4:1", 4, False, "NVIDIA_T4_GPUS"),
        ("t4:2", 2, False, "NVIDIA_T4_GPUS"),
        ("l4:1", 2, False, "NVIDIA_L4_GPUS"),
        ("a100-80gb:1", 1, False, "NVIDIA_A100_80GB_GPUS"),  # no such quota in the region: 0
    ],
)
def test_gpu_quota_compares_free_gpus_with_a_full_scale_out(google_apis, gpu, workers, ok, named):
    check = check_gpu_quota(_config(max_workers=workers), parse_gpu(gpu), session())
    assert check.ok is ok, check.detail
    if named:
        assert f"Raise {named} to at least {workers * int(gpu.split(':')[1])}" in check.detail
        assert f"iam-admin/quotas?project={PROJECT}" in check.detail
    # Both quotas were read, with the ADC token.
    assert [path.rsplit("/", 2)[-1] for path, _, _ in google_apis.requests] == ["us-central1", PROJECT]
    assert {auth for _, _, auth in google_apis.requests} == {"Bearer fake-token"}


def test_the_all_regions_quota_can_be_the_short_one(google_apis):
    project = google_apis.routes[f"/compute/v1/projects/{PROJECT}"][1]
    project["quotas"][-1] = {"metric": "GPUS_ALL_REGIONS", "limit": 2, "usage": 0}
    check = check_gpu_quota(_config(max_workers=3), parse_gpu("t4:1"), session())
    assert not check.ok and "Raise GPUS_ALL_REGIONS to at least 3" in check.detail
    assert "NVIDIA_T4_GPUS" not in check.detail.split("but")[1]


def test_predict_gate_raises_only_for_gpu_launches(google_apis):
    assert require_gpu_quota(_config(gpu="none")) is None and not google_apis.requests
    assert require_gpu_quota(_config(gpu="t4:1", max_workers=2)).ok
    with pytest.raises(QuotaError, match="NVIDIA_T4_GPUS"):
        require_gpu_quota(_config(gpu="t4:1", max_workers=8))


def test_doctor_checks_everything_against_the_emulators(google_apis, gcs, bigquery):
    checks = {c.name: c for c in run_doctor(_config(gpu="t4:1", max_workers=2))}
    assert [name for name, c in checks.items() if c.ok is False] == []
    assert checks["credentials"].ok and checks["bigquery_dataset"].ok and checks["gpu_quota"].ok
    assert checks["data_bucket"].ok and checks["model_bucket"].ok and checks["temp_location"].ok
    # Enabled APIs come in two pages; Cloud Build is not among them, which only warns.
    assert checks["APIs"].ok is None and "cloudbuild.googleapis.com" in checks["APIs"].detail


def test_doctor_cli_fails_on_missing_access_and_names_the_quota(google_apis, gcs, bigquery):
    gcs.server.wipe()  # no buckets at all
    region = google_apis.routes[f"/compute/v1/projects/{PROJECT}/regions/us-central1"][1]
    google_apis.routes[f"/compute/v1/projects/{PROJECT}/regions/us-central1"] = (
        403,
        {"error": {"code": 403, "message": "Required 'compute.regions.get' permission"}},
    )
    result = CliRunner().invoke(cli, ["doctor", "--gpu", "t4:1", "--max-workers", "2"])
    assert result.exit_code == 1, result.output
    assert "[FAIL] data_bucket: gs://test-project-mnistkit-data: NotFound" in result.output
    assert "[warn] gpu_quota: could not check: HTTP 403" in result.output
    assert "compute.regions.get" in result.output

    google_apis.routes[f"/compute/v1/projects/{PROJECT}/regions/us-central1"] = (200, region)
    gcs.reset()
    result = CliRunner().invoke(cli, ["doctor", "--gpu", "t4:1", "--max-workers", "9"])
    assert result.exit_code == 1, result.output
    assert "[FAIL] gpu_quota: max_workers 9 × 1 nvidia-tesla-t4 = 9 GPUs" in result.output
    assert "Raise NVIDIA_T4_GPUS and GPUS_ALL_REGIONS to at least 9" in result.output
    assert "[ok  ] data_bucket" in result.output


@pytest.mark.parametrize(
    "url",
    [
        "https://compute.googleapis.com/compute/v1",
        "https://compute.us-central1.rep.googleapis.com/compute/v1/",
        "https://private.googleapis.com:443/compute/v1",
    ],
)
def test_endpoint_overrides_to_google_api_hosts_are_used(url):
    assert api_endpoint("compute", environ={"MNISTKIT_COMPUTE_ENDPOINT": url}) == url.rstrip("/")


@pytest.mark.parametrize(
    ("url", "opt_in"),
    [
        ("http://compute.googleapis.com/compute/v1", "1"),  # plain http, even with the opt-in
        ("https://compute.googleapis.com.example.com/compute/v1", None),
        ("https://example.com/.googleapis.com/compute/v1", None),
        ("https://compute.googleapis.com@example.com/compute/v1", None),
        ("https://compute.googleapis.com:8443/compute/v1", None),
        ("https://googleapis.com/compute/v1", None),
        ("http://127.0.0.1:8080/compute/v1", None),  # loopback without the opt-in
        ("http://127.0.0.1:8080/compute/v1", "true"),  # only "1" opts in
        ("http://10.0.0.5:8080/compute/v1", "1"),  # the opt-in covers loopback only
        ("ftp://localhost/compute/v1", "1"),
    ],
)
def test_endpoint_overrides_elsewhere_are_refused(url, opt_in):
    environ = {"MNISTKIT_COMPUTE_ENDPOINT": url}
    if opt_in:
        environ["MNISTKIT_ALLOW_INSECURE_ENDPOINTS"] = opt_in
    with pytest.raises(EndpointRefused, match="refused: the request carries your Google credentials"):
        api_endpoint("compute", environ=environ)


def test_loopback_endpoints_need_the_explicit_opt_in():
    environ = {"MNISTKIT_SERVICEUSAGE_ENDPOINT": "http://localhost:9/v1", "MNISTKIT_ALLOW_INSECURE_ENDPOINTS": "1"}
    assert api_endpoint("serviceusage", environ=environ) == "http://localhost:9/v1"
    assert api_endpoint("serviceusage", environ={}) == API_ENDPOINTS["serviceusage"]
    assert api_endpoint("serviceusage", environ={"MNISTKIT_SERVICEUSAGE_ENDPOINT": ""}) == API_ENDPOINTS["serviceusage"]
    assert api_endpoint("aiplatform", "europe-west4", environ={}) == "https://europe-west4-aiplatform.googleapis.com/v1"


def test_a_refused_endpoint_never_receives_the_token(google_apis, gcs, bigquery, monkeypatch):
    """The recorded-response server on loopback, without the opt-in: no request reaches it."""
    monkeypatch.delenv("MNISTKIT_ALLOW_INSECURE_ENDPOINTS")
    with pytest.raises(EndpointRefused, match="MNISTKIT_COMPUTE_ENDPOINT=http://127.0.0.1"):
        require_gpu_quota(_config(gpu="t4:1", max_workers=2))
    checks = {c.name: c for c in run_doctor(_config(gpu="t4:1", max_workers=2))}
    assert checks["APIs"].ok is False and "MNISTKIT_SERVICEUSAGE_ENDPOINT" in checks["APIs"].detail
    assert checks["gpu_quota"].ok is False and "MNISTKIT_ALLOW_INSECURE_ENDPOINTS=1" in checks["gpu_quota"].detail
    assert google_apis.requests == []
