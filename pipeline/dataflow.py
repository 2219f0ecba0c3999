"""Dataflow launches: pipeline options from the config, GPU workers, and the code wheel workers install.

Workers have no public IPs (Private Google Access only), so they cannot reach PyPI: every
dependency comes with the worker image (pipeline/worker/Dockerfile), and the kit's own code comes
with each job as a dependency-free wheel staged through `--extra_package`. Beam's boot installs
extra packages before the SDK harness starts, so the job always runs the launcher's code, even
with an image built from an older checkout.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import importlib.metadata
import io
import logging
import re
import tempfile
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.config import CloudConfig, ConfigError

if TYPE_CHECKING:
    from apache_beam.options.pipeline_options import PipelineOptions

    from pipeline.batch import PredictConfig, StartedRun

_LOGGER = logging.getLogger(__name__)

DIST_NAME = "mnist_dataflow_kit"
# The packages workers import: the pipeline and what it imports from model_export (no CLI).
CODE_PACKAGES = ("pipeline", "model_export")
# SDK processes per CPU worker VM: Dataflow runs one per vCPU, and most shapes here have 4.
_PROCESSES_PER_CPU_WORKER = 4


@dataclass(frozen=True)
class GpuType:
    """One Dataflow GPU: its quota metric and the machine family it attaches to.

    Mirrors the catalog in infra/modules/gpu_placement (tests/cloud compares the two).
    """

    name: str
    quota_metric: str
    family: str
    # GPU count → smallest machine type carrying it; for bundled families (G2, A2) the machine
    # type fixes the count, so `extra_machines` lists the other shapes and their counts.
    defaults: dict[int, str]
    bundled: bool
    extra_machines: dict[str, int] = field(default_factory=dict)

    def machine_count(self, machine_type: str) -> int | None:
        """GPUs a bundled machine type carries (None if it is not one of this GPU's shapes)."""
        by_machine = {m: n for n, m in self.defaults.items()} | self.extra_machines
        return by_machine.get(machine_type)


GPU_TYPES = {
    gpu.name: gpu
    for gpu in (
        GpuType(
            "nvidia-tesla-t4", "NVIDIA_T4_GPUS", "n1-",
            {1: "n1-standard-4", 2: "n1-standard-8", 4: "n1-standard-16"}, bundled=False,
        ),
        GpuType(
            "nvidia-l4", "NVIDIA_L4_GPUS", "g2-",
            {1: "g2-standard-4", 2: "g2-standard-24", 4: "g2-standard-48", 8: "g2-standard-96"}, bundled=True,
            extra_machines={"g2-standard-8": 1, "g2-standard-12": 1, "g2-standard-16": 1, "g2-standard-32": 1},
        ),
        GpuType(
            "nvidia-tesla-a100", "NVIDIA_A100_GPUS", "a2-",
            {1: "a2-highgpu-1g", 2: "a2-highgpu-2g", 4: "a2-highgpu-4g", 8: "a2-highgpu-8g", 16: "a2-megagpu-16g"},
            bundled=True,
        ),
        GpuType(
            "nvidia-a100-80gb", "NVIDIA_A100_80GB_GPUS", "a2-",
            {1: "a2-ultragpu-1g", 2: "a2-ultragpu-2g", 4: "a2-ultragpu-4g", 8: "a2-ultragpu-8g"}, bundled=True,
        ),
    )
}  # fmt: skip
GPU_ALIASES = {
    "t4": "nvidia-tesla-t4",
    "l4": "nvidia-l4",
    "a100": "nvidia-tesla-a100",
    "a100-80gb": "nvidia-a100-80gb",
}


@dataclass(frozen=True)
class GpuSpec:
    """GPUs per worker, e.g. GpuSpec(GPU_TYPES["nvidia-tesla-t4"], 1)."""

    type: GpuType
    count: int

    @property
    def service_option(self) -> str:
        """The `--dataflow_service_options` value that attaches the GPUs and installs the driver."""
        return f"worker_accelerator=type:{self.type.name};count:{self.count};install-nvidia-driver"

    def __str__(self) -> str:
        return f"{self.type.name}:{self.count}"


def parse_gpu(text: str) -> GpuSpec:
    """`t4:1`, `l4`, `nvidia-tesla-a100:2` → GpuSpec; raises ConfigError naming the choices."""
    name, _, count_text = text.strip().lower().partition(":")
    gpu = GPU_TYPES.get(GPU_ALIASES.get(name, name))
    if gpu is None:
        choices = ", ".join([*GPU_ALIASES, *GPU_TYPES])
        raise ConfigError(f"unknown GPU type {name!r}; choose one of {choices}")
    if count_text and not count_text.isdigit():
        raise ConfigError(f"GPU count must be a whole number, got {count_text!r} in {text!r}")
    count = int(count_text or 1)
    if count not in gpu.defaults:
        offered = ", ".join(map(str, sorted(gpu.defaults)))
        raise ConfigError(f"{gpu.name} comes {offered} per worker, not {count}")
    return GpuSpec(gpu, count)


def gpu_machine_type(gpu: GpuSpec, machine_type: str | None, from_user: bool) -> str:
    """The worker machine type for `gpu`: `machine_type` if it fits, else the GPU's default shape.

    A misfit that the user asked for is an error; one inherited from Terraform (deployed for
    another GPU) is replaced, so `--gpu l4:1` works on infra deployed for T4s.
    """
    if machine_type:
        fits = machine_type.startswith(gpu.type.family) and (
            not gpu.type.bundled or gpu.type.machine_count(machine_type) == gpu.count
        )
        if fits:
            return machine_type
        if from_user:
            shapes = ", ".join(f"{m} ({n})" for n, m in sorted(gpu.type.defaults.items()))
            raise ConfigError(
                f"machine type {machine_type} does not carry {gpu}: {gpu.type.name} needs "
                f"{gpu.type.family}* machines, e.g. {shapes}"
            )
    return gpu.type.defaults[gpu.count]


def configured_gpu(config: CloudConfig) -> GpuSpec | None:
    return parse_gpu(config.gpu) if config.gpu else None


def default_job_name(prefix: str = "mnistkit-predict") -> str:
    return f"{prefix}-{datetime.now(UTC):%Y%m%d-%H%M%S}"


_JOB_NAME = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")


@dataclass(frozen=True)
class DataflowRunnerConfig:
    """Runs a pipeline on Dataflow; a drop-in for options.RunnerConfig in PredictConfig.

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

    def pipeline_args(self) -> list[str]:
        return dataflow_args(
            self.config,
            job_name=self.job_name,
            code_wheel=self.code_wheel,
            template_location=self.template_location,
        )

    def pipeline_options(self) -> PipelineOptions:
        from apache_beam.options.pipeline_options import PipelineOptions

        return PipelineOptions(self.pipeline_args())


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
        root = Path(__import__(package).__file__).parent
        for path in sorted(root.rglob("*.py")):
            files[path.relative_to(root.parent).as_posix()] = path.read_bytes()
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
    wheel = out_dir / f"{DIST_NAME}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in files.items():
            # A fixed timestamp makes the wheel a pure function of the code.
            archive.writestr(zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0)), data)
    return wheel


@dataclass(frozen=True)
class Launch:
    """A predict job handed to Dataflow (`job_id`), or built and staged only (`template_location`)."""

    job_name: str
    job_id: str | None
    console_url: str | None
    template_location: str | None
    run: StartedRun

    @property
    def submitted(self) -> bool:
        return self.job_id is not None


def launch_predict(config: PredictConfig, http: Any | None = None) -> Launch:
    """Start a batch predict pipeline (batch.PredictConfig with a DataflowRunnerConfig) on Dataflow.

    GPU launches pass the quota gate first. The code wheel is built into a temp dir that only has
    to outlive staging, which happens inside `start_predict`.
    """
    from pipeline.batch import start_predict
    from pipeline.doctor import require_gpu_quota

    runner: DataflowRunnerConfig = config.runner
    require_gpu_quota(runner.config, http)
    with tempfile.TemporaryDirectory(prefix="mnistkit-code-") as tmp:
        wheel = build_code_wheel(Path(tmp))
        run = start_predict(replace(config, runner=replace(runner, code_wheel=str(wheel))))
    job_id = run.result.job_id() if run.result.has_job else None
    cloud = runner.config
    return Launch(
        job_name=runner.job_name,
        job_id=job_id,
        console_url=console_url(cloud.project_id, cloud.region, job_id) if job_id else None,
        template_location=runner.template_location,
        run=run,
    )


def dry_run_location(config: CloudConfig, job_name: str) -> str:
    """Where a dry run writes the job description: beside the job's temp files."""
    config.require("temp_location")
    return f"{config.temp_location.rstrip('/')}/dry-runs/{job_name}.json"
