"""Vertex AI over its REST API: upload an export to the Model Registry, deploy it to an endpoint,
call it, undeploy it, and run a managed batch prediction job.

Terraform creates the endpoint and its IAM (infra/modules/vertex_endpoint); it cannot deploy a
custom model to it (the google provider's `deployed_models` is output-only), which is what
`mnistkit endpoint deploy` does. Two serving containers are offered:
  kit         the kit's own image (`mnistkit serve`, pipeline/cloud/serve/Dockerfile): the same protocol, batching
              and metrics as locally, on Vertex AI's AIP_* routes
  tensorflow  Google's prebuilt TensorFlow Serving image: the export's signature as is

Every call goes through one VertexApi, which can instead only describe its requests (--dry-run);
it calls the API as io/google_apis.py does (MNISTKIT_AIPLATFORM_ENDPOINT for another address).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from mnistkit.pipeline.inference.remote import vertex_api_base
from mnistkit.pipeline.inference.rest import encode_instances, instance_bytes, parse_predictions
from mnistkit.pipeline.io.google_apis import call_json, session

__all__ = [
    "PREBUILT_TF_IMAGE",
    "BatchJob",
    "DeployConfig",
    "VertexApi",
    "VertexError",
    "deploy_model",
    "endpoint_name",
    "online_predict",
    "run_batch_prediction",
    "undeploy_models",
    "upload_model",
    "version_uri",
]

# Google's prebuilt TensorFlow CPU serving container (a version with the kit's TensorFlow ops).
PREBUILT_TF_IMAGE = "us-docker.pkg.dev/vertex-ai/prediction/tf2-cpu.2-15:latest"
_DONE_STATES = {"JOB_STATE_SUCCEEDED", "JOB_STATE_FAILED", "JOB_STATE_CANCELLED", "JOB_STATE_EXPIRED"}
DRY_RUN_ID = "DRY_RUN"


class VertexError(Exception):
    """A Vertex AI call that failed, or a setting it needs that is missing; the message says which."""


def endpoint_name(endpoint: str) -> str:
    """`projects/P/locations/L/endpoints/E` from that name or its vertex:// URI."""
    name = endpoint.removeprefix("vertex://").strip("/")
    parts = name.split("/")
    if len(parts) != 6 or parts[0] != "projects" or parts[2] != "locations" or parts[4] != "endpoints":
        raise VertexError(f"{endpoint}: expected projects/P/locations/L/endpoints/E (or vertex://…)")
    return name


def version_uri(model: str) -> str:
    """The gs:// version dir Vertex AI serves for `model` (an export dir's newest version, or the version given)."""
    from mnistkit.pipeline.inference.savedmodel import resolve_model

    if not model.startswith("gs://"):
        raise VertexError(f"--model {model}: Vertex AI reads models from GCS; stage it first (mnistkit stage)")
    model = model.rstrip("/")
    return model if model.rsplit("/", 1)[-1].isdigit() else resolve_model(model)


class VertexApi:
    """Calls the Vertex AI REST API of one region with Application Default Credentials.

    With `dry_run`, each request is handed to `describe` (method, URL, body) instead of being
    sent, and answered with placeholders, so a whole deploy can be previewed.
    """

    def __init__(
        self,
        location: str,
        *,
        dry_run: bool = False,
        describe: Callable[[str, str, Any], None] | None = None,
        poll_seconds: float = 10.0,
        session: Any = None,
    ) -> None:
        self.location = location
        self.base = vertex_api_base(location)
        self.dry_run = dry_run
        self.poll_seconds = poll_seconds
        self._describe = describe or (lambda method, url, body: None)
        self._session = session

    def call(self, method: str, path: str, body: Any = None) -> dict[str, Any]:
        """One request to `path` (a resource name, relative to /v1/); the decoded JSON answer."""
        url = f"{self.base}/{path}"
        if self.dry_run:
            self._describe(method, url, body)
            return {}
        if self._session is None:
            self._session = session()
        return call_json(self._session, method, url, VertexError, json=body)

    def wait(self, operation: dict[str, Any], what: str, progress: Callable[[str], None]) -> dict[str, Any]:
        """The `response` of a long-running operation, once it is done (polling it meanwhile)."""
        if self.dry_run:
            return {}
        started = time.monotonic()
        while not operation.get("done"):
            progress(f"[{time.monotonic() - started:6.0f} s] {what}: running")
            time.sleep(self.poll_seconds)
            operation = self.call("GET", operation["name"])
        if "error" in operation:
            error = operation["error"]
            raise VertexError(f"{what} failed: {error.get('message', error)}")
        progress(f"[{time.monotonic() - started:6.0f} s] {what}: done")
        return operation.get("response", {})


@dataclass(frozen=True)
class DeployConfig:
    """How `endpoint deploy` serves the export; see `mnistkit endpoint deploy --help`."""

    endpoint: str
    artifact_uri: str  # gs:// of one version dir of the export
    display_name: str = "mnistkit"
    container: str = "kit"  # "kit" (serving_image) or "tensorflow" (PREBUILT_TF_IMAGE)
    serving_image: str | None = None
    machine_type: str = "n1-standard-2"
    min_replicas: int = 1
    max_replicas: int = 1
    accelerator_type: str | None = None  # e.g. NVIDIA_TESLA_T4
    accelerator_count: int = 0
    service_account: str | None = None


def _container_spec(config: DeployConfig) -> dict[str, Any]:
    if config.container == "tensorflow":
        return {"imageUri": PREBUILT_TF_IMAGE}
    if not config.serving_image:
        raise VertexError(
            "the kit's serving container needs its image: --serving-image or the serving_image setting "
            "(build it from pipeline/cloud/serve/Dockerfile, see docs/SERVING.md), or use --container tensorflow"
        )
    # The image's CMD serves $AIP_STORAGE_URI, Vertex AI's copy of artifactUri, on $AIP_HTTP_PORT.
    return {
        "imageUri": config.serving_image,
        "ports": [{"containerPort": 8080}],
        "predictRoute": "/v1/models/mnist:predict",
        "healthRoute": "/health",
    }


def upload_model(api: VertexApi, config: DeployConfig, project: str, progress: Callable[[str], None]) -> str:
    """Upload the export to the Model Registry; its resource name `projects/…/models/ID`."""
    body = {
        "model": {
            "displayName": config.display_name,
            "artifactUri": config.artifact_uri,
            "containerSpec": _container_spec(config),
            "labels": {"app": "mnistkit"},
        }
    }
    operation = api.call("POST", f"projects/{project}/locations/{api.location}/models:upload", body)
    response = api.wait(operation, "model upload", progress)
    return response.get("model", f"projects/{project}/locations/{api.location}/models/{DRY_RUN_ID}")


def deploy_model(api: VertexApi, config: DeployConfig, model: str, progress: Callable[[str], None]) -> str:
    """Deploy `model` to the endpoint with all the traffic; the deployed model's id."""
    machine: dict[str, Any] = {"machineType": config.machine_type}
    if config.accelerator_type:
        machine |= {"acceleratorType": config.accelerator_type, "acceleratorCount": config.accelerator_count or 1}
    deployed: dict[str, Any] = {
        "model": model,
        "displayName": config.display_name,
        "dedicatedResources": {
            "machineSpec": machine,
            "minReplicaCount": config.min_replicas,
            "maxReplicaCount": config.max_replicas,
        },
    }
    if config.service_account:
        deployed["serviceAccount"] = config.service_account
    name = endpoint_name(config.endpoint)
    operation = api.call("POST", f"{name}:deployModel", {"deployedModel": deployed, "trafficSplit": {"0": 100}})
    response = api.wait(operation, "deploy", progress)
    return response.get("deployedModel", {}).get("id", DRY_RUN_ID)


def undeploy_models(
    api: VertexApi, endpoint: str, progress: Callable[[str], None], deployed_model_id: str | None = None
) -> list[str]:
    """Undeploy one deployed model, or every one on the endpoint; the ids undeployed."""
    name = endpoint_name(endpoint)
    if deployed_model_id:
        ids = [deployed_model_id]
    else:
        ids = [d["id"] for d in api.call("GET", name).get("deployedModels", [])]
    for deployed in ids:
        operation = api.call("POST", f"{name}:undeployModel", {"deployedModelId": deployed})
        api.wait(operation, f"undeploy {deployed}", progress)
    return ids


def online_predict(
    api: VertexApi, endpoint: str, keys: np.ndarray, images: np.ndarray
) -> tuple[np.ndarray, np.ndarray, str]:
    """(probabilities, classes, deployed model id) of one online prediction request to the endpoint."""
    body = encode_instances([instance_bytes(k, image) for k, image in zip(keys.tolist(), images, strict=True)])
    answer = api.call("POST", f"{endpoint_name(endpoint)}:predict", json.loads(body))
    if api.dry_run:
        return np.zeros((0, 10), np.float32), np.zeros(0, np.int64), DRY_RUN_ID
    probabilities, classes = parse_predictions(json.dumps(answer).encode(), keys)
    return probabilities, classes, str(answer.get("deployedModelId", ""))


@dataclass(frozen=True)
class BatchJob:
    """A finished (or, in a dry run, described) batch prediction job."""

    name: str
    state: str
    output: str
    detail: dict[str, Any]


def run_batch_prediction(
    api: VertexApi,
    *,
    project: str,
    model: str,
    input_uri: str,
    output_uri: str,
    machine_type: str = "n1-standard-4",
    max_replicas: int = 4,
    display_name: str = "mnistkit-batch-predict",
    progress: Callable[[str], None],
) -> BatchJob:
    """Submit a BatchPredictionJob (bq:// or gs:// JSON lines in and out) and follow it to its end.

    Raises VertexError when the job ends in any state but SUCCEEDED.
    """
    body = {
        "displayName": display_name,
        "model": model,
        "inputConfig": _io_config(input_uri, "input"),
        "outputConfig": _io_config(output_uri, "output"),
        "dedicatedResources": {
            "machineSpec": {"machineType": machine_type},
            "startingReplicaCount": 1,
            "maxReplicaCount": max_replicas,
        },
        "labels": {"app": "mnistkit"},
    }
    job = api.call("POST", f"projects/{project}/locations/{api.location}/batchPredictionJobs", body)
    if api.dry_run:
        return BatchJob(DRY_RUN_ID, "DRY_RUN", output_uri, {})
    started = time.monotonic()
    state = job.get("state", "")
    while state not in _DONE_STATES:
        progress(f"[{time.monotonic() - started:6.0f} s] {job['name']}: {state}")
        time.sleep(api.poll_seconds)
        job = api.call("GET", job["name"])
        state = job.get("state", "")
    progress(f"[{time.monotonic() - started:6.0f} s] {job['name']}: {state}")
    info = job.get("outputInfo", {})
    output = info.get("bigqueryOutputTable") or info.get("bigqueryOutputDataset") or info.get("gcsOutputDirectory", "")
    if state != "JOB_STATE_SUCCEEDED":
        raise VertexError(f"batch prediction job {job['name']} ended {state}: {json.dumps(job.get('error', {}))}")
    return BatchJob(job["name"], state, output, job)


def _io_config(uri: str, direction: str) -> dict[str, Any]:
    if uri.startswith("bq://"):
        if direction == "input":
            return {"instancesFormat": "bigquery", "bigquerySource": {"inputUri": uri}}
        return {"predictionsFormat": "bigquery", "bigqueryDestination": {"outputUri": uri}}
    if uri.startswith("gs://"):
        if direction == "input":
            return {"instancesFormat": "jsonl", "gcsSource": {"uris": [uri]}}
        return {"predictionsFormat": "jsonl", "gcsDestination": {"outputUriPrefix": uri}}
    raise VertexError(f"--{direction} {uri}: expected bq://project.dataset[.table] or gs://…")
