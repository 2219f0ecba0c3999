"""What a user sees: a quiet console by default (library notices only with -v), live progress of a
local run, and a Dataflow job followed until it ends."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from mnistkit.cli.output import echo_job_status, format_progress, live_progress
from mnistkit.pipeline import accounting
from mnistkit.pipeline.accounting import ProgressSnapshot
from mnistkit.pipeline.cloud.launch import follow_job

NOISE = ("Resource module is not available", "oneDNN custom operations", "absl::InitializeLog")


def _mnistkit(*args: str) -> subprocess.CompletedProcess:
    """The installed command in a fresh process, as a user runs it (library output reaches fd 2)."""
    command = [sys.executable, "-c", "from mnistkit.cli.main import cli; cli()", *args]
    return subprocess.run(command, capture_output=True, text=True, env={**os.environ}, timeout=300)


def test_predict_prints_only_its_own_lines_unless_asked_for_more(tmp_path: Path, exported_model, inputs):
    # The TensorFlow runtime, whose import prints the oneDNN banner (the OpenVINO one imports no TensorFlow).
    args = [
        "predict",
        "--model",
        str(exported_model),
        "--input",
        inputs["text"],
        "--no-progress",
        "--runtime",
        "tensorflow",
    ]
    quiet = _mnistkit(*args, "--output", str(tmp_path / "quiet"))
    assert quiet.returncode == 0, quiet.stderr
    assert [line for line in quiet.stderr.splitlines() if line.strip()] == []
    assert quiet.stdout.startswith("Predicted 1,000 of 1,000 rows")
    verbose = _mnistkit("-v", *args, "--output", str(tmp_path / "verbose"))
    assert verbose.returncode == 0, verbose.stderr
    assert "oneDNN custom operations" in verbose.stderr and "INFO" in verbose.stderr
    assert not any(noise in quiet.stdout + quiet.stderr for noise in NOISE)


def test_progress_says_rows_bytes_rate_and_time_left():
    line = format_progress(ProgressSnapshot(rows=12_288, bytes=25_000_000, total_bytes=100_000_000, elapsed_s=5.0))
    assert line == "12,288 rows · 25.0 of 100.0 MB (25%) · 2,458 rows/s · ETA 0:00:15"
    assert format_progress(ProgressSnapshot(10, 0, 0, 1.0)) == "10 rows · 10 rows/s"


def test_live_progress_prints_plain_lines_when_not_on_a_terminal():
    accounting.start_progress(1000)
    out = io.StringIO()
    with live_progress(out, interval_s=0.05):
        accounting.count_read(7, 500)
        import time

        time.sleep(0.2)
    lines = out.getvalue().splitlines()
    assert lines and all("\r" not in line for line in lines)
    assert lines[-1].startswith("7 rows · 0.0 of 0.0 MB (50%)")


@dataclass
class _Counter:
    name: str
    attempted: int

    @property
    def key(self):
        from types import SimpleNamespace

        return SimpleNamespace(metric=SimpleNamespace(name=self.name))

    @property
    def committed(self) -> int:
        raise AssertionError("a running job is read by its attempted counters")


class _RunningJob:
    """A Dataflow result's surface as follow_job reads it: a state that moves, counters that grow."""

    def __init__(self, states: list[str]) -> None:
        self._states = states
        self.polls = 0

    @property
    def state(self) -> str:
        return self._states[min(self.polls, len(self._states) - 1)]

    def metrics(self):
        polls = self.polls
        self.polls += 1
        counters = [_Counter("rows_read", 100 * polls), _Counter("rows_predicted", 90 * polls)]
        counters.append(_Counter("rejected_bad_key", 10 * polls))

        class Metrics:
            def query(self, _filter):
                return {"counters": counters}

        return Metrics()


def test_a_followed_job_reports_state_and_counts_until_it_ends(capsys):
    job = _RunningJob(["JOB_STATE_PENDING", "JOB_STATE_RUNNING", "JOB_STATE_RUNNING", "JOB_STATE_DONE"])
    seen = []
    last = follow_job(job, lambda status: (seen.append(status), echo_job_status(status)), sleep=lambda _: None)
    assert [s.state for s in seen] == ["PENDING", "RUNNING", "RUNNING", "DONE"] and last.done
    assert [s.counters.get("rows_read", 0) for s in seen] == [0, 100, 200, 300]
    printed = capsys.readouterr().out.splitlines()
    assert printed[-1].endswith("DONE: read 300, predicted 270, rejected 30")


@pytest.mark.parametrize("state", ["JOB_STATE_FAILED", "JOB_STATE_CANCELLED"])
def test_following_stops_at_any_terminal_state(state):
    assert follow_job(_RunningJob([state]), lambda _: None, sleep=lambda _: None).state == state.removeprefix(
        "JOB_STATE_"
    )
