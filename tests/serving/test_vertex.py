"""Vertex AI calls (model upload, deploy, online predict, undeploy, batch prediction job) against a
loopback server answering with the shapes the REST API answers with; its :predict forwards to a
real `mnistkit serve`, as Vertex AI forwards to the serving container. --dry-run sends nothing."""

from __future__ import annotations

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import requests
from click.testing import CliRunner

from mnistkit.cli.main import cli

PROJECT, LOCATION = "test-project", "us-central1"
PARENT = f"projects/{PROJECT}/locations/{LOCATION}"
ENDPOINT = f"{PARENT}/endpoints/1234"
MODEL = f"{PARENT}/models/5678"
DEPLOYED_ID = "91011"
ARTIFACT = "gs://test-project-mnistkit-models/mnist/1700000000"


class FakeVertex:
    """Vertex AI's REST surface for the calls the kit makes; long-running operations finish on their
    second look, batch jobs go PENDING → RUNNING → `final_state`."""

    def __init__(self, serve_url: str) -> None:
        self.requests: list[tuple[str, str, dict | None, str]] = []
        self.final_state = "JOB_STATE_SUCCEEDED"
        self.deployed: list[str] = []
        self._looks: dict[str, int] = {}
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self, status: int, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:  # noqa: N802
                fake.requests.append(("GET", self.path, None, self.headers.get("Authorization", "")))
                self._answer(*fake.get(self.path.removeprefix("/v1/")))

            def do_POST(self) -> None:  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                fake.requests.append(("POST", self.path, body, self.headers.get("Authorization", "")))
                self._answer(*fake.post(self.path.removeprefix("/v1/"), body))

            def log_message(self, *args) -> None:
                pass

        self._serve_url = serve_url
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def _look(self, name: str) -> int:
        self._looks[name] = self._looks.get(name, 0) + 1
        return self._looks[name]

    def post(self, path: str, body: dict) -> tuple[int, dict]:
        if path == f"{PARENT}/models:upload":
            return 200, {"name": f"{MODEL}/operations/1", "metadata": {"genericMetadata": {}}}
        if path == f"{ENDPOINT}:deployModel":
            self.deployed.append(DEPLOYED_ID)
            return 200, {"name": f"{ENDPOINT}/operations/2", "metadata": {}}
        if path == f"{ENDPOINT}:undeployModel":
            self.deployed.remove(body["deployedModelId"])
            return 200, {"name": f"{ENDPOINT}/operations/3", "done": True, "response": {}}
        if path == f"{ENDPOINT}:predict":
            if not self.deployed:
                return 400, {"error": {"code": 400, "message": "No deployed model", "status": "FAILED_PRECONDITION"}}
            answer = requests.post(self._serve_url + "/v1/models/mnist:predict", json=body, timeout=30).json()
            return 200, {
                "predictions": answer["predictions"],
                "deployedModelId": DEPLOYED_ID,
                "model": MODEL,
                "modelDisplayName": "mnistkit",
                "modelVersionId": "1",
            }
        if path == f"{PARENT}/batchPredictionJobs":
            return 200, {"name": f"{PARENT}/batchPredictionJobs/42", "state": "JOB_STATE_PENDING", **body}
        return 404, {"error": {"code": 404, "message": f"no route {path}", "status": "NOT_FOUND"}}

    def get(self, path: str) -> tuple[int, dict]:
        if path == f"{MODEL}/operations/1":
            done = self._look(path) > 1
            return 200, {
                "name": path,
                "done": done,
                **({"response": {"model": MODEL, "modelVersionId": "1"}} if done else {}),
            }
        if path == f"{ENDPOINT}/operations/2":
            return 200, {"name": path, "done": True, "response": {"deployedModel": {"id": DEPLOYED_ID, "model": MODEL}}}
        if path == ENDPOINT:
            return 200, {"name": ENDPOINT, "deployedModels": [{"id": d, "model": MODEL} for d in self.deployed]}
        if path == f"{PARENT}/batchPredictionJobs/42":
            look = self._look(path)
            state = ["JOB_STATE_PENDING", "JOB_STATE_RUNNING", self.final_state][min(look, 3) - 1]
            job = {"name": path, "state": state}
            if state == "JOB_STATE_SUCCEEDED":
                job["outputInfo"] = {"bigqueryOutputDataset": f"bq://{PROJECT}.prediction_mnistkit_2026"}
            if state == "JOB_STATE_FAILED":
                job["error"] = {"code": 3, "message": "instances could not be parsed"}
            return 200, job
        return 404, {"error": {"code": 404, "message": f"no route {path}", "status": "NOT_FOUND"}}


@pytest.fixture
def vertex(server, fake_credentials, monkeypatch, tmp_path):
    fake = FakeVertex(server.url)
    monkeypatch.setenv("MNISTKIT_AIPLATFORM_ENDPOINT", f"{fake.url}/v1")
    monkeypatch.setenv("MNISTKIT_ALLOW_INSECURE_ENDPOINTS", "1")  # a loopback stand-in for Vertex AI
    monkeypatch.setenv("NO_GCE_CHECK", "true")
    monkeypatch.setenv("MNISTKIT_CONFIG", str(tmp_path / "no-config.json"))
    monkeypatch.chdir(tmp_path)  # no .mnistkit/config.json or infra/ outputs of the checkout
    yield fake
    fake.httpd.shutdown()


def _cli(*args: str) -> str:
    result = CliRunner().invoke(cli, [*args, "--set", f"project_id={PROJECT}"] if args[0] != "predict" else list(args))
    assert result.exit_code == 0, result.output + repr(result.exception)
    return result.output


SERVING_SA = f"mnistkit-serving@{PROJECT}.iam.gserviceaccount.com"


def test_deploy_uploads_the_export_and_deploys_it_with_the_kit_container(vertex):
    output = _cli(
        "endpoint",
        "deploy",
        "--model",
        ARTIFACT,
        "--endpoint",
        f"vertex://{ENDPOINT}",
        "--serving-image",
        "us-docker.pkg.dev/p/r/mnistkit-serve:1",
        "--machine-type",
        "n1-standard-4",
        "--min-replicas",
        "1",
        "--max-replicas",
        "3",
        "--accelerator",
        "NVIDIA_TESLA_T4",
        "--poll-seconds",
        "0.01",
    )
    assert f"Model: {MODEL}" in output and f"Deployed model {DEPLOYED_ID} on {ENDPOINT}" in output
    (upload,) = [body for method, path, body, _ in vertex.requests if path.endswith("models:upload")]
    assert upload["model"]["artifactUri"] == ARTIFACT
    spec = upload["model"]["containerSpec"]
    assert spec["imageUri"] == "us-docker.pkg.dev/p/r/mnistkit-serve:1"
    assert spec["predictRoute"] == "/v1/models/mnist:predict" and spec["healthRoute"] == "/health"
    assert (
        spec["ports"] == [{"containerPort": 8080}] and "command" not in spec
    )  # the image's CMD serves AIP_STORAGE_URI
    (deploy,) = [body for method, path, body, _ in vertex.requests if path.endswith(":deployModel")]
    assert deploy["deployedModel"]["model"] == MODEL and deploy["trafficSplit"] == {"0": 100}
    assert deploy["deployedModel"]["dedicatedResources"] == {
        "machineSpec": {"machineType": "n1-standard-4", "acceleratorType": "NVIDIA_TESLA_T4", "acceleratorCount": 1},
        "minReplicaCount": 1,
        "maxReplicaCount": 3,
    }
    assert "serviceAccount" not in deploy["deployedModel"]  # without one, Vertex AI's own agent
    assert {auth for *_, auth in vertex.requests} == {"Bearer fake-token"}
    # The upload's operation was polled until done.
    assert [p for m, p, _, _ in vertex.requests if m == "GET"].count(f"/v1/{MODEL}/operations/1") == 2


def test_the_prebuilt_tensorflow_container_needs_no_image(vertex):
    _cli(
        "endpoint",
        "deploy",
        "--model",
        ARTIFACT,
        "--endpoint",
        ENDPOINT,
        "--container",
        "tensorflow",
        "--poll-seconds",
        "0",
        "--set",
        f"serving_service_account={SERVING_SA}",
    )
    (upload,) = [body for _, path, body, _ in vertex.requests if path.endswith("models:upload")]
    assert upload["model"]["containerSpec"] == {
        "imageUri": "us-docker.pkg.dev/vertex-ai/prediction/tf2-cpu.2-15:latest"
    }
    # The serving_service_account setting (Terraform output): the model runs as that account.
    (deploy,) = [body for _, path, body, _ in vertex.requests if path.endswith(":deployModel")]
    assert deploy["deployedModel"]["serviceAccount"] == SERVING_SA


def test_deploy_without_an_image_says_what_to_do(vertex):
    result = CliRunner().invoke(
        cli, ["endpoint", "deploy", "--model", ARTIFACT, "--endpoint", ENDPOINT, "--set", f"project_id={PROJECT}"]
    )
    assert result.exit_code == 1 and "needs its image: --serving-image" in result.output
    assert vertex.requests == []


def test_online_predict_through_the_endpoint_and_undeploy(vertex, text_rows, expected):
    _cli(
        "endpoint",
        "deploy",
        "--model",
        ARTIFACT,
        "--endpoint",
        ENDPOINT,
        "--container",
        "tensorflow",
        "--poll-seconds",
        "0",
    )
    output = _cli("endpoint", "predict", "--endpoint", ENDPOINT, "--input", text_rows, "--limit", "4")
    lines = [line for line in output.splitlines() if line.startswith("key ")]
    assert [int(re.match(r"key (\d+): class (\d)", line).group(2)) for line in lines] == expected[1][:4].tolist()
    assert f"Answered by deployed model {DEPLOYED_ID}" in output
    output = _cli("endpoint", "undeploy", "--endpoint", ENDPOINT, "--poll-seconds", "0")
    assert f"Undeployed {DEPLOYED_ID} from {ENDPOINT}" in output and vertex.deployed == []


def test_predict_pipeline_with_a_vertex_endpoint(vertex, text_rows, expected, tmp_path):
    vertex.deployed.append(DEPLOYED_ID)
    out = tmp_path / "vertex"
    output = _cli(
        "predict", "--endpoint", f"vertex://{ENDPOINT}", "--input", text_rows, "--output", str(out), "--max-batch", "64"
    )
    assert "Predicted 1,000 of 1,000 rows" in output
    rows = [json.loads(line) for path in tmp_path.glob("vertex-0*.jsonl") for line in path.read_text().splitlines()]
    assert sorted(r["key"] for r in rows) == list(range(1000))
    assert np.array_equal([r["class"] for r in sorted(rows, key=lambda r: r["key"])], expected[1])
    predicts = [body for _, path, body, auth in vertex.requests if path == f"/v1/{ENDPOINT}:predict"]
    assert all(len(body["instances"]) <= 64 for body in predicts) and len(predicts) >= 1000 // 64


def test_batch_prediction_job_is_followed_to_its_end(vertex):
    output = _cli(
        "batch-predict",
        "--model",
        MODEL,
        "--input",
        f"bq://{PROJECT}.mnist.images",
        "--output",
        f"bq://{PROJECT}",
        "--poll-seconds",
        "0",
    )
    states = re.findall(r"batchPredictionJobs/42: (JOB_STATE_\w+)", output)
    assert states == ["JOB_STATE_PENDING", "JOB_STATE_PENDING", "JOB_STATE_RUNNING", "JOB_STATE_SUCCEEDED"]
    assert f"predictions: bq://{PROJECT}.prediction_mnistkit_2026" in output
    (job,) = [body for m, path, body, _ in vertex.requests if m == "POST" and path.endswith("batchPredictionJobs")]
    assert job["model"] == MODEL
    assert job["inputConfig"] == {
        "instancesFormat": "bigquery",
        "bigquerySource": {"inputUri": f"bq://{PROJECT}.mnist.images"},
    }
    assert job["outputConfig"] == {
        "predictionsFormat": "bigquery",
        "bigqueryDestination": {"outputUri": f"bq://{PROJECT}"},
    }


def test_a_failed_batch_job_fails_the_command(vertex):
    vertex.final_state = "JOB_STATE_FAILED"
    result = CliRunner().invoke(
        cli,
        [
            "batch-predict",
            "--model",
            MODEL,
            "--input",
            "gs://b/in.jsonl",
            "--output",
            "gs://b/out/",
            "--poll-seconds",
            "0",
            "--set",
            f"project_id={PROJECT}",
        ],
    )
    assert result.exit_code == 1
    assert "ended JOB_STATE_FAILED" in result.output and "instances could not be parsed" in result.output


def test_dry_run_prints_each_request_and_sends_none(vertex, text_rows):
    output = _cli(
        "endpoint", "deploy", "--model", ARTIFACT, "--endpoint", ENDPOINT, "--container", "tensorflow", "--dry-run"
    )
    assert f"POST {vertex.url}/v1/{PARENT}/models:upload" in output
    assert f"POST {vertex.url}/v1/{ENDPOINT}:deployModel" in output and '"artifactUri": "' + ARTIFACT in output
    output = _cli("endpoint", "predict", "--endpoint", ENDPOINT, "--input", text_rows, "--limit", "2", "--dry-run")
    assert f"POST {vertex.url}/v1/{ENDPOINT}:predict" in output and "... 784 values" in output
    output = _cli("batch-predict", "--model", MODEL, "--input", "bq://p.d.t", "--output", "bq://p", "--dry-run")
    assert f"POST {vertex.url}/v1/{PARENT}/batchPredictionJobs" in output
    assert vertex.requests == []


@pytest.fixture(scope="module")
def text_rows(tmp_path_factory, digits) -> str:
    from mnistkit.pipeline.io.formats import write_rows

    keys, images, _ = digits
    path = tmp_path_factory.mktemp("vertex-rows") / "rows.txt"
    write_rows(str(path), "text", [(keys, np.rint(images * 255).astype(np.uint8))])
    return str(path)


def test_the_serving_image_runs_a_command_line_serve_accepts():
    import shlex

    from mnistkit.cli.serve_cmds import serve
    from mnistkit.pipeline.serving.server import vertex_settings

    dockerfile = (Path(__file__).resolve().parents[2] / "pipeline" / "cloud" / "serve" / "Dockerfile").read_text()
    (cmd,) = re.findall(r"^CMD (\[.*\])$", dockerfile, re.M)
    line = json.loads(cmd)[-1].removeprefix("exec ")
    args = shlex.split(line.replace('"${AIP_HTTP_PORT:-$PORT}"', "8080").replace('"${AIP_STORAGE_URI:-$MODEL}"', "M"))
    assert args[:2] == ["mnistkit", "serve"]
    context = serve.make_context("serve", args[2:])
    assert context.params["host"] == "0.0.0.0" and context.params["port"] == 8080 and context.params["model"] == "M"
    assert vertex_settings({"AIP_HTTP_PORT": "8080"}) == {"port": 8080}
