"""Streaming latency on one machine: the original study's two stream tables, reproduced locally.

    .venv/bin/python benchmarks/stream_latency.py [--model DIR] [--seconds 15] [--tables rates,batches]

Latency is what every output row carries: prediction time minus the row's event time (the moment
it arrived), so it includes waiting for the source, for the micro-batch and for the model.

rates    the watched-folder stream (`mnistkit stream --input watch://`, FnApiRunner) fed by
         `simulate-stream` at 10, 100 and 1,000 rows/s; micro-batches of up to 100 rows, and
         per-row scoring (--max-batch 1). The folder is polled every 0.1 s.
batches  micro-batches of 10, 150 and 500 rows at 10 rows/s with --window-seconds 20. The
         FnApiRunner fires processing-time timers at once, so it never holds a partial batch;
         these runs use the BundleBasedDirectRunner, which honours them, fed in real time by a
         TestStream whose events come from an event-service endpoint paced by the wall clock.

A few warm-up rows go first and are left out, so model loading is not counted. Writes
benchmarks/results/stream_latency.json and prints the markdown tables.
"""

from __future__ import annotations

import argparse
import json
import shutil
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from bench_predict import REPO, RESULTS, SAMPLE, prepare_model

WARM_UP_ROWS = 20
POLL_SECONDS = 0.1
BATCH_WINDOW_SECONDS = 20.0


@dataclass
class Latency:
    table: str
    source: str
    rate: float
    max_batch: int
    window_seconds: float
    rows: int
    mean_batch: float
    min_ms: float
    mean_ms: float
    p95_ms: float
    max_ms: float


def _latency(table: str, source: str, rate: float, max_batch: int, window: float, out: Path) -> Latency:
    """Latency statistics of the rows after the warm-up, from a stream's output folder."""
    files = sorted(out.glob("predictions-*.jsonl"))
    batches = [[json.loads(line) for line in f.read_text().splitlines()] for f in files]
    latencies = np.array([row["latency_ms"] for batch in batches for row in batch if row["key"] >= WARM_UP_ROWS])
    result = Latency(
        table,
        source,
        rate,
        max_batch,
        window,
        len(latencies),
        float(np.mean([len(b) for b in batches])),
        *(
            round(float(v), 1)
            for v in (latencies.min(), latencies.mean(), np.percentile(latencies, 95), latencies.max())
        ),
    )
    print(f"{table} {source} {rate:g} rows/s, max batch {max_batch}: {asdict(result)}", flush=True)
    return result


def _rows(count: int) -> list[bytes]:
    from mnistkit.model_export.datasets import load_dataset
    from mnistkit.pipeline.streaming.simulate import dataset_rows

    images, _ = load_dataset("mnist", "test", SAMPLE)
    return list(dataset_rows(images, count))


def _wait_for_rows(out: Path, count: int, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while sum(len(f.read_bytes().splitlines()) for f in out.glob("predictions-*.jsonl")) < count:
        if time.monotonic() > deadline:
            raise TimeoutError(f"the stream scored fewer than {count} rows in {timeout:.0f} s")
        time.sleep(0.1)


def watched_folder(model: str, work: Path, rate: float, seconds: float, max_batch: int) -> Latency:
    """`mnistkit stream --input watch://` fed at `rate` by simulate-stream's folder sink."""
    from mnistkit.pipeline.streaming.pipeline import StreamConfig, run_stream
    from mnistkit.pipeline.streaming.simulate import FolderSink, simulate

    incoming, out = work / "incoming", work / "out"
    shutil.rmtree(work, ignore_errors=True)
    incoming.mkdir(parents=True)
    count = WARM_UP_ROWS + int(rate * seconds)
    rows = _rows(count)
    config = StreamConfig(
        model=model,
        input=f"watch://{incoming}",
        output=str(out),
        max_batch=max_batch,
        window_seconds=1.0,
        poll_seconds=POLL_SECONDS,
        idle=3.0,
    )
    stream = threading.Thread(target=run_stream, args=(config,), daemon=True)
    stream.start()
    sink = FolderSink(str(incoming))
    sink.send(rows[:WARM_UP_ROWS])
    _wait_for_rows(out, WARM_UP_ROWS)
    simulate(iter(rows[WARM_UP_ROWS:]), count - WARM_UP_ROWS, rate, sink)
    stream.join()
    return _latency("rates", "watched folder", rate, max_batch, config.window_seconds, out)


class _PacedEvents:
    """TestStream events for `rows` arriving at `rate` rows/s in real time.

    The DirectRunner's TestStream clock only moves with processing-time events, so a heartbeat
    keeps it on the wall clock (every `tick` seconds) and the batching timers fire on time.
    """

    def __init__(self, rows: list[bytes], rate: float, tail_seconds: float, tick: float = 0.1) -> None:
        self._rows, self._rate, self._tail, self._tick = rows, rate, tail_seconds, tick

    def read_multiple(self, unused_ids: list) -> Iterator:
        from apache_beam import coders
        from apache_beam.portability.api import beam_runner_api_pb2

        payload = beam_runner_api_pb2.TestStreamPayload
        coder = coders.FastPrimitivesCoder()
        clock = 0

        def heartbeat():
            nonlocal clock
            now = int(time.time() * 1e6)
            event = payload.Event.AdvanceProcessingTime(advance_duration=now - clock)
            clock = now
            return payload.Event(processing_time_event=event)

        yield heartbeat()
        started, sent = time.time(), 0
        while sent < len(self._rows):
            wait = started + sent / self._rate - time.time()
            if wait > 0:
                time.sleep(min(wait, self._tick))
                yield heartbeat()
                continue
            yield heartbeat()
            now = int(time.time() * 1e6)
            element = payload.TimestampedElement(
                encoded_element=coder.encode((self._rows[sent], "paced", "jsonl")), timestamp=now
            )
            yield payload.Event(element_event=payload.Event.AddElements(elements=[element]))
            sent += 1
        # Time for the last partial batch to reach its window.
        end = time.time() + self._tail
        while time.time() < end:
            time.sleep(self._tick)
            yield heartbeat()


def paced_test_stream(model: str, work: Path, rate: float, seconds: float, max_batch: int, window: float) -> Latency:
    """ScoreStream on the BundleBasedDirectRunner, rows arriving in real time through a TestStream."""
    import apache_beam as beam
    from apache_beam import coders
    from apache_beam.options.pipeline_options import PipelineOptions
    from apache_beam.testing.test_stream import TestStream
    from apache_beam.testing.test_stream_service import TestStreamServiceController

    from mnistkit.pipeline.inference.hot_swap import StreamModelHandler
    from mnistkit.pipeline.io.streams import WriteStreamFiles
    from mnistkit.pipeline.streaming.pipeline import BUNDLE_BASED_RUNNER, ScoreStream

    out = work / "out"
    shutil.rmtree(work, ignore_errors=True)
    rows = _rows(WARM_UP_ROWS + int(rate * seconds))
    events = TestStreamServiceController(_PacedEvents(rows, rate, tail_seconds=window + 1))
    events.start()
    try:
        options = PipelineOptions([f"--runner={BUNDLE_BASED_RUNNER}", "--streaming"])
        handler = StreamModelHandler(model, max_batch=max_batch, check_seconds=3600)
        with beam.Pipeline(options=options) as pipeline:
            source = pipeline | TestStream(coder=coders.FastPrimitivesCoder(), endpoint=events.endpoint)
            scored = source | ScoreStream(handler, max_batch, window)
            _ = (scored.scored, scored.dead_letters) | WriteStreamFiles(str(out), str(out))
    finally:
        events.stop()
    return _latency("batches", "paced TestStream", rate, max_batch, window, out)


def markdown(results: list[Latency]) -> str:
    lines = []
    for table, title in (("rates", "Latency by arrival rate"), ("batches", "Latency by micro-batch size, 10 rows/s")):
        chosen = [r for r in results if r.table == table]
        if not chosen:
            continue
        lines += [
            f"**{title}** (ms)",
            "",
            "| source | rows/s | max batch | window s | rows | mean batch | min | mean | p95 | max |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        lines += [
            f"| {r.source} | {r.rate:,.0f} | {r.max_batch} | {r.window_seconds:g} | {r.rows:,} | {r.mean_batch:.1f} "
            f"| {r.min_ms:,.0f} | {r.mean_ms:,.0f} | {r.p95_ms:,.0f} | {r.max_ms:,.0f} |"
            for r in chosen
        ]
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="an export dir; default: train a small one on the MNIST sample")
    parser.add_argument("--work-dir", type=Path, default=REPO / "benchmarks" / "out")
    parser.add_argument("--seconds", type=float, default=15.0, help="length of each rates run")
    parser.add_argument("--batch-seconds", type=float, default=40.0, help="length of each batches run")
    parser.add_argument("--tables", default="rates,batches")
    args = parser.parse_args()
    tables = set(args.tables.split(","))
    model = prepare_model(args.work_dir, args.model)
    work = args.work_dir / "stream"
    results = []
    if "rates" in tables:
        for max_batch in (100, 1):
            for rate in (10, 100, 1000):
                results.append(watched_folder(model, work, rate, args.seconds, max_batch))
    if "batches" in tables:
        for max_batch in (10, 150, 500):
            results.append(paced_test_stream(model, work, 10, args.batch_seconds, max_batch, BATCH_WINDOW_SECONDS))
    # The tables not run this time keep their last results.
    saved = RESULTS / "stream_latency.json"
    kept = [Latency(**r) for r in json.loads(saved.read_text()) if r["table"] not in tables] if saved.exists() else []
    results = sorted(kept + results, key=lambda r: r.table != "rates")
    RESULTS.mkdir(parents=True, exist_ok=True)
    saved.write_text(json.dumps([asdict(r) for r in results], indent=2) + "\n")
    print(markdown(results))


if __name__ == "__main__":
    main()
