"""Real GCP emulators for the cloud tests: gcp-storage-emulator (in-process) and bqemulator (subprocess).

The servers live for the session; the environment that points clients at them is set per test
by the function fixtures (`gcs`, `bigquery`, `google_apis`), so tests elsewhere never see it.
Beam has no endpoint options for BigQuery, so `bigquery` patches the three places its clients
take their endpoints from; library code never knows about emulators. Clients also need
credentials that never refresh (a fake authorized-user ADC file): without any, Beam retries for
~30 s per pipeline and its apitools BigQuery client starts an interactive browser login. Every
server binds 127.0.0.1 and stops with its fixture.
"""

from __future__ import annotations

import http.server
import json
import os
import shutil
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cloudtest import (
    DATA_BUCKET,
    DATAFLOW_BUCKET,
    DATASET,
    MODEL_BUCKET,
    PROJECT,
    free_port,
    terraform_outputs,
)

_LAUNCHER = Path(__file__).with_name("bqemu_launcher.py")


@pytest.fixture(scope="session", autouse=True)
def _home_stays_clean() -> Iterator[None]:
    """Beam's apitools client can leave ~/.apitools.token*; remove what this session adds to ~."""
    home = Path.home()
    watched = (".apitools.token", ".duckdb")
    before = {name: (home / name).exists() for name in watched}
    yield
    for name, existed in before.items():
        path = home / name
        if not existed and path.is_dir():
            shutil.rmtree(path)
        elif not existed and path.exists():
            path.unlink()


@pytest.fixture(scope="session")
def fake_credentials_file(tmp_path_factory) -> Path:
    """An authorized-user ADC file whose token never expires, so nothing is ever refreshed."""
    path = tmp_path_factory.mktemp("adc") / "fake_adc.json"
    path.write_text(
        json.dumps(
            {
                "type": "authorized_user",
                "client_id": "fake",
                "client_secret": "fake",
                "refresh_token": "fake",
                "token": "fake-token",
                "expiry": "2099-01-01T00:00:00Z",
                "quota_project_id": PROJECT,
            }
        )
    )
    return path


@pytest.fixture
def fake_credentials(fake_credentials_file, monkeypatch) -> Path:
    """Application Default Credentials for this test: the fake file."""
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(fake_credentials_file))
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", PROJECT)
    monkeypatch.setenv("NO_GCE_CHECK", "true")  # no metadata-server probes
    return fake_credentials_file


@dataclass
class GcsEmulator:
    endpoint: str
    data_dir: Path
    server: object

    def reset(self) -> None:
        """Empty every bucket the tests use (they are recreated empty); needs STORAGE_EMULATOR_HOST."""
        from google.cloud import storage

        self.server.wipe()
        client = storage.Client(project=PROJECT)
        for bucket in (MODEL_BUCKET, DATA_BUCKET, DATAFLOW_BUCKET):
            client.create_bucket(bucket)


@pytest.fixture(scope="session")
def gcs_emulator(tmp_path_factory) -> Iterator[GcsEmulator]:
    """gcp-storage-emulator in this process, on disk so bqemulator can read what Beam stages for loads."""
    from gcp_storage_emulator.server import create_server

    data_dir = tmp_path_factory.mktemp("gcs")
    port = free_port()
    server = create_server("127.0.0.1", port, in_memory=False, data_dir=str(data_dir))
    server.start()
    try:
        yield GcsEmulator(f"http://127.0.0.1:{port}", data_dir, server)
    finally:
        server.stop()


@pytest.fixture
def gcs(gcs_emulator, fake_credentials, monkeypatch) -> GcsEmulator:
    """The GCS emulator with the kit's three buckets, empty, and this test's clients pointed at it."""
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs_emulator.endpoint)
    gcs_emulator.reset()
    return gcs_emulator


@dataclass
class BigQueryEmulator:
    endpoint: str
    grpc_target: str

    def client(self):
        from google.cloud import bigquery

        return bigquery.Client(project=PROJECT)


def _wait_for(url: str, process: subprocess.Popen, log: Path, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"bqemulator exited with {process.returncode}: {log.read_text()[-2000:]}")
        try:
            urllib.request.urlopen(url, timeout=1).close()
            return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"bqemulator not ready after {timeout} s: {log.read_text()[-2000:]}")


@pytest.fixture(scope="session")
def bigquery_emulator(tmp_path_factory, gcs_emulator) -> Iterator[BigQueryEmulator]:
    """bqemulator (REST + Storage Read gRPC) in a subprocess."""
    rest_port, grpc_port = free_port(), free_port()
    log = tmp_path_factory.mktemp("bqemu") / "bqemulator.log"
    env = dict(
        os.environ,
        BQEMU_ENABLE_FORMAT_EXTENSIONS="false",  # Avro/Excel extensions would be downloaded
        # gs:// load URIs resolve here: the GCS emulator's disk layout.
        BQEMU_GCS_LOCAL_ROOT=str(gcs_emulator.data_dir / ".cloudstorage"),
    )
    command = [
        sys.executable, str(_LAUNCHER), "start",
        "--rest-host", "127.0.0.1", "--rest-port", str(rest_port),
        "--grpc-host", "127.0.0.1", "--grpc-port", str(grpc_port),
        "--project", PROJECT, "--log-level", "warning",
    ]  # fmt: skip
    with log.open("w") as log_file:
        process = subprocess.Popen(command, env=env, stdout=log_file, stderr=subprocess.STDOUT)
    try:
        endpoint = f"http://127.0.0.1:{rest_port}"
        _wait_for(f"{endpoint}/bigquery/v2/projects/{PROJECT}/datasets", process, log)
        yield BigQueryEmulator(endpoint, f"127.0.0.1:{grpc_port}")
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _point_clients_at(mp: pytest.MonkeyPatch, endpoint: str, grpc_target: str) -> None:
    import grpc
    from apache_beam.io.gcp.internal.clients import bigquery as apitools_bigquery
    from google.cloud import bigquery_storage_v1
    from google.cloud.bigquery_storage_v1.services.big_query_read.transports import BigQueryReadGrpcTransport

    # 1. google-cloud-bigquery (the kit's loads, Beam's streaming inserts) reads this variable.
    mp.setenv("BIGQUERY_EMULATOR_HOST", endpoint)
    # 2. Beam's apitools client (datasets, tables, load jobs) has a class-level base URL.
    mp.setattr(apitools_bigquery.BigqueryV2, "BASE_URL", f"{endpoint}/bigquery/v2/")
    # 3. The Storage Read API client (DIRECT_READ) dials googleapis over TLS unless given a channel.
    base = bigquery_storage_v1.BigQueryReadClient

    class EmulatorReadClient(base):
        def __init__(self, *args, **kwargs):
            channel = grpc.insecure_channel(grpc_target)
            kwargs.setdefault("transport", BigQueryReadGrpcTransport(channel=channel))
            super().__init__(*args, **kwargs)

    mp.setattr(bigquery_storage_v1, "BigQueryReadClient", EmulatorReadClient)


@pytest.fixture
def bigquery(bigquery_emulator, fake_credentials, monkeypatch) -> Iterator[BigQueryEmulator]:
    """The BigQuery emulator with an empty `mnist` dataset (dropped afterwards), Beam's clients pointed at it."""
    _point_clients_at(monkeypatch, bigquery_emulator.endpoint, bigquery_emulator.grpc_target)
    client = bigquery_emulator.client()
    client.delete_dataset(f"{PROJECT}.{DATASET}", delete_contents=True, not_found_ok=True)
    client.create_dataset(f"{PROJECT}.{DATASET}")
    yield bigquery_emulator
    client.delete_dataset(f"{PROJECT}.{DATASET}", delete_contents=True, not_found_ok=True)


@pytest.fixture
def cloud_env(tmp_path, monkeypatch) -> Path:
    """A config file holding terraform_outputs() (as `mnistkit config refresh` writes it), via MNISTKIT_CONFIG."""
    from mnistkit.pipeline.cloud.config import write_config_file

    for name in list(os.environ):
        if name.startswith("MNISTKIT_"):
            monkeypatch.delenv(name)
    path = tmp_path / "mnistkit-config.json"
    write_config_file(path, terraform_outputs(), {}, source="tests")
    monkeypatch.setenv("MNISTKIT_CONFIG", str(path))
    return path


@dataclass
class GoogleApis:
    """A local stand-in for the Compute and Service Usage REST APIs, serving recorded-shape JSON.

    `routes` maps a path to (status, JSON body), or to a callable of the query string; `requests`
    records (path, query, Authorization header) of every call.
    """

    routes: dict
    requests: list


class _ApiHandler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        url = urllib.parse.urlsplit(self.path)
        query = urllib.parse.parse_qs(url.query)
        self.server.apis.requests.append((url.path, query, self.headers.get("Authorization")))
        route = self.server.apis.routes.get(url.path, (404, {"error": {"code": 404, "message": "not found"}}))
        status, body = route(query) if callable(route) else route
        payload = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=UTF-8")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args) -> None:  # keep the test output clean
        pass


def _recorded(name: str) -> dict:
    return json.loads((Path(__file__).with_name("data") / name).read_text())


@pytest.fixture
def google_apis(cloud_env, fake_credentials, monkeypatch) -> Iterator[GoogleApis]:
    """The API stand-in on a free port, with MNISTKIT_*_ENDPOINT pointing the kit at it."""
    pages = {None: _recorded("serviceusage_enabled_page1.json"), "page-2": _recorded("serviceusage_enabled_page2.json")}
    apis = GoogleApis(
        routes={
            f"/compute/v1/projects/{PROJECT}": (200, _recorded("compute_project.json")),
            f"/compute/v1/projects/{PROJECT}/regions/us-central1": (200, _recorded("compute_region_us-central1.json")),
            f"/serviceusage/v1/projects/{PROJECT}/services": lambda q: (200, pages[q.get("pageToken", [None])[0]]),
        },
        requests=[],
    )
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _ApiHandler)
    server.apis = apis
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{server.server_port}"
    # Plain http on loopback: the kit sends the (fake) token there only with this opt-in.
    monkeypatch.setenv("MNISTKIT_ALLOW_INSECURE_ENDPOINTS", "1")
    monkeypatch.setenv("MNISTKIT_COMPUTE_ENDPOINT", f"{base}/compute/v1")
    monkeypatch.setenv("MNISTKIT_SERVICEUSAGE_ENDPOINT", f"{base}/serviceusage/v1")
    try:
        yield apis
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
