"""Real Google Cloud emulators for every test area: gcp-storage-emulator (in-process), bqemulator and
Google's own Pub/Sub emulator (subprocesses), registered as a pytest plugin by tests/conftest.py.

The servers live for the session; the environment that points clients at them is set per test
by the function fixtures (`bigquery`, `pubsub`, and tests/cloud's `gcs`), so other tests never
see it. Beam has no endpoint options for BigQuery, so `bigquery` patches the three places its
clients take their endpoints from; library code never knows about emulators. Clients also need
credentials that never refresh (a fake authorized-user ADC file): without any, Beam retries for
~30 s per pipeline and its apitools BigQuery client starts an interactive browser login. Every
server binds 127.0.0.1 and stops with its fixture.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from prerequisites import require

__all__ = ["DATASET", "PROJECT", "BigQueryEmulator", "GcsEmulator", "PubSubEmulator", "free_port"]

PROJECT = "test-project"
DATASET = "mnist"
_LAUNCHER = Path(__file__).with_name("bqemu_launcher.py")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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
    # The buckets `reset` recreates (tests/cloud's `gcs` names the kit's three).
    buckets: tuple[str, ...] = field(default=())

    def reset(self) -> None:
        """Empty the emulator and recreate `buckets`, empty; needs STORAGE_EMULATOR_HOST."""
        from google.cloud import storage

        self.server.wipe()
        client = storage.Client(project=PROJECT)
        for bucket in self.buckets:
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


@dataclass
class BigQueryEmulator:
    endpoint: str
    grpc_target: str

    def client(self):
        from google.cloud import bigquery

        return bigquery.Client(project=PROJECT)


def _wait_for(ready: Callable[[], bool], name: str, process: subprocess.Popen, log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited with {process.returncode}: {log.read_text()[-2000:]}")
        try:
            if ready():
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{name} not ready after {timeout} s: {log.read_text()[-2000:]}")


def _http_ok(url: str) -> bool:
    urllib.request.urlopen(url, timeout=1).close()
    return True


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
        datasets = f"{endpoint}/bigquery/v2/projects/{PROJECT}/datasets"
        _wait_for(lambda: _http_ok(datasets), "bqemulator", process, log, 30)
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


@dataclass
class PubSubEmulator:
    """Google's Pub/Sub emulator at `host` (host:port); clients reach it through PUBSUB_EMULATOR_HOST."""

    host: str

    def topic_with_subscription(self, ack_deadline_seconds: int = 10) -> tuple[str, str]:
        """A new topic and a subscription to it (fresh names, so tests never share messages)."""
        from google.cloud import pubsub_v1

        name = f"rows-{uuid.uuid4().hex[:8]}"
        topic = f"projects/{PROJECT}/topics/{name}"
        subscription = f"projects/{PROJECT}/subscriptions/{name}-sub"
        pubsub_v1.PublisherClient().create_topic(name=topic)
        with pubsub_v1.SubscriberClient() as subscriber:
            subscriber.create_subscription(name=subscription, topic=topic, ack_deadline_seconds=ack_deadline_seconds)
        return topic, subscription


def _accepts_connections(port: int) -> bool:
    with socket.create_connection(("127.0.0.1", port), timeout=1):
        return True


@pytest.fixture(scope="session")
def pubsub_emulator(tmp_path_factory) -> Iterator[PubSubEmulator]:
    """`gcloud beta emulators pubsub start` (a Java server) on a free port, for the session."""
    gcloud = shutil.which("gcloud")
    require(gcloud is not None, "gcloud (Google Cloud CLI)", "install google-cloud-cli and its Pub/Sub emulator")
    require(shutil.which("java") is not None, "java", "the Pub/Sub emulator needs a Java 17 runtime")
    port = free_port()
    directory = tmp_path_factory.mktemp("pubsub")
    log = directory / "emulator.log"
    (directory / "data").mkdir()
    command = [
        gcloud, "beta", "emulators", "pubsub", "start",
        f"--host-port=127.0.0.1:{port}", f"--project={PROJECT}", f"--data-dir={directory / 'data'}",
    ]  # fmt: skip
    # Its own gcloud config dir, so the launcher's logs and settings stay out of ~/.config.
    env = dict(os.environ, CLOUDSDK_CORE_DISABLE_PROMPTS="1", CLOUDSDK_CONFIG=str(directory / "gcloud"))
    with log.open("w") as log_file:
        # A session of its own: the gcloud launcher starts the Java server as a child, and both
        # stop together when the group is signalled.
        process = subprocess.Popen(command, env=env, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        _wait_for(lambda: _accepts_connections(port), "the Pub/Sub emulator", process, log, 60)
        yield PubSubEmulator(f"127.0.0.1:{port}")
    finally:
        _stop_group(process)


def _stop_group(process: subprocess.Popen) -> None:
    """Stop the process group led by `process` (the launcher and its server)."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            pass
        try:
            process.wait(timeout=15)
            return
        except subprocess.TimeoutExpired:
            continue


@pytest.fixture
def pubsub(pubsub_emulator, monkeypatch) -> PubSubEmulator:
    """The Pub/Sub emulator, with this test's clients (and Beam's ReadFromPubSub) pointed at it."""
    monkeypatch.setenv("PUBSUB_EMULATOR_HOST", pubsub_emulator.host)
    monkeypatch.setenv("PUBSUB_PROJECT_ID", PROJECT)
    return pubsub_emulator
