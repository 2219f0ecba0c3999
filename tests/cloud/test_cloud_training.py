"""`mnistkit train --vertex`: the CustomJob request, asserted on a loopback Vertex AI that answers with
recorded-shape responses, the code wheel staged on the GCS emulator."""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from click.testing import CliRunner
from cloudtest import DATA_BUCKET, MODEL_BUCKET, PROJECT, REGION, WORKER_IMAGE, answer_json

from mnistkit.cli.main import cli

TRAINING_SA = f"mnistkit-training@{PROJECT}.iam.gserviceaccount.com"
JOB = "projects/123456789012/locations/us-central1/customJobs/4417293310281236480"
PARENT = f"/v1/projects/{PROJECT}/locations/{REGION}/customJobs"


def _recorded(name: str) -> dict:
    return json.loads((Path(__file__).with_name("data") / name).read_text())


@dataclass
class VertexApi:
    """POST creates the job (answering the recorded creation); each GET answers the next recorded state."""

    states: list[dict]
    created: dict = field(default_factory=lambda: _recorded("vertex_customjob_created.json"))
    requests: list = field(default_factory=list)
    create_status: int = 200


class _Handler(http.server.BaseHTTPRequestHandler):
    def _answer(self, status: int, body: dict) -> None:
        answer_json(self, status, body)

    def do_POST(self) -> None:
        api = self.server.api
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        api.requests.append(("POST", self.path, self.headers.get("Authorization"), body))
        if self.path != PARENT:
            return self._answer(404, {"error": {"code": 404, "message": "not found"}})
        if api.create_status != 200:
            return self._answer(
                api.create_status,
                {"error": {"code": api.create_status, "message": "Permission 'iam.serviceAccounts.actAs' denied"}},
            )
        self._answer(200, api.created | {"displayName": body["displayName"], "jobSpec": body["jobSpec"]})

    def do_GET(self) -> None:
        api = self.server.api
        api.requests.append(("GET", self.path, self.headers.get("Authorization"), None))
        if self.path != f"/v1/{JOB}":
            return self._answer(404, {"error": {"code": 404, "message": "not found"}})
        self._answer(200, api.states.pop(0) if len(api.states) > 1 else api.states[0])

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def vertex(cloud_env, fake_credentials, gcs, monkeypatch) -> Iterator[VertexApi]:
    api = VertexApi(states=[_recorded("vertex_customjob_running.json"), _recorded("vertex_customjob_succeeded.json")])
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.api = api
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("MNISTKIT_AIPLATFORM_ENDPOINT", f"http://127.0.0.1:{server.server_port}/v1")
    monkeypatch.setenv("MNISTKIT_ALLOW_INSECURE_ENDPOINTS", "1")  # a loopback stand-in for Vertex AI
    monkeypatch.setenv("MNISTKIT_TRAINING_SERVICE_ACCOUNT", TRAINING_SA)
    # Polls come at once, not every 30 s.
    monkeypatch.setattr("mnistkit.pipeline.cloud.training.time.sleep", lambda s: None)
    try:
        yield api
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


TRAIN = [
    "train", "--vertex", "--workers", "3", "--epochs", "4", "--batch-size", "384",
    "--training-data", f"gs://{DATA_BUCKET}/training/mnist", "--job-name", "mnistkit-train-test",
    "--accelerator", "NVIDIA_TESLA_T4:1", "--machine-type", "n1-standard-8",
]  # fmt: skip


def test_custom_job_request_has_the_pools_data_outputs_and_identity(vertex, gcs):
    result = CliRunner().invoke(cli, TRAIN)
    assert result.exit_code == 0, result.output

    (method, path, auth, spec), *polls = vertex.requests
    assert (method, path, auth) == ("POST", PARENT, "Bearer fake-token")
    assert [p[:2] for p in polls] == [("GET", f"/v1/{JOB}")] * 2  # RUNNING, then SUCCEEDED
    assert spec["displayName"] == "mnistkit-train-test" and spec["labels"] == {"app": "mnistkit"}
    job = spec["jobSpec"]
    assert job["serviceAccount"] == TRAINING_SA
    assert job["baseOutputDirectory"] == {"outputUriPrefix": f"gs://{MODEL_BUCKET}/training/mnistkit-train-test"}
    assert job["scheduling"] == {"restartJobOnWorkerRestart": True}
    chief, workers = job["workerPoolSpecs"]
    assert (chief["replicaCount"], workers["replicaCount"]) == ("1", "2")  # 3 processes in all
    for pool in (chief, workers):
        assert pool["machineSpec"] == {
            "machineType": "n1-standard-8",
            "acceleratorType": "NVIDIA_TESLA_T4",
            "acceleratorCount": 1,
        }
        container = pool["containerSpec"]
        assert container["imageUri"] == WORKER_IMAGE
        wheel = container["command"][2].split('"')[1]
        assert wheel.startswith(f"/gcs/{DATA_BUCKET}/training/mnistkit-train-test/code/mnist_dataflow_kit-")
        assert container["command"][2].endswith('exec python -m mnistkit.model_export.distributed "$@"')
        args = dict(zip(container["args"][::2], container["args"][1::2], strict=True))
        assert args["--training-data"] == f"/gcs/{DATA_BUCKET}/training/mnist"
        assert args["--output-dir"] == f"/gcs/{MODEL_BUCKET}/training/mnistkit-train-test"
        assert args["--export-dir"] == f"/gcs/{MODEL_BUCKET}/mnist"  # where `predict` looks by default
        assert (args["--epochs"], args["--batch-size"]) == ("4", "384")

    # The wheel the replicas install was really staged, and is the kit's code.
    from google.cloud import storage

    name = wheel.removeprefix(f"/gcs/{DATA_BUCKET}/")
    blob = storage.Client(project=PROJECT).bucket(DATA_BUCKET).get_blob(name)
    assert blob is not None and blob.size > 10_000

    job_id = JOB.rsplit("/", 1)[1]
    url = f"https://console.cloud.google.com/vertex-ai/locations/{REGION}/training/{job_id}/cpu?project={PROJECT}"
    lines = [line for line in result.output.splitlines() if line.startswith("CustomJob")]
    assert [line.split()[2] for line in lines] == ["PENDING", "RUNNING", "SUCCEEDED"]
    assert all(line.endswith(url) for line in lines)


def test_dry_run_prints_the_spec_and_sends_nothing(vertex, gcs):
    result = CliRunner().invoke(cli, [*TRAIN, "--dry-run", "--workers", "1"])
    assert result.exit_code == 0, result.output
    spec = json.loads(result.output)
    assert len(spec["jobSpec"]["workerPoolSpecs"]) == 1 and not vertex.requests


def test_a_failed_job_and_a_refused_one_are_clean_errors(vertex, gcs):
    vertex.states = [_recorded("vertex_customjob_failed.json")]
    result = CliRunner().invoke(cli, TRAIN)
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "ended JOB_STATE_FAILED: The replica workerpool1-0 exited" in result.output

    vertex.create_status = 403
    result = CliRunner().invoke(cli, TRAIN)
    assert result.exit_code == 1 and "HTTP 403" in result.output and "actAs" in result.output


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--batch-size", "100"], "must divide by the 3 workers"),
        (["--training-data", "/local/shards"], "needs --training-data gs://"),
        (["--set", "training_service_account="], "not configured: training_service_account"),
    ],
)
def test_settings_the_job_cannot_do_without(vertex, gcs, extra, message):
    result = CliRunner().invoke(cli, [*TRAIN, *extra])
    assert result.exit_code == 1 and message in result.output, result.output
    assert not vertex.requests
