"""Names and fake Terraform outputs shared by the cloud tests and their fixtures."""

from __future__ import annotations

import json

from emulators import DATASET, PROJECT

REGION = "us-central1"
MODEL_BUCKET = f"{PROJECT}-mnistkit-models"
DATA_BUCKET = f"{PROJECT}-mnistkit-data"
DATAFLOW_BUCKET = f"{PROJECT}-mnistkit-dataflow"
WORKER_IMAGE = f"{REGION}-docker.pkg.dev/{PROJECT}/mnistkit/mnistkit-worker:v1"
SUBNETWORK = f"https://www.googleapis.com/compute/v1/projects/{PROJECT}/regions/{REGION}/subnetworks/mnistkit-{REGION}"
WORKER_SA = f"mnistkit-worker@{PROJECT}.iam.gserviceaccount.com"
CLOUDBUILD_SA = f"mnistkit-cloudbuild@{PROJECT}.iam.gserviceaccount.com"
INPUT_LOCATION = f"gs://{DATA_BUCKET}/inputs"
OUTPUT_LOCATION = f"gs://{DATA_BUCKET}/outputs"
INPUT_SUBSCRIPTION = f"projects/{PROJECT}/subscriptions/mnistkit-input"
KMS_KEY = f"projects/{PROJECT}/locations/{REGION}/keyRings/mnistkit/cryptoKeys/data"


def terraform_outputs(**overrides) -> dict:
    """The outputs of infra/ as a deployed CPU-only kit in the test project would report them."""
    outputs = {
        "project_id": PROJECT,
        "region": REGION,
        "model_bucket": f"gs://{MODEL_BUCKET}",
        "data_bucket": f"gs://{DATA_BUCKET}",
        "input_location": INPUT_LOCATION,
        "output_location": OUTPUT_LOCATION,
        "temp_location": f"gs://{DATAFLOW_BUCKET}/tmp",
        "staging_location": f"gs://{DATAFLOW_BUCKET}/staging",
        "bigquery_dataset": f"{PROJECT}.{DATASET}",
        "input_table": f"{PROJECT}.{DATASET}.images",
        "input_bytes_table": f"{PROJECT}.{DATASET}.images_bytes",
        "predictions_table": f"{PROJECT}.{DATASET}.predictions",
        "stream_predictions_table": f"{PROJECT}.{DATASET}.stream_predictions",
        "pubsub_input_topic": f"projects/{PROJECT}/topics/mnistkit-input",
        "pubsub_input_subscription": INPUT_SUBSCRIPTION,
        "pubsub_dead_letter_topic": f"projects/{PROJECT}/topics/mnistkit-input-dead-letter",
        "pubsub_dead_letter_subscription": f"projects/{PROJECT}/subscriptions/mnistkit-input-dead-letter",
        "bigquery_read_method": "DIRECT_READ",
        "worker_service_account": WORKER_SA,
        "training_service_account": f"mnistkit-training@{PROJECT}.iam.gserviceaccount.com",
        "cloudbuild_service_account": CLOUDBUILD_SA,
        "build_source_location": f"gs://{DATAFLOW_BUCKET}/cloudbuild",
        "dataflow_kms_key": None,
        "network": f"https://www.googleapis.com/compute/v1/projects/{PROJECT}/global/networks/mnistkit",
        "network_name": "mnistkit",
        "subnetwork": SUBNETWORK,
        "use_public_ips": False,
        "artifact_registry_repo": f"{REGION}-docker.pkg.dev/{PROJECT}/mnistkit",
        "worker_image": WORKER_IMAGE,
        "serving_image": f"{REGION}-docker.pkg.dev/{PROJECT}/mnistkit/mnistkit-serve:v1",
        "vertex_endpoint": f"projects/{PROJECT}/locations/{REGION}/endpoints/956559791",
        "serving_service_account": f"mnistkit-serving@{PROJECT}.iam.gserviceaccount.com",
        "worker_machine_type": None,
        "max_workers": 4,
        "gpu": None,
        "gpu_quota": {"required": 0, "limits": {}, "quotas": {}},
    }
    outputs.update(overrides)
    return outputs


def answer_json(handler, status: int, body: dict) -> None:
    """Answer a BaseHTTPRequestHandler's request with `body` as JSON, the way Google's APIs do."""
    payload = json.dumps(body).encode()
    handler.send_response(status)
    handler.send_header("Content-Type", "application/json; charset=UTF-8")
    handler.send_header("Content-Length", str(len(payload)))
    handler.end_headers()
    handler.wfile.write(payload)
