"""The Dataflow cost ESTIMATE of docs/BENCHMARKS.md, from measured throughput and remembered prices.

    .venv/bin/python benchmarks/cost_estimate.py --model-only-rows-per-s 44010

Reads the 1M seed-row OpenVINO run of results/matrix.json (CPU per row end to end) and takes the
model-only rate (`baselines.py model-only`, rows/s on this machine's 2 cores). Assumes an n1 vCPU
does half of one of this machine's cores, and that a T4 worker is bound by its 4 vCPUs' work
outside the model. Prices are list prices from memory: check them before quoting the table.
"""

from __future__ import annotations

import argparse
import json

from bench_predict import RESULTS

# us-central1 Dataflow batch list prices (USD), from memory.
VCPU_HOUR, GB_HOUR, T4_HOUR, PD_HOUR = 0.056, 0.003557, 0.35, 250 * 0.000054
WORKERS = {"n1-standard-2": (2, 7.5, 0), "n1-standard-4": (4, 15.0, 0), "n1-standard-4 + T4": (4, 15.0, 1)}
START_UP_S = 240


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-only-rows-per-s", type=float, required=True, help="baselines.py model-only, 2 cores")
    args = parser.parse_args()
    results = json.loads((RESULTS / "matrix.json").read_text())
    run = next(r for r in results if (r["input"], r["rows"], r["variant"]) == ("seed", 1_000_000, "openvino"))
    cpu_us = run["cpu_s"] / run["rows"] * 1e6
    model_us = 2 / args.model_only_rows_per_s * 1e6
    per_n1_vcpu = 1e6 / cpu_us / 2
    t4_worker = 4 / (2 * (cpu_us - model_us) * 1e-6)
    print(f"CPU per seed row {cpu_us:.1f} us (model {model_us:.1f}); n1 vCPU {per_n1_vcpu:,.0f} rows/s; "
          f"T4 worker {t4_worker:,.0f} rows/s\n")  # fmt: skip
    print("| rows | worker | est. rows/s per worker | compute time | vCPU-hours (incl. 4 min start-up) "
          "| est. cost USD |\n|---:|---|---:|---:|---:|---:|")  # fmt: skip
    for rows in (10_000, 100_000, 1_000_000, 10_000_000):
        for name, (vcpus, memory_gb, gpus) in WORKERS.items():
            rate = t4_worker if gpus else per_n1_vcpu * vcpus
            seconds = rows / rate
            hours = (seconds + START_UP_S) / 3600
            hourly = vcpus * VCPU_HOUR + memory_gb * GB_HOUR + gpus * T4_HOUR + PD_HOUR
            shown = "< 1 s" if seconds < 1 else f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.0f} min"
            print(f"| {rows:,} | {name} | {rate:,.0f} | {shown} | {vcpus * hours:.3f} | {hourly * hours:.3f} |")


if __name__ == "__main__":
    main()
