"""Batch prediction throughput on one machine, every variant on the same model and the same rows.

    .venv/bin/python benchmarks/bench_predict.py [--rows 100000] [--memory-rows 1000000]

Variants (each in a fresh process, timed end to end from its command line, start-up included):
  a  per-row DoFn, the original sample's strategy            (benchmarks/baselines.py per-row)
  b  Beam's stock RunInference with TFModelHandlerNumpy     (baselines.py stock, in .venv-bench)
  c  mnistkit predict on the text rows, and on TFRecord
  d  the ceiling: batched parse + model in one process, no Beam (baselines.py ceiling)
Then `mnistkit predict` on --memory-rows text rows, sampling the resident memory of its whole
process tree. Writes benchmarks/results/predict.{json,png} and memory.png, prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "benchmarks" / "results"
SAMPLE = REPO.parent / "shared" / "datasets" / "mnist-sample"
IMAGES_PER_REPEAT = 1000  # the MNIST sample's test split
TFRECORD_SHARDS = 8


@dataclass
class Run:
    name: str
    label: str
    rows: int
    wall_s: float
    peak_rss_mb: float
    rss_timeline: list[tuple[float, float]] = field(default_factory=list)

    @property
    def rows_per_s(self) -> float:
        return self.rows / self.wall_s


def _tree_rss_mb(root: int) -> float:
    """Resident memory of `root` and all its descendants, from /proc."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    total_kb, pending = 0, [root]
    while pending:
        pid = pending.pop()
        pending += children.get(pid, [])
        try:
            with open(f"/proc/{pid}/status") as f:
                total_kb += next((int(line.split()[1]) for line in f if line.startswith("VmRSS:")), 0)
        except OSError:
            continue
    return total_kb / 1024


def timed(name: str, label: str, rows: int, command: list[str]) -> Run:
    """Run `command`, sampling its process tree's memory; fails loudly if the command fails."""
    print(f"--- {name}: {' '.join(command)}", flush=True)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    started = time.monotonic()
    process = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    timeline: list[tuple[float, float]] = []

    def sample() -> None:
        while process.poll() is None:
            timeline.append((time.monotonic() - started, _tree_rss_mb(process.pid)))
            time.sleep(0.25)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    output = process.communicate()[0].decode(errors="replace")
    wall = time.monotonic() - started
    sampler.join()
    if process.returncode:
        raise SystemExit(f"{name} failed ({process.returncode}):\n{output[-3000:]}")
    peak = max((rss for _, rss in timeline), default=0.0)
    print(f"{name}: {rows} rows in {wall:.1f} s = {rows / wall:,.0f} rows/s, peak RSS {peak:,.0f} MB", flush=True)
    return Run(name, label, rows, wall, peak, timeline)


def prepare_model(work: Path, model: str | None) -> str:
    """The version dir to serve: `model`'s newest, or a small model trained once on the MNIST sample."""
    from model_export.export import export_saved_model, latest_version

    if model is None:
        model = str(work / "model")
        if not Path(model).exists():
            from model_export.train import TrainConfig, train

            trained = train(TrainConfig(data_dir=str(SAMPLE), output_dir=work / "train", epochs=3, verbose=0))
            export_saved_model(trained.model, model, {"dataset": "mnist", "test_accuracy": trained.test_accuracy})
    return str(latest_version(model))


def rows_file(work: Path, rows: int, fmt: str) -> Path:
    """`rows` test images (the sample's 1,000 repeated with fresh keys) as text, or as TFRecord shards."""
    from pipeline.formats import convert

    shards = TFRECORD_SHARDS if fmt == "tfrecord" else 1
    path = work / f"rows-{rows}.{'txt' if fmt == 'text' else fmt}"
    pattern = work / f"rows-{rows}-*-of-{shards:05d}.{fmt}" if shards > 1 else path
    if not any(work.glob(pattern.name)):
        idx = str(SAMPLE / "t10k-images-idx3-ubyte.gz")
        convert(idx, str(path), fmt, repeat=-(-rows // IMAGES_PER_REPEAT), shards=shards)
    return pattern


def _predict_command(model: str, input_uri: Path, output: Path) -> list[str]:
    return [str(REPO / ".venv" / "bin" / "mnistkit"), "predict", "--model", model, "--input", str(input_uri),
            "--output", str(output), "--overwrite"]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--memory-rows", type=int, default=1_000_000, help="0 skips the memory run")
    parser.add_argument("--model", help="an export dir; default: train a small one on the MNIST sample")
    parser.add_argument("--work-dir", type=Path, default=REPO / "benchmarks" / "out")
    parser.add_argument("--variants", default="a,b,c,c-tfrecord,d")
    parser.add_argument("--bench-python", default=str(REPO / ".venv-bench" / "bin" / "python"))
    args = parser.parse_args()
    args.work_dir.mkdir(parents=True, exist_ok=True)
    sys.path.insert(0, str(REPO))
    from pipeline.options import RunnerConfig

    work = args.work_dir
    model = prepare_model(work, args.model)
    text, tfrecord = rows_file(work, args.rows, "text"), rows_file(work, args.rows, "tfrecord")
    rows = -(-args.rows // IMAGES_PER_REPEAT) * IMAGES_PER_REPEAT
    beam_flags = RunnerConfig().flags()
    baseline = [str(REPO / "benchmarks" / "baselines.py")]
    plan = {
        "a": ("per-row DoFn (original sample)", [sys.executable, *baseline, "per-row"]),
        "b": ("stock RunInference", [args.bench_python, *baseline, "stock"]),
        "d": ("ceiling: no Beam, 1 process", [sys.executable, *baseline, "ceiling"]),
    }
    runs = []
    for name in args.variants.split(","):
        if name == "c":
            runs.append(timed(name, "mnistkit predict (text)", rows, _predict_command(model, text, work / "c")))
        elif name == "c-tfrecord":
            command = _predict_command(model, tfrecord, work / "c-tfrecord")
            runs.append(timed(name, "mnistkit predict (TFRecord)", rows, command))
        else:
            label, command = plan[name]
            io = ["--input", str(text), "--model", model, "--output", str(work / name)]
            runs.append(timed(name, label, rows, [*command, *io, *beam_flags]))
    memory = None
    if args.memory_rows:
        command = _predict_command(model, rows_file(work, args.memory_rows, "text"), work / "memory")
        memory = timed("memory", "mnistkit predict (text)", args.memory_rows, command)
    report(runs, memory)


def report(runs: list[Run], memory: Run | None) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    RESULTS.mkdir(parents=True, exist_ok=True)
    by_name = {run.name: run for run in runs}
    data = {"runs": [asdict(run) | {"rows_per_s": run.rows_per_s} for run in runs]}
    if memory:
        data["memory"] = asdict(memory) | {"rows_per_s": memory.rows_per_s}
    (RESULTS / "predict.json").write_text(json.dumps(data, indent=1) + "\n")

    print("\n| variant | rows | wall s | rows/s | vs a | vs b | peak RSS MB |\n|---|---:|---:|---:|---:|---:|---:|")
    for run in runs:
        ratios = [f"{run.rows_per_s / by_name[ref].rows_per_s:.1f}×" if ref in by_name else "–" for ref in ("a", "b")]
        print(f"| ({run.name}) {run.label} | {run.rows:,} | {run.wall_s:.1f} | {run.rows_per_s:,.0f} | "
              f"{ratios[0]} | {ratios[1]} | {run.peak_rss_mb:,.0f} |")  # fmt: skip
    if memory:
        print(f"\nMemory run: {memory.rows:,} rows in {memory.wall_s:.0f} s ({memory.rows_per_s:,.0f} rows/s), "
              f"peak RSS {memory.peak_rss_mb:,.0f} MB")  # fmt: skip

    figure, axis = plt.subplots(figsize=(8, 3.8))
    labels = [f"({run.name}) {run.label}" for run in runs]
    bars = axis.barh(labels[::-1], [run.rows_per_s for run in runs][::-1], color="#4c72b0")
    axis.bar_label(bars, labels=[f"{run.rows_per_s:,.0f}" for run in runs][::-1], padding=3)
    axis.set_xscale("log")
    axis.set_xlabel("rows per second, end to end (log scale)")
    axis.set_title(f"Batch prediction, {runs[0].rows:,} MNIST rows, {os.cpu_count()} cores")
    figure.tight_layout()
    figure.savefig(RESULTS / "predict.png", dpi=120)
    if memory:
        figure, axis = plt.subplots(figsize=(8, 3))
        axis.plot([t for t, _ in memory.rss_timeline], [rss for _, rss in memory.rss_timeline])
        axis.set_xlabel("seconds")
        axis.set_ylabel("RSS of all processes, MB")
        axis.set_ylim(bottom=0)
        axis.set_title(f"mnistkit predict on {memory.rows:,} text rows: resident memory")
        figure.tight_layout()
        figure.savefig(RESULTS / "memory.png", dpi=120)


if __name__ == "__main__":
    main()
