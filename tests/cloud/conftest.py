"""Fixtures of the cloud tests: the GCS emulator holding the kit's buckets, the config handoff, and a
stand-in for the Compute and Service Usage APIs. The emulators themselves (GCS, BigQuery, Pub/Sub)
are shared with the other test areas: tests/emulators.py.
"""

from __future__ import annotations

import dataclasses
import http.server
import json
import os
import threading
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cloudtest import DATA_BUCKET, DATAFLOW_BUCKET, MODEL_BUCKET, PROJECT, answer_json, terraform_outputs
from emulators import GcsEmulator


@pytest.fixture
def gcs(gcs_emulator, fake_credentials, monkeypatch) -> GcsEmulator:
    """The GCS emulator with the kit's three buckets, empty, and this test's clients pointed at it."""
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs_emulator.endpoint)
    kit = dataclasses.replace(gcs_emulator, buckets=(MODEL_BUCKET, DATA_BUCKET, DATAFLOW_BUCKET))
    kit.reset()
    return kit


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
        answer_json(self, status, body)

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
