"""Where a pipeline runs: the contract every runner config meets, and the local runner's options.

Locally the kit pins Beam's FnApiRunner by its fully-qualified name. The plain DirectRunner
would try Prism first, which downloads a binary from GitHub at run time: offline that fails
(or hangs) before falling back. FnApiRunner runs bundles on `direct_num_workers` workers.

The default runs them as threads of one process (`multi_threading`): parsing (pyarrow) and the
model (TensorFlow) release the GIL, so threads use every core, while the process imports
TensorFlow and loads the model once. Worker processes (`multi_processing`) pay that start-up
(~4 s of CPU) once per core; on 2 cores and 100k rows that cost 20 % more CPU time
(docs/BENCHMARKS.md).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from apache_beam.options.pipeline_options import PipelineOptions

from mnistkit.pipeline.choices import RUNNING_MODES

__all__ = ["FN_API_RUNNER", "Runner", "RunnerConfig", "available_cores"]

FN_API_RUNNER = "apache_beam.runners.portability.fn_api_runner.FnApiRunner"


def available_cores() -> int:
    """Cores this process may run on (the affinity mask, which containers and taskset narrow)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


class Runner(Protocol):
    """What a pipeline asks of where it runs (RunnerConfig here, cloud.launch.DataflowRunnerConfig).

    `worker_count` is how many workers share the input (the batch pipeline cuts its files into
    ranges by it); the thread counts size TensorFlow's pools per worker (0 = TensorFlow's default).
    """

    @property
    def worker_count(self) -> int: ...

    @property
    def tf_intra_op_threads(self) -> int: ...

    @property
    def tf_inter_op_threads(self) -> int: ...

    def flags(self, streaming: bool = False) -> list[str]: ...

    def pipeline_options(self) -> PipelineOptions: ...


@dataclass(frozen=True)
class RunnerConfig:
    """The local runner: how many workers and how they run; `workers` 0 means one per core."""

    workers: int = 0
    running_mode: str = "multi_threading"
    extra_args: Sequence[str] = ()

    @property
    def worker_count(self) -> int:
        return 1 if self.running_mode == "in_memory" else self.workers or available_cores()

    @property
    def tf_intra_op_threads(self) -> int:
        """TensorFlow threads inside one op: the cores shared out among the workers.

        Each worker (process or thread) drives its own model calls, so more threads per op than
        that only oversubscribe the CPU; 0 (a single worker) keeps TensorFlow's default.
        """
        if self.worker_count == 1:
            return 0
        return max(1, available_cores() // self.worker_count)

    @property
    def tf_inter_op_threads(self) -> int:
        """TensorFlow threads running ops: one per worker thread of a process, so that concurrent
        model calls of `multi_threading` workers do not queue behind each other."""
        if self.worker_count == 1:
            return 0
        return self.worker_count if self.running_mode == "multi_threading" else 1

    def flags(self, streaming: bool = False) -> list[str]:
        """The command-line form of these options (what `pipeline_options` parses)."""
        if self.running_mode not in RUNNING_MODES:
            raise ValueError(f"unknown running mode {self.running_mode!r}")
        return [
            f"--runner={FN_API_RUNNER}",
            f"--direct_running_mode={self.running_mode}",
            f"--direct_num_workers={self.worker_count}",
            *(["--streaming"] if streaming else []),
            *self.extra_args,
        ]

    def pipeline_options(self) -> PipelineOptions:
        return PipelineOptions(self.flags())
