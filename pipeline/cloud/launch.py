"""Every run that leaves this machine: Dataflow launches of the batch and streaming pipelines
(options from the config, GPU workers, the code wheel workers install, the quota gate), and the
cloud settings a local run needs when it reads or writes BigQuery.

Every launch passes the launch guards first (`launch_refusals`): it runs as the kit's worker
service account in the kit's subnetwork with private IPs, with the CMEK key when the deployment
has one, writing only where the worker may write. Without them Dataflow would silently fall back
to the Compute Engine default service account on the project's default network.

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
    "LaunchRefused",
    "build_code_wheel",
    "code_wheel_name",
    "console_url",
    "dataflow_args",
    "default_errors_output",
    "default_job_name",
    "dry_run_location",
    "follow_job",
    "launch_predict",
    "launch_refusals",
    "launch_stream",
    "local_predict_config",
    "require_safe_launch",
    "stream_input",
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


class LaunchRefused(ConfigError):
    """A Dataflow launch that would run with more access or exposure than the deployment allows."""


_REFRESH = "(make deploy, then mnistkit config refresh)"
_NO_SERVICE_ACCOUNT = (
    "Dataflow launch refused: no worker service account. Set worker_service_account from the Terraform "
    f"output worker_service_account {_REFRESH}; without it Dataflow runs as the Compute Engine default "
    "service account."
)
_NO_SUBNETWORK = (
    f"Dataflow launch refused: no subnetwork. Set subnetwork from the Terraform output subnetwork {_REFRESH}; "
    "without it workers start on the project's default network."
)
_PUBLIC_IPS = (
    "Dataflow launch refused: public worker IPs requested. The Terraform output use_public_ips is false: "
    "workers reach Google APIs privately and the network allows no other egress; remove the use_public_ips "
    "override."
)
_NO_KMS_KEY = (
    "Dataflow launch refused: the kit encrypts with CMEK but no Dataflow key is set. Set dataflow_kms_key "
    "from the Terraform output dataflow_kms_key."
)


def launch_refusals(config: CloudConfig) -> list[str]:
    """Why a Dataflow job of `config` must not start (empty when it may), one message per reason.

    The deployment uses CMEK when its Terraform outputs name a Dataflow key; a key set to none on
    top of that is refused rather than launching a job whose state Google's keys encrypt.
    """
    refusals = []
    if not config.worker_service_account:
        refusals.append(_NO_SERVICE_ACCOUNT)
    if not config.subnetwork:
        refusals.append(_NO_SUBNETWORK)
    if config.use_public_ips:
        refusals.append(f"{_PUBLIC_IPS} (given by {config.sources.get('use_public_ips', 'a setting')})")
    if config.deployed.get("dataflow_kms_key") and not config.dataflow_kms_key:
        refusals.append(_NO_KMS_KEY)
    return refusals


def require_safe_launch(config: CloudConfig) -> None:
    """Raise LaunchRefused with every reason of launch_refusals, so one try lists all there is to fix."""
    refusals = launch_refusals(config)
    if refusals:
        raise LaunchRefused("\n".join(refusals))


def dataflow_args(
    config: CloudConfig,
    *,
    job_name: str,
    code_wheel: str | None = None,
    template_location: str | None = None,
) -> list[str]:
    """Beam arguments for a Dataflow job of `config` (GPUs from `config.gpu`); refuses unsafe launches."""
    config.require("project_id", "region", "temp_location", "staging_location", "worker_image")
    require_safe_launch(config)
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
        f"--service_account_email={config.worker_service_account}",
        f"--subnetwork={config.subnetwork}",
        "--no_use_public_ips",
    ]
    args += [f"--labels={k}={v}" for k, v in config.label_dict().items()]
    optional = {
        "dataflow_kms_key": config.dataflow_kms_key,
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

    # Refused before the quota lookup and the wheel: neither is worth doing for a job that cannot start.
    require_safe_launch(runner.config)
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


def default_errors_output(output: str, errors_output: str | None, runner: DataflowRunnerConfig) -> str | None:
    """Where a Dataflow run's dead letters (and a batch run's summary) go when the user named no place.

    A file output keeps them beside the predictions; a table output has no such place, so they go
    to `OUTPUT_LOCATION/runs/JOB_NAME`, under the one data-bucket prefix the worker may write.
    """
    from mnistkit.pipeline.io.bigquery import is_bigquery

    if errors_output is not None or not is_bigquery(output):
        return errors_output
    runner.config.require("output_location")
    return f"{runner.config.output_location.rstrip('/')}/runs/{runner.job_name}"


def _require_writable(config: CloudConfig, **locations: str | None) -> None:
    """Refuse gs:// outputs in the data bucket outside output_location: the workers could not write them.

    The job would start, read everything and fail on its first write; other buckets are the
    user's to grant and are left alone.
    """
    if not (config.data_bucket and config.output_location):
        return
    bucket = config.data_bucket.rstrip("/") + "/"
    allowed = config.output_location.rstrip("/") + "/"
    for flag, uri in locations.items():
        if uri and uri.startswith(bucket) and not (uri.rstrip("/") + "/").startswith(allowed):
            raise LaunchRefused(
                f"Dataflow launch refused: --{flag.replace('_', '-')} {uri} is in the data bucket outside "
                f"{allowed} (the Terraform output output_location), the only place there the workers "
                f"may write; use e.g. {allowed}{uri[len(bucket) :]}"
            )


def launch_predict(config: PredictConfig, runner: DataflowRunnerConfig, http: Any | None = None) -> Launch:
    """Start the batch predict pipeline of `config` on Dataflow with `runner`."""
    from mnistkit.pipeline.batch import start_predict

    config = replace(
        config,
        errors_output=default_errors_output(config.output, config.errors_output, runner),
        bigquery_read_method=runner.config.bigquery_read_method,
    )
    _require_writable(runner.config, output=config.output, errors_output=config.errors_output)
    with _with_code_wheel(runner, http) as staged:
        run = start_predict(replace(config, runner=staged))
    return _launch(runner, run)


def launch_stream(config: StreamConfig, runner: DataflowRunnerConfig, http: Any | None = None) -> Launch:
    """Start the streaming pipeline of `config` on Dataflow with `runner` (it runs until drained).

    An empty `config.input` reads the kit's subscription (stream_input).
    """
    from mnistkit.pipeline.streaming.pipeline import start_stream

    config = replace(
        config,
        input=stream_input(config.input, runner.config),
        errors_output=default_errors_output(config.output, config.errors_output, runner),
    )
    _require_writable(runner.config, output=config.output, errors_output=config.errors_output)
    with _with_code_wheel(runner, http) as staged:
        run = start_stream(replace(config, runner=staged))
    return _launch(runner, run)


def stream_input(uri: str | None, config: CloudConfig) -> str:
    """The input of a Dataflow stream: `uri`, or the kit's subscription; a topic is refused.

    Reading a topic makes Dataflow create a subscription of its own, which needs Pub/Sub rights
    on the project that the worker service account does not have (it may pull the kit's one
    subscription only): the job would start and then fail.
    """
    from mnistkit.pipeline.io.streams import PUBSUB, parse_input

    if not uri:
        config.require("pubsub_input_subscription")
        return PUBSUB + config.pubsub_input_subscription
    if parse_input(uri).kind == "topic":
        subscription = config.pubsub_input_subscription or "projects/PROJECT/subscriptions/NAME"
        raise LaunchRefused(
            f"Dataflow launch refused: {uri} is a topic. Dataflow would create its own subscription to it, "
            "which needs project-wide Pub/Sub rights the worker service account does not have; read the "
            "kit's subscription (Terraform output pubsub_input_subscription) instead: "
            f"--input {PUBSUB}{subscription}"
        )
    return uri


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
