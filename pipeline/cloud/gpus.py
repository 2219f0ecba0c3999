"""The Dataflow GPUs the kit knows: their quota metrics, machine families and default shapes.

Mirrors the catalogue in infra/modules/gpu_placement (tests/cloud compares the two). Both the
launcher (worker options) and the doctor (quota gate) read it, so it sits below both.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mnistkit.pipeline.cloud.config import CloudConfig, ConfigError

__all__ = ["GPU_ALIASES", "GPU_TYPES", "GpuSpec", "GpuType", "configured_gpu", "gpu_machine_type", "parse_gpu"]


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
