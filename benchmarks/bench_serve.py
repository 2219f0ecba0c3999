"""Loopback load test of `mnistkit serve`: throughput and latency at several client concurrencies.

    .venv/bin/python benchmarks/bench_serve.py --model work/demo/models [--seconds 10] [--rows 1]

The server runs as its own process (`mnistkit serve` on a free port, its defaults: batches of up
to 64 rows, 5 ms wait); the client is one asyncio process (aiohttp) keeping CONCURRENCY requests
in flight for --seconds per level, each request `--rows` test images. Every response is checked
(status 200, one prediction per instance). Writes benchmarks/results/serve.json and prints a
markdown table; the server's own batch sizes come from its /metrics.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "benchmarks" / "results"
SAMPLE = REPO.parent / "shared" / "datasets" / "mnist-sample"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _bodies(rows: int, count: int = 200) -> list[bytes]:
    from mnistkit.model_export.datasets import load_dataset
    from mnistkit.model_export.model import to_model_input
    from mnistkit.pipeline.inference.rest import encode_instances, instance_bytes

    images, _ = load_dataset("mnist", "test", SAMPLE)
    pixels = to_model_input(images)
    return [
        encode_instances([instance_bytes(k, pixels[k % len(pixels)]) for k in range(i * rows, (i + 1) * rows)])
        for i in range(count)
    ]


def _batch_stats(url: str) -> tuple[float, float]:
    """(model calls, rows) the server has made so far, from its Prometheus metrics."""
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    text = urllib.request.urlopen(url + "/metrics", timeout=10).read().decode()
    samples = {s.name: s.value for f in text_string_to_metric_families(text) for s in f.samples if not s.labels}
    return samples["mnistkit_serve_batch_rows_count"], samples["mnistkit_serve_batch_rows_sum"]


async def _level(url: str, bodies: list[bytes], rows: int, concurrency: int, seconds: float) -> dict:
    import aiohttp

    latencies: list[float] = []
    errors = 0
    deadline = time.monotonic() + seconds
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def client(n: int) -> None:
            nonlocal errors
            i = n
            while time.monotonic() < deadline:
                started = time.perf_counter()
                async with session.post(url + "/v1/models/mnist:predict", data=bodies[i % len(bodies)]) as response:
                    body = await response.read()
                ok = response.status == 200 and len(json.loads(body)["predictions"]) == rows
                latencies.append(time.perf_counter() - started)
                errors += not ok
                i += concurrency

        started = time.monotonic()
        await asyncio.gather(*(client(n) for n in range(concurrency)))
        wall = time.monotonic() - started
    ms = np.asarray(latencies) * 1000
    return {
        "concurrency": concurrency,
        "rows_per_request": rows,
        "requests": len(latencies),
        "errors": errors,
        "wall_s": round(wall, 2),
        "requests_per_s": round(len(latencies) / wall, 1),
        "rows_per_s": round(len(latencies) * rows / wall, 1),
        "p50_ms": round(float(np.percentile(ms, 50)), 2),
        "p99_ms": round(float(np.percentile(ms, 99)), 2),
        "max_ms": round(float(ms.max()), 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="export dir to serve")
    parser.add_argument("--seconds", type=float, default=10.0, help="load per concurrency level")
    parser.add_argument("--rows", type=int, default=1, help="images per request")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 64])
    args = parser.parse_args()

    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    mnistkit = Path(sys.executable).with_name("mnistkit")
    server = subprocess.Popen([str(mnistkit), "serve", "--model", args.model, "--port", str(port)], env=os.environ)
    try:
        import urllib.request

        deadline = time.monotonic() + 120
        while True:
            try:
                urllib.request.urlopen(url + "/health", timeout=2)
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise SystemExit("the server did not start") from None
                time.sleep(0.2)
        bodies = _bodies(args.rows)
        asyncio.run(_level(url, bodies, args.rows, 4, 2.0))  # warm-up: TensorFlow's first calls are slow
        results = []
        for concurrency in args.concurrency:
            calls, rows = _batch_stats(url)
            cpu_before = _cpu_seconds(server.pid)
            result = asyncio.run(_level(url, bodies, args.rows, concurrency, args.seconds))
            calls_after, rows_after = _batch_stats(url)
            result["server_cpu_s"] = round(_cpu_seconds(server.pid) - cpu_before, 1)
            result["rows_per_model_call"] = round((rows_after - rows) / max(calls_after - calls, 1), 1)
            results.append(result)
            print(json.dumps(result), flush=True)
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(30)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "serve.json").write_text(json.dumps(results, indent=2) + "\n")
    print("\n| concurrency | requests | errors | requests/s | p50 ms | p99 ms | rows per model call | server CPU s |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in results:
        print(
            f"| {r['concurrency']} | {r['requests']:,} | {r['errors']} | {r['requests_per_s']:,.0f} | "
            f"{r['p50_ms']} | {r['p99_ms']} | {r['rows_per_model_call']} | {r['server_cpu_s']} |"
        )


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


if __name__ == "__main__":
    main()
