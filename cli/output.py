"""What the commands print: one summary line for every run (predict, stream, a followed Dataflow
job), where the outputs went, a launched job, and live progress while a local run reads its input."""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, TextIO

import click

if TYPE_CHECKING:
    from mnistkit.pipeline.accounting import ProgressSnapshot, Summary
    from mnistkit.pipeline.cloud.launch import JobStatus, Launch

__all__ = [
    "echo_job_status",
    "echo_launch",
    "echo_outputs",
    "echo_predictions",
    "echo_request",
    "echo_summary",
    "format_progress",
    "live_progress",
]


def _rejected(rejected: Mapping[str, int]) -> str:
    return (": " + ", ".join(f"{reason} {n:,}" for reason, n in sorted(rejected.items()))) if rejected else ""


def echo_summary(summary: Summary) -> None:
    """`Predicted P of R rows in T s (X rows/s); rejected N: reason n, ...`."""
    click.echo(
        f"Predicted {summary.rows_predicted:,} of {summary.rows_read:,} rows in {summary.wall_time_s:.1f} s "
        f"({summary.rows_per_s:,.0f} rows/s); rejected {summary.rows_rejected:,}{_rejected(summary.rejected)}"
    )


def echo_outputs(outputs: Mapping[str, str]) -> None:
    """`Predictions: ...`, `Dead letters: ...`, `Summary: ...` lines, in the order given."""
    names = {"predictions": "Predictions", "errors": "Dead letters", "summary": "Summary"}
    for key, where in outputs.items():
        click.echo(f"{names.get(key, key.capitalize())}: {where}")


def echo_launch(launch: Launch, kind: str) -> None:
    """The job a Dataflow launch submitted, or where its dry run left the job description."""
    if launch.submitted:
        click.echo(f"Submitted Dataflow {kind} job {launch.job_name}: {launch.job_id}")
        click.echo(f"Console: {launch.console_url}")
    else:
        click.echo(f"Dry run: job {launch.job_name} built and staged, not submitted")
        click.echo(f"Job description: {launch.template_location}")


def echo_job_status(status: JobStatus) -> None:
    from mnistkit.pipeline.accounting import ROWS_PREDICTED, ROWS_READ

    counters = status.counters
    rejected = {k.removeprefix("rejected_"): v for k, v in counters.items() if k.startswith("rejected_")}
    click.echo(
        f"[{status.elapsed_s:6.0f} s] {status.state}: read {counters.get(ROWS_READ, 0):,}, "
        f"predicted {counters.get(ROWS_PREDICTED, 0):,}, rejected {sum(rejected.values()):,}"
    )


def echo_request(method: str, url: str, body: object) -> None:
    """A request a --dry-run would have sent: `POST URL` and its JSON body, long pixel lists elided."""
    import json

    def shorten(node: object) -> object:
        if isinstance(node, list) and len(node) > 8 and all(isinstance(v, int | float) for v in node):
            return [*node[:3], f"... {len(node)} values"]
        if isinstance(node, list):
            return [shorten(v) for v in node]
        if isinstance(node, dict):
            return {k: shorten(v) for k, v in node.items()}
        return node

    click.echo(f"{method} {url}")
    if body is not None:
        click.echo(json.dumps(shorten(body), indent=2))


def echo_predictions(keys: object, probabilities: object, classes: object) -> None:
    """One `key K: class C (P %)` line per row."""
    for key, probs, cls in zip(keys, probabilities, classes, strict=True):
        click.echo(f"key {key}: class {cls} ({100 * probs[cls]:.1f} %)")


def _duration(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes // 60}:{minutes % 60:02d}:{secs:02d}"


def format_progress(snapshot: ProgressSnapshot) -> str:
    """`12,288 rows · 5.6 of 47.0 MB (12%) · 8,100 rows/s · ETA 0:00:05`."""
    parts = [f"{snapshot.rows:,} rows"]
    if snapshot.total_bytes:
        parts.append(f"{snapshot.bytes / 1e6:,.1f} of {snapshot.total_bytes / 1e6:,.1f} MB ({snapshot.fraction:.0%})")
    parts.append(f"{snapshot.rows_per_s:,.0f} rows/s")
    if snapshot.eta_s is not None:
        parts.append(f"ETA {_duration(snapshot.eta_s)}")
    return " · ".join(parts)


@contextmanager
def live_progress(stream: TextIO | None = None, interval_s: float | None = None) -> Iterator[None]:
    """While the block runs, show how far the input has been read (pipeline.accounting.progress).

    On a terminal one line is rewritten in place a few times a second; elsewhere (logs, CI) a
    plain line is printed every few seconds, so a long run is never silent.
    """
    from mnistkit.pipeline.accounting import progress

    stream = stream or sys.stderr
    tty = stream.isatty()
    interval_s = interval_s or (0.5 if tty else 5.0)
    done = threading.Event()

    def show() -> None:
        while not done.wait(interval_s):
            line = format_progress(progress())
            stream.write(f"\r\033[K{line}" if tty else line + "\n")
            stream.flush()
        if tty:
            stream.write("\r\033[K")
            stream.flush()

    thread = threading.Thread(target=show, name="mnistkit-progress", daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()
