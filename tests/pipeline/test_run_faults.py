"""Faults in the middle of a whole batch run: a model that starts failing after N rows, and a run
killed with SIGKILL while it writes, then run again with `--overwrite`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time

import apache_beam as beam
import numpy as np
from outputs import read_json_lines

from mnistkit.pipeline.accounting import Summary, query_counters
from mnistkit.pipeline.batch import PredictConfig, build_pipeline, run_predict
from mnistkit.pipeline.inference.handler import SavedModelHandler
from mnistkit.pipeline.io.formats import encode_text
from mnistkit.pipeline.runners import RunnerConfig

IN_PROCESS = RunnerConfig(workers=1, running_mode="in_memory")
FAIL_AFTER = 300


class _FailsAfter:
    """A loaded model that serves `limit` rows, then raises on every call (a device that died)."""

    def __init__(self, model, limit: int) -> None:
        self._model = model
        self._left = limit
        self._lock = threading.Lock()
        self.name, self.precision = model.name, model.precision

    def predict(self, keys, images):
        with self._lock:
            if len(keys) > self._left:
                raise RuntimeError("CUDA error: device lost")
            self._left -= len(keys)
        return self._model.predict(keys, images)


class _FailingModelHandler(SavedModelHandler):
    def load_model(self):
        return _FailsAfter(super().load_model(), FAIL_AFTER)


def test_a_model_that_fails_after_n_rows_costs_exactly_the_rows_after_them(tmp_path, exported_model, test_rows):
    keys, pixels = test_rows
    source = tmp_path / "rows.txt"
    source.write_bytes(encode_text(keys, pixels))
    config = PredictConfig(model=str(exported_model), input=str(source), output=str(tmp_path / "p"), runner=IN_PROCESS)
    handler = _FailingModelHandler(str(exported_model), min_batch_size=128, max_batch_size=128)
    pipeline = beam.Pipeline(options=IN_PROCESS.pipeline_options())
    build_pipeline(pipeline, config, "text", handler)
    result = pipeline.run()
    result.wait_until_finish()
    summary = Summary.from_counters(query_counters(result), input="", output="", model="", format="", wall_time_s=0)

    predicted = [row["key"] for row in read_json_lines(config.predictions_pattern)]
    dead = list(read_json_lines(config.errors_pattern))
    assert len(predicted) == len(set(predicted)) == FAIL_AFTER
    assert {d["reason"] for d in dead} == {"inference_error"}
    assert all("device lost" in d["detail"] for d in dead)
    failed = [int(d["raw"].split(":", 1)[0]) for d in dead]
    assert sorted(predicted + failed) == keys.tolist()
    assert summary.rows_read == 1000 and summary.rows_predicted == FAIL_AFTER
    assert summary.rejected == {"inference_error": 1000 - FAIL_AFTER} and summary.reconciled


def _listing(folder) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_a_run_killed_while_writing_leaves_the_previous_outputs_and_a_rerun_replaces_them(
    tmp_path, exported_model, test_rows
):
    keys, pixels = test_rows
    out = tmp_path / "out"
    small, big = tmp_path / "small.txt", tmp_path / "big.txt"
    small.write_bytes(encode_text(keys[:50], pixels[:50]))
    n = 20_000
    big.write_bytes(encode_text(np.arange(n), np.tile(pixels, (n // len(pixels), 1))))
    earlier = run_predict(PredictConfig(model=str(exported_model), input=str(small), output=str(out / "p")))
    assert earlier.rows_predicted == 50
    before = _listing(out)

    args = ["predict", "--model", str(exported_model), "--input", str(big), "--output", str(out / "p")]
    args += ["--overwrite", "--no-progress", "--workers", "1", "--running-mode", "in_memory"]
    child = subprocess.Popen(
        [sys.executable, "-c", "from mnistkit.cli.main import cli; cli()", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ},
    )
    try:
        # Killed once its sinks have begun to write: a file in the run's own folder.
        deadline = time.monotonic() + 240
        while not any(p.is_file() for p in out.glob("p-run-*/**/*")) and time.monotonic() < deadline:
            assert child.poll() is None, "the run ended before it was killed"
            time.sleep(0.05)
        assert child.poll() is None, "no output was being written"
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.kill()
        child.wait()
    assert child.returncode == -signal.SIGKILL
    after_kill = _listing(out)
    assert {name: data for name, data in after_kill.items() if "-run-" not in name} == before
    assert any("-run-" in name for name in after_kill)  # the killed run's files, in its own folder

    config = PredictConfig(model=str(exported_model), input=str(big), output=str(out / "p"), overwrite=True)
    summary = run_predict(config)
    names = sorted(_listing(out))
    assert not any("-run-" in name or "beam-temp" in name or ".tmp" in name for name in names), names
    predicted = [row["key"] for row in read_json_lines(config.predictions_pattern)]
    assert len(predicted) == n and sorted(predicted) == list(range(n))
    assert list(read_json_lines(config.errors_pattern)) == []
    on_disk = json.loads((out / "p-summary.json").read_text())
    assert on_disk["rows_read"] == on_disk["rows_predicted"] == n and on_disk["reconciled"]
    assert summary.reconciled
