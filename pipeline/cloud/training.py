"""`mnistkit train --vertex`: the distributed trainer as a Vertex AI CustomJob.

The job runs model_export/distributed.py unchanged: a chief pool of one replica and a worker pool
of the rest, each replica given its TF_CONFIG by Vertex AI. It runs in the kit's worker image
(TensorFlow and every dependency; the kit's code comes as the code wheel, staged with the job and
staged on the data bucket and installed from its /gcs/ mount at start), as the training service account, which reads
the data bucket and writes the model bucket. Training data, TensorBoard logs, backups and the
export all live on the buckets, read and written through Vertex AI's Cloud Storage FUSE mount
(`gs://B/P` is `/gcs/B/P` on the replicas), so nothing needs TensorFlow's own GCS support.
`restartJobOnWorkerRestart` restarts every replica when one is preempted, and they resume at
the epoch of the last backup.

REST as io/google_apis.py calls it (MNISTKIT_AIPLATFORM_ENDPOINT for another https address).
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mnistkit.model_export.distributed import worker_args
from mnistkit.model_export.train import TrainConfig
from mnistkit.pipeline.cloud.config import CloudConfig, ConfigError
from mnistkit.pipeline.io.google_apis import api_endpoint, call_json, session

__all__ = [
    "TERMINAL_STATES",
    "TrainingJob",
    "VertexJobError",
    "VertexTraining",
    "console_url",
    "custom_job_spec",
    "follow_custom_job",
    "fuse_path",
    "launch_training",
    "stage_code_wheel",
    "submit_custom_job",
    "wheel_uri",
]

TERMINAL_STATES = {"JOB_STATE_SUCCEEDED", "JOB_STATE_FAILED", "JOB_STATE_CANCELLED", "JOB_STATE_EXPIRED"}
_ENTRY = "mnistkit.model_export.distributed"


class VertexJobError(Exception):
    """Vertex AI refused the job or the job failed; the message carries its error."""


@dataclass(frozen=True)
class VertexTraining:
    """What the CustomJob runs on: `workers` replicas in all (one of them the chief)."""

    job_name: str
    workers: int = 1
    machine_type: str = "n1-standard-4"
    accelerator_type: str | None = None  # a Vertex AI AcceleratorType, e.g. NVIDIA_TESLA_T4
    accelerator_count: int = 0
    image: str | None = None  # default: the worker_image setting


@dataclass(frozen=True)
class TrainingJob:
    name: str  # projects/P/locations/R/customJobs/ID
    state: str
    console_url: str
    response: dict[str, Any]

    @property
    def job_id(self) -> str:
        return self.name.rsplit("/", 1)[-1]


def console_url(project: str, region: str, job_id: str) -> str:
    return f"https://console.cloud.google.com/vertex-ai/locations/{region}/training/{job_id}/cpu?project={project}"


def fuse_path(uri: str) -> str:
    """gs://BUCKET/PATH as the replicas see it through Cloud Storage FUSE."""
    if not uri.startswith("gs://"):
        raise ConfigError(f"Vertex AI jobs read and write buckets only; {uri} is not a gs:// URI.")
    return "/gcs/" + uri.removeprefix("gs://").rstrip("/")


def _job_paths(cloud: CloudConfig, job_name: str) -> dict[str, str]:
    model_bucket = cloud.model_bucket.rstrip("/")
    return {
        "output": f"{model_bucket}/training/{job_name}",
        "export": (cloud.model_uri or f"{model_bucket}/mnist").rstrip("/"),
        # Launchers may write the data bucket and the training account may read it.
        "wheel_dir": f"{cloud.data_bucket.rstrip('/')}/training/{job_name}/code",
    }


def wheel_uri(cloud: CloudConfig, job_name: str) -> str:
    """Where stage_code_wheel puts the job's code wheel (its name is fixed by the kit's version)."""
    from mnistkit.pipeline.cloud.launch import code_wheel_name

    return f"{_job_paths(cloud, job_name)['wheel_dir']}/{code_wheel_name()}"


def _check(cloud: CloudConfig, train: TrainConfig, vertex: VertexTraining) -> str:
    """The image to run; raises ConfigError on any setting the job cannot do without."""
    cloud.require("project_id", "model_bucket", "data_bucket", "training_service_account")
    image = vertex.image or cloud.worker_image
    if not image:
        raise ConfigError("not configured: worker_image (build it with `mnistkit image build`) or pass --image.")
    if not str(train.training_data or "").startswith("gs://"):
        raise ConfigError("--vertex needs --training-data gs://… (write it with `mnistkit convert --for-training`).")
    if train.batch_size % vertex.workers:
        raise ConfigError(f"--batch-size {train.batch_size} must divide by the {vertex.workers} workers.")
    return image


def custom_job_spec(cloud: CloudConfig, train: TrainConfig, vertex: VertexTraining) -> dict[str, Any]:
    """The CustomJob resource to POST: a chief pool and, with more than one worker, a worker pool."""
    image = _check(cloud, train, vertex)
    paths = _job_paths(cloud, vertex.job_name)
    mounted = TrainConfig(
        training_data=fuse_path(train.training_data),
        output_dir=Path(fuse_path(paths["output"])),
        export_dir=fuse_path(paths["export"]),
        epochs=train.epochs,
        batch_size=train.batch_size,
        learning_rate=train.learning_rate,
        seed=train.seed,
        progress_every=train.progress_every,
    )
    machine: dict[str, Any] = {"machineType": vertex.machine_type}
    if vertex.accelerator_type and vertex.accelerator_count:
        machine |= {"acceleratorType": vertex.accelerator_type, "acceleratorCount": vertex.accelerator_count}
    install = f'pip install --no-deps --quiet "{fuse_path(wheel_uri(cloud, vertex.job_name))}"'
    container = {
        "imageUri": image,
        # The image's entrypoint is Dataflow's boot program; the kit's code comes from the wheel.
        "command": [
            "sh",
            "-c",
            f'{install} && exec python -m {_ENTRY} "$@"',
            "mnistkit-train",
        ],
        "args": worker_args(mounted),
    }
    pool = {"machineSpec": machine, "diskSpec": {"bootDiskType": "pd-ssd", "bootDiskSizeGb": 100}}
    pools = [pool | {"replicaCount": "1", "containerSpec": container}]
    if vertex.workers > 1:
        pools.append(pool | {"replicaCount": str(vertex.workers - 1), "containerSpec": container})
    return {
        "displayName": vertex.job_name,
        "labels": cloud.label_dict(),
        "jobSpec": {
            "workerPoolSpecs": pools,
            "serviceAccount": cloud.training_service_account,
            "baseOutputDirectory": {"outputUriPrefix": paths["output"]},
            # A MultiWorkerMirroredStrategy cluster cannot go on without a lost replica.
            "scheduling": {"restartJobOnWorkerRestart": True},
        },
    }


def stage_code_wheel(cloud: CloudConfig, job_name: str) -> str:
    """Build the kit's code wheel and copy it to the staging bucket; its gs:// URI."""
    from apache_beam.io.filesystems import FileSystems

    from mnistkit.pipeline.cloud.launch import build_code_wheel

    cloud.require("data_bucket")
    uri = wheel_uri(cloud, job_name)
    with tempfile.TemporaryDirectory(prefix="mnistkit-code-") as tmp:
        wheel = build_code_wheel(Path(tmp))
        with FileSystems.create(uri) as out:
            out.write(wheel.read_bytes())
    return uri


def submit_custom_job(cloud: CloudConfig, spec: dict[str, Any], http: Any) -> TrainingJob:
    parent = f"projects/{cloud.project_id}/locations/{cloud.region}"
    body = call_json(
        http, "POST", f"{api_endpoint('aiplatform', cloud.region)}/{parent}/customJobs", VertexJobError, json=spec
    )
    name = body["name"]
    url = console_url(cloud.project_id, cloud.region, name.rsplit("/", 1)[-1])
    return TrainingJob(name, body.get("state", "JOB_STATE_QUEUED"), url, body)


def follow_custom_job(
    cloud: CloudConfig,
    job: TrainingJob,
    http: Any,
    on_state: Callable[[TrainingJob], None],
    interval_s: float = 30.0,
    sleep: Callable[[float], None] = time.sleep,
) -> TrainingJob:
    """Poll the job until it ends, reporting each change of state; raises if it did not succeed."""
    url = f"{api_endpoint('aiplatform', cloud.region)}/{job.name}"
    last = None
    while True:
        body = call_json(http, "GET", url, VertexJobError)
        job = TrainingJob(job.name, body.get("state", "JOB_STATE_UNSPECIFIED"), job.console_url, body)
        if job.state != last:
            on_state(job)
            last = job.state
        if job.state in TERMINAL_STATES:
            if job.state != "JOB_STATE_SUCCEEDED":
                error = body.get("error", {}).get("message", "no error message")
                raise VertexJobError(f"CustomJob {job.job_id} ended {job.state}: {error} (see {job.console_url})")
            return job
        sleep(interval_s)


def launch_training(
    cloud: CloudConfig,
    train: TrainConfig,
    vertex: VertexTraining,
    http: Any | None = None,
    wait: bool = True,
    on_state: Callable[[TrainingJob], None] = lambda job: None,
    interval_s: float = 30.0,
) -> TrainingJob:
    """Stage the code wheel, submit the CustomJob, and (with `wait`) follow it to its end."""
    spec = custom_job_spec(cloud, train, vertex)  # checks every setting before anything is staged
    stage_code_wheel(cloud, vertex.job_name)
    http = http or session()
    job = submit_custom_job(cloud, spec, http)
    on_state(job)
    return follow_custom_job(cloud, job, http, on_state, interval_s) if wait else job
