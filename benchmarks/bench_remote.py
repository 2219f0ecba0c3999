"""The model in the pipeline vs. calling `mnistkit serve`: issue 14's comparison, on one machine.

    .venv/bin/python benchmarks/bench_remote.py --model work/demo/models [--rows 10000] [--seconds 10]

Three ways to score, each in a batch run (`mnistkit predict` on --rows text rows) and in a stream
(`mnistkit stream --input watch://` fed by simulate-stream at 10, 100 and 1,000 rows/s):
  in-pipeline  --model: the export loaded in the pipeline (batches of 256 / micro-batches of 100)
  remote/row   --endpoint --max-batch 1: one HTTP request per row
  remote/batch --endpoint: the default batch per request (256 rows batch, 100 rows stream)
against one `mnistkit serve` (its defaults) started here. Every pipeline is its own process; its
CPU seconds come from wait4(), the server's from /proc (both user + system), so a variant's CPU
is client + server. All variants run in this one invocation, batch first, then the streams rate
by rate with the three variants side by side, so they share the machine's load; read the ratios.
Stream latency is the latency_ms each output row carries (after 20 warm-up rows). Writes
benchmarks/results/remote.json (--results) and prints the markdown tables.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from bench_predict import RESULTS, prepare_model, rows_file
from bench_serve import _cpu_seconds
from stream_latency import WARM_UP_ROWS, _rows, _wait_for_rows

MNISTKIT = str(Path(sys.executable).with_name("mnistkit"))
VARIANTS = ("in-pipeline", "remote/row", "remote/batch")


@dataclass
class Result:
    mode: str  # batch or stream
    variant: str
    rate: float | None  # rows/s fed to a stream
    rows: int
    wall_s: float
    client_cpu_s: float
    server_cpu_s: float
    min_ms: float | None = None
    mean_ms: float | None = None
    p95_ms: float | None = None
    max_ms: float | None = None
    rejected: int = 0


def _scoring(variant: str, model: str, url: str) -> list[str]:
    if variant == "in-pipeline":
        return ["--model", model]
    if variant == "remote/row":
        return ["--endpoint", url, "--max-batch", "1"]
    return ["--endpoint", url]


def _run(command: list[str], server_pid: int, during=None) -> tuple[float, float, float]:
    """(wall s, client CPU s, server CPU s) of one pipeline process; `during` runs meanwhile."""
    server_before, started = _cpu_seconds(server_pid), time.monotonic()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    errors: list[str] = []
    reader = threading.Thread(target=lambda: errors.append(process.stderr.read()), daemon=True)
    reader.start()
    if during is not None:
        during()
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    reader.join()
    if process.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{errors[0][-3000:]}")
    wall = time.monotonic() - started
    return wall, usage.ru_utime + usage.ru_stime, _cpu_seconds(server_pid) - server_before


def batch(variant: str, model: str, url: str, rows: int, work: Path, server_pid: int) -> Result:
    input_uri = rows_file(work, rows, "text")
    out = work / "batch" / variant.replace("/", "-") / "out"
    shutil.rmtree(out.parent, ignore_errors=True)
    out.parent.mkdir(parents=True)
    command = [MNISTKIT, "predict", *_scoring(variant, model, url), "--input", str(input_uri),
               "--output", str(out)]  # fmt: skip
    wall, client, server = _run(command, server_pid)
    summary = json.loads((out.parent / "out-summary.json").read_text())
    result = Result("batch", variant, None, summary["rows_predicted"], round(wall, 1), round(client, 1),
                    round(server, 1), rejected=summary["rows_rejected"])  # fmt: skip
    print(json.dumps(asdict(result)), flush=True)
    return result


def stream(variant: str, model: str, url: str, rate: float, seconds: float, work: Path, server_pid: int) -> Result:
    from mnistkit.pipeline.streaming.simulate import FolderSink, simulate

    base = work / "stream" / f"{variant.replace('/', '-')}-{rate:g}"
    incoming, out = base / "incoming", base / "out"
    shutil.rmtree(base, ignore_errors=True)
    incoming.mkdir(parents=True)
    count = WARM_UP_ROWS + int(rate * seconds)
    rows = _rows(count)
    command = [MNISTKIT, "stream", *_scoring(variant, model, url), "--input", f"watch://{incoming}",
               "--output", str(out), "--window-seconds", "1", "--poll-seconds", "0.1", "--idle-stop", "5"]  # fmt: skip

    def feed() -> None:
        sink = FolderSink(str(incoming))
        sink.send(rows[:WARM_UP_ROWS])
        _wait_for_rows(out, WARM_UP_ROWS)
        simulate(iter(rows[WARM_UP_ROWS:]), count - WARM_UP_ROWS, rate, sink)

    wall, client, server = _run(command, server_pid, during=feed)
    scored = [json.loads(line) for f in sorted(out.glob("predictions-*.jsonl")) for line in f.read_text().splitlines()]
    latencies = np.array([row["latency_ms"] for row in scored if row["key"] >= WARM_UP_ROWS])
    stats = (latencies.min(), latencies.mean(), np.percentile(latencies, 95), latencies.max())
    result = Result("stream", variant, rate, len(latencies), round(wall, 1), round(client, 1), round(server, 1),
                    *(round(float(v), 1) for v in stats), rejected=count - len(scored))  # fmt: skip
    print(json.dumps(asdict(result)), flush=True)
    return result


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(model: str) -> tuple[subprocess.Popen, str]:
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen([MNISTKIT, "serve", "--model", model, "--port", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    deadline = time.monotonic() + 120
    while True:
        try:
            urllib.request.urlopen(url + "/health", timeout=2)
            return server, url
        except OSError:
            if time.monotonic() > deadline or server.poll() is not None:
                raise SystemExit("the server did not start") from None
            time.sleep(0.2)


def markdown(results: list[Result]) -> str:
    lines = ["| variant | rows | wall s | rows/s | client CPU s | server CPU s | CPU s per 1k rows | wall × | CPU × |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
    by_rows: dict[int, Result] = {}
    for r in (r for r in results if r.mode == "batch"):
        base = by_rows.setdefault(r.rows, r)
        cpu, base_cpu = r.client_cpu_s + r.server_cpu_s, base.client_cpu_s + base.server_cpu_s
        lines.append(f"| {r.variant} | {r.rows:,} | {r.wall_s} | {r.rows / r.wall_s:,.0f} | {r.client_cpu_s} | "
                     f"{r.server_cpu_s} | {1000 * cpu / r.rows:.2f} | {r.wall_s / base.wall_s:.1f} | "
                     f"{cpu / base_cpu:.1f} |")  # fmt: skip
    lines += ["", "| variant | rows/s | rows | min ms | mean ms | p95 ms | max ms | client CPU s | server CPU s |",
              "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
    for r in sorted((r for r in results if r.mode == "stream"), key=lambda r: (VARIANTS.index(r.variant), r.rate)):
        lines.append(f"| {r.variant} | {r.rate:,.0f} | {r.rows:,} | {r.min_ms:,} | {r.mean_ms:,} | {r.p95_ms:,} | "
                     f"{r.max_ms:,} | {r.client_cpu_s} | {r.server_cpu_s} |")  # fmt: skip
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="export dir (default: a small model trained on the MNIST sample)")
    parser.add_argument("--rows", type=int, nargs="+", default=[10_000], help="batch sizes to score")
    parser.add_argument("--seconds", type=float, default=10.0, help="how long each stream is fed")
    parser.add_argument("--rates", type=float, nargs="*", default=[10, 100, 1000], help="none: no streams")
    parser.add_argument("--results", default="remote.json", help="file name under benchmarks/results")
    parser.add_argument("--work", type=Path, default=Path("work/bench-remote"))
    args = parser.parse_args()

    args.work.mkdir(parents=True, exist_ok=True)
    model = str(Path(prepare_model(args.work, args.model)).parent)
    server, url = start_server(model)
    results: list[Result] = []
    try:
        for rows in args.rows:
            results += [batch(v, model, url, rows, args.work, server.pid) for v in VARIANTS]
        for rate in args.rates:
            results += [stream(v, model, url, rate, args.seconds, args.work, server.pid) for v in VARIANTS]
    finally:
        server.terminate()
        server.wait(30)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / args.results).write_text(json.dumps([asdict(r) for r in results], indent=2) + "\n")
    print(markdown(results))


if __name__ == "__main__":
    main()
