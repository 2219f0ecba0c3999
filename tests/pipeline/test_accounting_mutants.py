"""Row accounting on its own: the counters a real Beam pipeline reports, the in-process tally,
latencies, progress and the summary's arithmetic.

Written for the survivors of the mutation run (docs/RELIABILITY.md, "Mutation score"): the whole
pipeline runs check these through `run_predict`, but only in slow tests.
"""

from __future__ import annotations

import json

import apache_beam as beam
import pytest
from apache_beam.options.pipeline_options import PipelineOptions

from mnistkit.pipeline import accounting
from mnistkit.pipeline.accounting import ProgressSnapshot, Summary


class Account(beam.DoFn):
    """Counts each element as read, then as predicted (two rows) or rejected (one) by its own say."""

    def process(self, element):
        if element.startswith("bad"):
            accounting.count_read(1, nbytes=10)
            accounting.count_rejected(element.split(":")[1])
        else:
            # Two rows at once: Beam's counter reads inc(None) as inc(1), so one would not tell.
            accounting.count_read(2, nbytes=10)
            accounting.count_predicted(2)
        yield element


def test_a_pipeline_s_counters_reconcile_into_a_summary():
    accounting.start_local_counts()
    accounting.start_progress(total_bytes=100)
    pipeline = beam.Pipeline(options=PipelineOptions(["--direct_num_workers=1"]))
    _ = (
        pipeline
        | beam.Create(["ok", "bad:parse_error", "ok", "bad:parse_error", "bad:wrong_size"])
        | beam.ParDo(Account())
    )
    result = pipeline.run()
    result.wait_until_finish()
    counters = accounting.query_counters(result)
    assert counters == {"rows_read": 7, "rows_predicted": 4, "rejected_parse_error": 2, "rejected_wrong_size": 1}
    assert accounting.query_counters(result, committed=False) == counters
    assert accounting.local_counters() == counters
    snapshot = accounting.progress()
    assert (snapshot.rows, snapshot.bytes, snapshot.total_bytes) == (7, 50, 100)
    summary = Summary.from_counters(counters, input="in", output="out", model="m", format="text", wall_time_s=2.0)
    assert summary.rows_read == 7 and summary.rows_predicted == 4
    assert summary.rejected == {"parse_error": 2, "wrong_size": 1}
    assert summary.rows_rejected == 3 and summary.reconciled


def test_counters_of_zero_and_missing_ones_read_as_nothing_rejected():
    summary = Summary.from_counters(
        {"rows_read": 3, "rejected_parse_error": 0, "other": 7}, input="", output="", model="", format="", wall_time_s=0
    )
    assert summary.rejected == {} and summary.rows_predicted == 0
    assert not summary.reconciled
    assert Summary.from_counters({}, input="", output="", model="", format="", wall_time_s=0).rows_read == 0


def test_the_local_tally_restarts_and_sums_per_name():
    accounting.start_local_counts()
    accounting.count_read(3)
    accounting.count_read(4)
    accounting.count_rejected("x")
    accounting.count_rejected("x")
    assert accounting.local_counters() == {"rows_read": 7, "rejected_x": 2}
    counters = accounting.local_counters()
    counters["rows_read"] = 0  # a copy: the tally is not the caller's to change
    assert accounting.local_counters()["rows_read"] == 7
    accounting.start_local_counts()
    assert accounting.local_counters() == {} and accounting.local_latency() == {}


def test_latencies_summarize_as_min_mean_max_and_count():
    accounting.start_local_counts()
    accounting.record_latency(20.9)
    assert accounting.local_latency() == {"min": 20, "mean": 20.0, "max": 20, "count": 1}
    for ms in (5, 40, 11):
        accounting.record_latency(ms)
    assert accounting.local_latency() == {"min": 5, "mean": 19.0, "max": 40, "count": 4}
    accounting.record_latency(3)
    assert accounting.local_latency() == {"min": 3, "mean": 15.8, "max": 40, "count": 5}


@pytest.mark.parametrize(
    ("done", "total", "fraction", "eta"),
    [(0, 100, 0.0, None), (25, 100, 0.25, 30.0), (100, 100, 1.0, None), (150, 100, 1.0, None), (5, 0, None, None)],
)
def test_progress_fraction_and_time_left(done, total, fraction, eta):
    snapshot = ProgressSnapshot(rows=10, bytes=done, total_bytes=total, elapsed_s=10.0)
    assert snapshot.fraction == fraction
    assert snapshot.eta_s == eta


def test_progress_rates_never_divide_by_zero():
    assert ProgressSnapshot(rows=10, bytes=0, total_bytes=0, elapsed_s=4.0).rows_per_s == 2.5
    assert ProgressSnapshot(rows=10, bytes=0, total_bytes=0, elapsed_s=0.0).rows_per_s == 0.0


def test_progress_counts_from_its_start():
    accounting.start_progress(total_bytes=1000)
    accounting.count_read(2, nbytes=300)
    accounting.count_read(1)
    snapshot = accounting.progress()
    assert (snapshot.rows, snapshot.bytes, snapshot.total_bytes) == (3, 300, 1000)
    assert 0 <= snapshot.elapsed_s < 60
    accounting.start_progress(total_bytes=5)
    assert (accounting.progress().rows, accounting.progress().bytes, accounting.progress().total_bytes) == (0, 0, 5)


def test_the_summary_document_carries_the_derived_figures(tmp_path):
    summary = Summary(
        input="in",
        output="out",
        model="m",
        format="jsonl",
        rows_read=3,
        rows_predicted=2,
        rejected={"parse_error": 1},
        wall_time_s=1.23456,
    )
    assert summary.error_rate == pytest.approx(1 / 3) and summary.rows_per_s == pytest.approx(3 / 1.23456)
    path = tmp_path / "run-summary.json"
    summary.write(str(path))
    written = json.loads(path.read_text())
    assert written == {
        "input": "in",
        "output": "out",
        "model": "m",
        "format": "jsonl",
        "rows_read": 3,
        "rows_predicted": 2,
        "rejected": {"parse_error": 1},
        "wall_time_s": 1.235,
        "outputs": {},
        "runtime": "",
        "precision": "f32",
        "precision_check": {},
        "rows_rejected": 1,
        "error_rate": 0.333333,
        "rows_per_s": 2.4,
        "reconciled": True,
    }
    assert path.read_bytes().endswith(b"}\n") and b'\n  "input"' in path.read_bytes()
    assert [p.name for p in tmp_path.iterdir()] == ["run-summary.json"]


def test_an_empty_or_instant_run_has_no_rates():
    summary = Summary("", "", "", "", rows_read=0, rows_predicted=0, rejected={}, wall_time_s=0.0)
    assert summary.error_rate == 0.0 and summary.rows_per_s == 0.0 and summary.reconciled
