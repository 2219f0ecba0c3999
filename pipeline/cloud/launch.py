"""Every run that leaves this machine: Dataflow launches of the batch and streaming pipelines
(options from the config, GPU workers, the code wheel workers install, the quota gate), and the
cloud settings a local run needs when it reads or writes BigQuery.

Workers have no public IPs (Private Google Access only), so they cannot reach PyPI: every
dependency comes with the worker image (pipeline/cloud/worker/Dockerfile), and the kit's own code comes
with each job as a dependency-free wheel staged through `--extra_package`. Beam's boot installs
extra packages before the SDK harness starts, so the job always runs the launcher's code, even
with an image built from an older checkout.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import importlib
import importlib.metadata
import io
import logging
import re
import tempfile
import time
import zipfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mnistkit.pipeline.cloud.config import CloudConfig, ConfigError
from mnistkit.pipeline.cloud.gpus import configured_gpu, gpu_machine_type

if TYPE_CHECKING:
    from apache_beam.options.pipeline_options import PipelineOptions

    from mnistkit.pipeline.batch import PredictConfig
    from mnistkit.pipeline.streaming.pipeline import StreamConfig

__all__ = [
    "DataflowRunnerConfig",
    "JobStatus",
    "Launch",
    "build_code_wheel",
    "code_wheel_name",
    "console_url",
    "dataflow_args",
    "default_errors_output",
    "default_job_name",
    "dry_run_location",
    "follow_job",
    "launch_predict",
    "launch_stream",
    "local_predict_config",
]

_LOGGER = logging.getLogger(__name__)

DIST_NAME = "mnist_dataflow_kit"
# The packages workers import: the pipeline and what it imports from model_export (no CLI).
CODE_PACKAGES = ("mnistkit.pipeline", "mnistkit.model_export")
# SDK processes per CPU worker VM: Dataflow runs one per vCPU, and most shapes here have 4.
_PROCESSES_PER_CPU_WORKER = 4


def default_job_name(prefix: str = "mnistkit-predict") -> str:
    return f"{prefix}-{datetime.now(UTC):%Y%m%d-%H%M%S}"


_JOB_NAME = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")


@dataclass(frozen=True)
class DataflowRunnerConfig:
    """Runs a pipeline on Dataflow: the runners.Runner of Dataflow launches (batch and stream).

    `template_location` builds and stages the job and writes its description there instead of
    submitting it (a dry run that exercises everything but the Dataflow API).
    """

    config: CloudConfig
    job_name: str = field(default_factory=default_job_name)
    code_wheel: str | None = None
    template_location: str | None = None

    @property
    def worker_count(self) -> int:
        """SDK processes of a full scale-out (what the batch pipeline sizes its input splits by)."""
        per_worker = 1 if self.config.gpu else _PROCESSES_PER_CPU_WORKER
        return self.config.max_workers * per_worker

    # A worker VM runs one SDK process per GPU or per vCPU; TensorFlow's defaults fit both.
    tf_intra_op_threads = 0
    tf_inter_op_threads = 0

    def flags(self, streaming: bool = False) -> list[str]:
        args = dataflow_args(
            self.config,
            job_name=self.job_name,
            code_wheel=self.code_wheel,
            template_location=self.template_location,
        )
        return [*args, "--streaming", "--enable_streaming_engine"] if streaming else args

    def pipeline_options(self) -> PipelineOptions:
        from apache_beam.options.pipeline_options import PipelineOptions

        return PipelineOptions(self.flags())


def dataflow_args(
    config: CloudConfig,
    *,
    job_name: str,
    code_wheel: str | None = None,
    template_location: str | None = None,
) -> list[str]:
    """Beam arguments for a Dataflow job of `config` (GPUs from `config.gpu`)."""
    config.require("project_id", "region", "temp_location", "staging_location", "worker_image")
    if not _JOB_NAME.match(job_name):
        raise ConfigError(f"job name {job_name!r}: use lowercase letters, digits and '-', starting with a letter")
    gpu = configured_gpu(config)
    machine_type = config.machine_type
    if gpu:
        from_user = config.sources.get("machine_type", "").startswith(("flag", "env", "config file"))
        machine_type = gpu_machine_type(gpu, machine_type, from_user)
    args = [
        "--runner=DataflowRunner",
        f"--project={config.project_id}",
        f"--region={config.region}",
        f"--temp_location={config.temp_location}",
        f"--staging_location={config.staging_location}",
        f"--job_name={job_name}",
        f"--max_num_workers={config.max_workers}",
        f"--autoscaling_algorithm={config.autoscaling_algorithm}",
        # The image carries Beam itself (matching the launcher's version, see the Dockerfile).
        f"--sdk_container_image={config.worker_image}",
        "--sdk_location=container",
        "--use_public_ips" if config.use_public_ips else "--no_use_public_ips",
    ]
    args += [f"--labels={k}={v}" for k, v in config.label_dict().items()]
    optional = {
        "service_account_email": config.worker_service_account,
        "subnetwork": config.subnetwork,
        "machine_type": machine_type,
        "num_workers": config.num_workers,
        "worker_zone": config.worker_zone,
        "extra_package": code_wheel,
        "template_location": template_location,
    }
    args += [f"--{name}={value}" for name, value in optional.items() if value is not None]
    if gpu:
        args += [
            f"--dataflow_service_options={gpu.service_option}",
            # Dataflow starts one SDK process per vCPU, each loading its own model onto the GPU;
            # one process per VM gives the GPU to one model shared by the harness threads.
            "--experiments=no_use_multiple_sdk_containers",
        ]
        if gpu.count > 1:
            _LOGGER.warning(
                "%s: the worker's one SDK process sees all %d GPUs and TensorFlow serves from the first; "
                "%s:1 with more workers uses every GPU you pay for",
                gpu,
                gpu.count,
                gpu.type.name,
            )
    return args


def console_url(project: str, region: str, job_id: str) -> str:
    return f"https://console.cloud.google.com/dataflow/jobs/{region}/{job_id}?project={project}"


def code_wheel_name() -> str:
    return f"{DIST_NAME}-{importlib.metadata.version('mnist-dataflow-kit')}-py3-none-any.whl"


def build_code_wheel(out_dir: Path, packages: Sequence[str] = CODE_PACKAGES) -> Path:
    """A pure-Python wheel of the kit's worker code, with no dependencies declared.

    Its dependencies are in the worker image; declaring them would make pip on the worker try to
    resolve them (tensorflow-cpu vs the image's CUDA build), which needs PyPI the workers cannot
    reach. Built with zipfile so no build backend (or network) is involved.
    """
    version = importlib.metadata.version("mnist-dataflow-kit")
    dist_info = f"{DIST_NAME}-{version}.dist-info"
    files: dict[str, bytes] = {}
    for package in packages:
        root = Path(importlib.import_module(package).__file__).parent
        # Archive names follow the import name (mnistkit/pipeline/...), not the checkout's folders.
        prefix = package.replace(".", "/")
        for path in sorted(root.rglob("*.py")):
            files[f"{prefix}/{path.relative_to(root).as_posix()}"] = path.read_bytes()
    files[f"{dist_info}/METADATA"] = (
        f"Metadata-Version: 2.1\nName: {DIST_NAME}\nVersion: {version}\n"
        "Summary: mnist-dataflow-kit worker code (dependencies come with the worker image)\n"
    ).encode()
    files[f"{dist_info}/WHEEL"] = b"Wheel-Version: 1.0\nGenerator: mnistkit\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    record = io.StringIO()
    writer = csv.writer(record, lineterminator="\n")
    for name, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        writer.writerow([name, f"sha256={digest}", len(data)])
    writer.writerow([f"{dist_info}/RECORD", "", ""])
    files[f"{dist_info}/RECORD"] = record.getvalue().encode()
    out_dir.mkdir(parents=True, exist_ok=True)
    wheel = out_dir / code_wheel_name()
    with zipfile.ZipFile(wheel, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in files.items():
            # A fixed timestamp makes the wheel a pure function of the code.
            archive.writestr(zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0)), data)
    return wheel


@dataclass(frozen=True)
class Launch:
    """A job handed to Dataflow (`job_id`), or built and staged only (`template_location`).

    `run` is what the pipeline's own start function returned (batch.StartedRun for predict,
    streaming.pipeline.StartedStream for a stream).
    """

    job_name: str
    job_id: str | None
    console_url: str | None
    template_location: str | None
    run: Any

    @property
    def submitted(self) -> bool:
        return self.job_id is not None


@contextmanager
def _with_code_wheel(runner: DataflowRunnerConfig, http: Any | None) -> Iterator[DataflowRunnerConfig]:
    """The runner with the kit's code wheel, after the GPU quota gate.

    The wheel lives in a temp dir that only has to outlive staging, which happens while the
    pipeline starts, inside the `with` block.
    """
    from mnistkit.pipeline.cloud.doctor import require_gpu_quota

    require_gpu_quota(runner.config, http)
    with tempfile.TemporaryDirectory(prefix="mnistkit-code-") as tmp:
        yield replace(runner, code_wheel=str(build_code_wheel(Path(tmp))))


def _launch(runner: DataflowRunnerConfig, run: Any) -> Launch:
    job_id = run.result.job_id() if run.result.has_job else None
    cloud = runner.config
    return Launch(
        job_name=runner.job_name,
        job_id=job_id,
        console_url=console_url(cloud.project_id, cloud.region, job_id) if job_id else None,
        template_location=runner.template_location,
        run=run,
    )


def default_errors_output(config: PredictConfig, runner: DataflowRunnerConfig) -> str | None:
    """Where a Dataflow predict run's dead letters and summary go when the user named no place.

    A file output keeps them beside the predictions; a table output has no such place, so they go
    to `gs://DATA_BUCKET/runs/JOB_NAME`.
    """
    from mnistkit.pipeline.io.bigquery import is_bigquery

    if config.errors_output is not None or not is_bigquery(config.output):
        return config.errors_output
    runner.config.require("data_bucket")
    return f"{runner.config.data_bucket.rstrip('/')}/runs/{runner.job_name}"


def launch_predict(config: PredictConfig, runner: DataflowRunnerConfig, http: Any | None = None) -> Launch:
    """Start the batch predict pipeline of `config` on Dataflow with `runner`."""
    from mnistkit.pipeline.batch import start_predict

    config = replace(
        config,
        errors_output=default_errors_output(config, runner),
        bigquery_read_method=runner.config.bigquery_read_method,
    )
    with _with_code_wheel(runner, http) as staged:
        run = start_predict(replace(config, runner=staged))
    return _launch(runner, run)


def launch_stream(config: StreamConfig, runner: DataflowRunnerConfig, http: Any | None = None) -> Launch:
    """Start the streaming pipeline of `config` on Dataflow with `runner` (it runs until drained)."""
    from mnistkit.pipeline.streaming.pipeline import start_stream

    with _with_code_wheel(runner, http) as staged:
        run = start_stream(replace(config, runner=staged))
    return _launch(runner, run)


@dataclass(frozen=True)
class JobStatus:
    """One look at a running job: its state and the kit's row counters so far."""

    state: str
    counters: dict[str, int]
    elapsed_s: float

    @property
    def done(self) -> bool:
        return self.state in _TERMINAL_STATES


_TERMINAL_STATES = {"DONE", "FAILED", "CANCELLED", "DRAINED", "UPDATED", "STOPPED"}


def follow_job(
    result: Any,
    on_status: Callable[[JobStatus], None],
    interval_s: float = 10.0,
    sleep: Callable[[float], None] = time.sleep,
) -> JobStatus:
    """Report a running job's state and counters every `interval_s` until it ends; the last status.

    Counters are the attempted values (committed ones exist only once a stage finishes), so the
    numbers shown while it runs may still move; the summary written after it uses committed ones.
    """
    from mnistkit.pipeline.accounting import query_counters

    started = time.monotonic()
    while True:
        state = str(getattr(result.state, "name", result.state)).removeprefix("JOB_STATE_")
        try:
            counters = query_counters(result, committed=False)
        except Exception:  # noqa: BLE001 - metrics are best effort while a job starts up
            counters = {}
        status = JobStatus(state, counters, time.monotonic() - started)
        on_status(status)
        if status.done:
            return status
        sleep(interval_s)


def local_predict_config(config: PredictConfig, cloud: CloudConfig) -> PredictConfig:
    """A local predict run that reads or writes BigQuery, with the cloud settings it needs.

    It gets the project, a gs:// temp location for batch loads, and the read method the
    deployment allows; a run that touches no table is returned as it is.
    """
    from mnistkit.pipeline.io.bigquery import is_bigquery

    if not (is_bigquery(config.input) or is_bigquery(config.output)):
        return config
    wanted = {"project": cloud.project_id, "temp_location": cloud.temp_location}
    args = [f"--{name}={value}" for name, value in wanted.items() if value]
    runner = replace(config.runner, extra_args=[*config.runner.extra_args, *args])
    return replace(config, runner=runner, bigquery_read_method=cloud.bigquery_read_method)


def dry_run_location(config: CloudConfig, job_name: str) -> str:
    """Where a dry run writes the job description: beside the job's temp files."""
    config.require("temp_location")
    return f"{config.temp_location.rstrip('/')}/dry-runs/{job_name}.json"
