"""Pipeline options for every runner, built in one place.

Locally the kit pins Beam's FnApiRunner by its fully-qualified name. The plain DirectRunner
would try Prism first, which downloads a binary from GitHub at run time: offline that fails
(or hangs) before falling back. FnApiRunner runs bundles on `direct_num_workers` workers;
`multi_processing` gives each its own process, so parsing and inference use every core.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

from apache_beam.options.pipeline_options import PipelineOptions

from pipeline.choices import RUNNERS, RUNNING_MODES

FN_API_RUNNER = "apache_beam.runners.portability.fn_api_runner.FnApiRunner"


def available_cores() -> int:
    """Cores this process may run on (the affinity mask, which containers and taskset narrow)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


@dataclass(frozen=True)
class RunnerConfig:
    """Where and how wide a pipeline runs; `workers` 0 means one per core."""

    runner: str = "direct"
    workers: int = 0
    running_mode: str = "multi_processing"
    extra_args: Sequence[str] = ()

    @property
    def worker_count(self) -> int:
        return 1 if self.running_mode == "in_memory" else self.workers or available_cores()

    @property
    def tf_intra_op_threads(self) -> int:
        """TensorFlow threads per worker process: the cores divided among the processes.

        Worker threads of one process share TensorFlow's pools, so only separate processes need
        their pools narrowed; 0 keeps TensorFlow's default.
        """
        if self.running_mode != "multi_processing":
            return 0
        return max(1, available_cores() // self.worker_count)

    def pipeline_options(self) -> PipelineOptions:
        if self.runner not in RUNNERS:
            raise ValueError(f"unknown runner {self.runner!r}; choose one of {', '.join(RUNNERS)}")
        if self.running_mode not in RUNNING_MODES:
            raise ValueError(f"unknown running mode {self.running_mode!r}")
        return PipelineOptions(
            [
                f"--runner={FN_API_RUNNER}",
                f"--direct_running_mode={self.running_mode}",
                f"--direct_num_workers={self.worker_count}",
                *self.extra_args,
            ]
        )
