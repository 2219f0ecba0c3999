"""Batch prediction throughput on one machine, every variant on the same model and the same rows.

    .venv/bin/python benchmarks/bench_predict.py [--rows 100000] [--memory-rows 1000000]

Variants (each in a fresh process, timed end to end from its command line, start-up included):
  a  per-row DoFn, the original sample's strategy: a Keras call per row (baselines.py per-row),
     on --per-row-rows rows (10,000, as in the issue's own measurement: 100k would take 8 min)
  a2 per-row DoFn calling the SavedModel signature, TensorFlow's cheapest per-row call
  b  Beam's stock RunInference with TFModelHandlerNumpy     (baselines.py stock, in .venv-bench)
  c  mnistkit predict on the text rows, and on TFRecord
  d  the ceiling: batched parse + model in one process, no Beam (baselines.py ceiling)
Then `mnistkit predict` on --memory-rows text rows, sampling the resident memory of its whole
process tree. Writes benchmarks/results/predict.{json,png} and memory.png, prints a markdown table.

    .venv/bin/python benchmarks/bench_predict.py --matrix seed:1000,seed:100000,tfrecord:100000 \
        --seed-dir ../scratch/speed/data --model M [--matrix-variants stock,tensorflow,openvino,ceiling]

The runtime matrix (issue 12): each input (seed-format text `seed-<rows>.txt` from --seed-dir,
the kit's short text, TFRecord shards) at each size, every variant run back to back on it:
stock RunInference, `mnistkit predict --runtime tensorflow`, `--runtime openvino`, and the
no-Beam ceiling on OpenVINO; ratios to stock and to the ceiling. Writes results/matrix.json.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from mnistkit.model_export.runtime import DEFAULTS
from mnistkit.pipeline.runners import RunnerConfig

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
    cpu_s: float
    # CPU time other processes took on this machine during the run: a noisy neighbour shows here.
    others_cpu_s: float
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


def _busy_cpu_s() -> float:
    """CPU time all processes have used since boot (user + nice + system), from /proc/stat."""
    with open("/proc/stat") as f:
        user, nice, system = (int(v) for v in f.readline().split()[1:4])
    return (user + nice + system) / os.sysconf("SC_CLK_TCK")


IDLE_WAIT_S = [600.0]  # --idle-wait


def wait_until_idle(max_wait_s: float | None = None) -> None:
    """Wait (up to `max_wait_s`) until the machine is at least 90 % idle, so runs are not shared."""
    deadline = time.monotonic() + (IDLE_WAIT_S[0] if max_wait_s is None else max_wait_s)
    while time.monotonic() < deadline:
        busy, wall = _busy_cpu_s(), time.monotonic()
        time.sleep(3)
        if (_busy_cpu_s() - busy) / ((time.monotonic() - wall) * (os.cpu_count() or 1)) < 0.1:
            return
    print("warning: the machine never went idle; timings include other jobs' load", flush=True)


def timed(name: str, label: str, rows: int, command: list[str]) -> Run:
    """Run `command`, sampling its process tree's memory; fails loudly if the command fails."""
    wait_until_idle()
    print(f"--- {name}: {' '.join(command)}", flush=True)
    # Every variant, the baselines in .venv-bench included, runs with the kit's TensorFlow settings
    # (oneDNN on): the comparison is between pipelines, not between TensorFlow configurations.
    env = {**DEFAULTS, **os.environ}
    busy_before, own_before = _busy_cpu_s(), _children_cpu_s()
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
    cpu = _children_cpu_s() - own_before
    others = max(0.0, _busy_cpu_s() - busy_before - cpu)
    peak = max((rss for _, rss in timeline), default=0.0)
    print(f"{name}: {rows} rows in {wall:.1f} s = {rows / wall:,.0f} rows/s, CPU {cpu:.1f} s "
          f"(others {others:.1f} s), peak RSS {peak:,.0f} MB", flush=True)  # fmt: skip
    return Run(name, label, rows, wall, peak, cpu, others, timeline)


def _children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def prepare_model(work: Path, model: str | None) -> str:
    """The version dir to serve: `model`'s newest, or a small model trained once on the MNIST sample."""
    from mnistkit.model_export.export import export_saved_model, latest_version

    if model is None:
        model = str(work / "model")
        if not Path(model).exists():
            from mnistkit.model_export.train import TrainConfig, train

            trained = train(TrainConfig(data_dir=str(SAMPLE), output_dir=work / "train", epochs=3, verbose=0))
            export_saved_model(trained.model, model, {"dataset": "mnist", "test_accuracy": trained.test_accuracy})
    return str(latest_version(model))


def rows_file(work: Path, rows: int, fmt: str) -> Path:
    """`rows` test images (the sample's 1,000 repeated with fresh keys) as text, or as TFRecord shards."""
    from mnistkit.pipeline.io.formats import convert

    shards = TFRECORD_SHARDS if fmt == "tfrecord" else 1
    path = work / f"rows-{rows}.{'txt' if fmt == 'text' else fmt}"
    pattern = work / f"rows-{rows}-*-of-{shards:05d}.{fmt}" if shards > 1 else path
    if not any(work.glob(pattern.name)):
        idx = str(SAMPLE / "t10k-images-idx3-ubyte.gz")
        convert(idx, str(path), fmt, repeat=-(-rows // IMAGES_PER_REPEAT), shards=shards)
    return pattern


def _predict_command(model: str, input_uri: Path, output: Path) -> list[str]:
    return [str(Path(sys.executable).with_name("mnistkit")), "predict", "--model", model, "--input", str(input_uri),
            "--output", str(output), "--overwrite"]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--memory-rows", type=int, default=1_000_000, help="0 skips the memory run")
    parser.add_argument("--model", help="an export dir; default: train a small one on the MNIST sample")
    parser.add_argument("--work-dir", type=Path, default=REPO / "benchmarks" / "out")
    parser.add_argument("--per-row-rows", type=int, default=10_000, help="rows for variant a")
    parser.add_argument("--variants", default="a,a2,b,c,c-tfrecord,d")
    parser.add_argument("--bench-python", default=str(REPO / ".venv-bench" / "bin" / "python"))
    parser.add_argument("--report-only", action="store_true", help="redraw the table and charts from the last results")
    parser.add_argument("--matrix", help="INPUT:ROWS,... (INPUT seed, short or tfrecord): run the runtime matrix")
    parser.add_argument("--matrix-variants", default="stock,tensorflow,openvino,ceiling")
    parser.add_argument("--seed-dir", type=Path, help="holds seed-<rows>.txt (the original study's text format)")
    parser.add_argument("--idle-wait", type=float, default=600, help="longest wait for an idle machine per run")
    parser.add_argument("--matrix-report", action="store_true", help="redraw the matrix table and charts")
    parser.add_argument("--matrix-merge", action="store_true", help="replace only the cells run now in matrix.json")
    args = parser.parse_args()
    IDLE_WAIT_S[0] = args.idle_wait
    if args.matrix_report:
        matrix_report(json.loads((RESULTS / "matrix.json").read_text()))
        return
    if args.matrix:
        args.work_dir.mkdir(parents=True, exist_ok=True)
        matrix(args)
        return
    if args.report_only:
        saved = json.loads((RESULTS / "predict.json").read_text())
        names = Run.__dataclass_fields__
        runs = [Run(**{k: v for k, v in run.items() if k in names}) for run in saved["runs"]]
        memory = Run(**{k: v for k, v in saved["memory"].items() if k in names}) if "memory" in saved else None
        report(runs, memory, saved.get("model_only_rows_per_s"))
        return
    args.work_dir.mkdir(parents=True, exist_ok=True)
    work = args.work_dir
    model = prepare_model(work, args.model)
    text, tfrecord = rows_file(work, args.rows, "text"), rows_file(work, args.rows, "tfrecord")
    rows = -(-args.rows // IMAGES_PER_REPEAT) * IMAGES_PER_REPEAT
    # The baselines get worker processes: per-row Python holds the GIL, so threads would starve them.
    beam_flags = RunnerConfig(running_mode="multi_processing").flags()
    baseline = [str(REPO / "benchmarks" / "baselines.py")]
    plan = {
        "a": ("per-row DoFn, Keras call (original sample)", [sys.executable, *baseline, "per-row"]),
        "a2": ("per-row DoFn, signature call", [sys.executable, *baseline, "per-row-signature"]),
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
            source, count = (text, rows)
            if name == "a":
                source, count = rows_file(work, args.per_row_rows, "text"), args.per_row_rows
            io = ["--input", str(source), "--model", model, "--output", str(work / name)]
            runs.append(timed(name, label, count, [*command, *io, *beam_flags]))
    memory = None
    if args.memory_rows:
        command = _predict_command(model, rows_file(work, args.memory_rows, "text"), work / "memory")
        memory = timed("memory", "mnistkit predict (text)", args.memory_rows, command)
    report(runs, memory, model_only_rate(model))


def matrix_input(args: argparse.Namespace, kind: str, rows: int) -> Path:
    if kind == "seed":
        return args.seed_dir / f"seed-{rows}.txt"
    shards = args.seed_dir and sorted(args.seed_dir.glob(f"tfr-{rows // 1000}k-*.tfrecord"))
    if kind == "tfrecord" and shards:
        return args.seed_dir / f"tfr-{rows // 1000}k-*-of-{len(shards):05d}.tfrecord"
    return rows_file(args.work_dir, rows, "text" if kind == "short" else "tfrecord")


def _with_ratios(results: list[dict]) -> list[dict]:
    """Each run with its rows/s over the stock and the ceiling run of the same input and size."""
    by_cell = {(r["input"], r["rows"], r["variant"]): r for r in results}
    for r in results:
        for ref in ("stock", "ceiling"):
            other = by_cell.get((r["input"], r["rows"], ref))
            r.pop(f"vs_{ref}", None)
            if other:
                r[f"vs_{ref}"] = r["rows_per_s"] / other["rows_per_s"]
    return results


def matrix(args: argparse.Namespace) -> None:
    """Every --matrix-variants variant on every --matrix input, back to back; ratios per input.

    With --matrix-merge the runs replace their cells in results/matrix.json, the others stay.
    """
    model = prepare_model(args.work_dir, args.model)
    baseline = [str(REPO / "benchmarks" / "baselines.py")]
    beam_flags = RunnerConfig(running_mode="multi_processing").flags()
    kept = json.loads((RESULTS / "matrix.json").read_text()) if args.matrix_merge else []
    results: list[dict] = []
    for item in args.matrix.split(","):
        kind, rows = item.split(":")
        source, count = matrix_input(args, kind, int(rows)), int(rows)
        runs: dict[str, Run] = {}
        for variant in args.matrix_variants.split(","):
            out = args.work_dir / f"m-{kind}-{rows}-{variant}"
            if variant == "stock":
                if kind == "tfrecord" or not Path(args.bench_python).exists():
                    continue  # the stock strategy reads text only, and needs .venv-bench
                command = [args.bench_python, *baseline, "stock", "--input", str(source), "--model", model,
                           "--output", str(out), *beam_flags]  # fmt: skip
            elif variant == "ceiling":
                command = [sys.executable, *baseline, "ceiling", "--input", str(source), "--model", model,
                           "--output", str(out), "--runtime", "openvino"]  # fmt: skip
            else:
                command = [*_predict_command(model, source, out), "--runtime", variant]
            runs[variant] = timed(f"{kind}-{rows}-{variant}", variant, count, command)
        for variant, run in runs.items():
            results.append(asdict(run) | {"input": kind, "variant": variant, "rows_per_s": run.rows_per_s})
        # Saved after each input, so a long run that stops keeps what it measured.
        measured = {(r["input"], r["rows"], r["variant"]) for r in results}
        merged = [r for r in kept if (r["input"], r["rows"], r["variant"]) not in measured] + results
        order = {name: i for i, name in enumerate(("seed", "short", "tfrecord", "stock", "tensorflow", "openvino"))}
        merged.sort(key=lambda r: (order.get(r["input"], 9), r["rows"], order.get(r["variant"], 9)))
        RESULTS.mkdir(parents=True, exist_ok=True)
        (RESULTS / "matrix.json").write_text(json.dumps(_with_ratios(merged), indent=1) + "\n")
    matrix_report(json.loads((RESULTS / "matrix.json").read_text()))


def matrix_report(results: list[dict]) -> None:
    """The matrix as a markdown table, results/matrix.png (rows/s) and matrix-memory.png (the biggest run's RSS)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    print("\n| input | rows | variant | wall s | rows/s | vs stock | vs ceiling | CPU s | others' CPU s | peak RSS MB |"
          "\n|---|---:|---|---:|---:|---:|---:|---:|---:|---:|")  # fmt: skip
    for r in results:
        ratios = " | ".join(f"{r[k]:.2f}×" if k in r else "–" for k in ("vs_stock", "vs_ceiling"))
        print(f"| {r['input']} | {r['rows']:,} | {r['variant']} | {r['wall_s']:.1f} | {r['rows_per_s']:,.0f} | "
              f"{ratios} | {r['cpu_s']:.1f} | {r['others_cpu_s']:.1f} | {r['peak_rss_mb']:,.0f} |")  # fmt: skip
    inputs = list(dict.fromkeys(r["input"] for r in results))
    variants = list(dict.fromkeys(r["variant"] for r in results))
    figure, axes = plt.subplots(1, len(inputs), figsize=(4.2 * len(inputs), 3.8), sharey=True, squeeze=False)
    for axis, kind in zip(axes[0], inputs, strict=True):
        sizes = sorted({r["rows"] for r in results if r["input"] == kind})
        width = 0.8 / len(variants)
        for v, variant in enumerate(variants):
            rates = {r["rows"]: r["rows_per_s"] for r in results if r["input"] == kind and r["variant"] == variant}
            xs = [i + (v - (len(variants) - 1) / 2) * width for i, size in enumerate(sizes) if size in rates]
            axis.bar(xs, [rates[size] for size in sizes if size in rates], width, label=variant)
        axis.set_xticks(range(len(sizes)), [f"{size:,}" for size in sizes])
        axis.set_yscale("log")
        axis.set_title(f"{kind} rows")
        axis.set_xlabel("rows in the run")
    axes[0][0].set_ylabel("rows/s, process wall (log)")
    axes[0][-1].legend(fontsize="small")
    figure.suptitle(f"mnistkit predict vs stock RunInference vs the no-Beam ceiling, {os.cpu_count()} cores")
    figure.tight_layout()
    figure.savefig(RESULTS / "matrix.png", dpi=120)
    biggest = [r for r in results if r["rss_timeline"] and r["rows"] == max(x["rows"] for x in results)]
    if biggest:
        figure, axis = plt.subplots(figsize=(8, 3))
        for r in biggest:
            times, rss = zip(*r["rss_timeline"], strict=True)
            axis.plot(times, rss, label=f"{r['input']} {r['variant']}")
        axis.set_xlabel("seconds")
        axis.set_ylabel("RSS of all processes, MB")
        axis.set_ylim(bottom=0)
        axis.legend(fontsize="small", ncol=2)
        axis.set_title(f"Resident memory over {biggest[0]['rows']:,}-row runs")
        figure.tight_layout()
        figure.savefig(RESULTS / "matrix-memory.png", dpi=120)


def model_only_rate(model: str) -> float:
    """Rows/s of the model alone (baselines.py model-only): the limit no pipeline can pass."""
    wait_until_idle()
    command = [sys.executable, str(REPO / "benchmarks" / "baselines.py"), "model-only", "--input", "-",
               "--model", model, "--output", "-"]  # fmt: skip
    output = subprocess.run(command, cwd=REPO, capture_output=True, text=True, check=True).stdout
    rate = float(output.split("steady state:")[1].split()[0].replace(",", ""))
    print(f"model-only: {rate:,.0f} rows/s", flush=True)
    return rate


def report(runs: list[Run], memory: Run | None, model_only: float | None) -> None:
    import matplotlib
    import matplotlib.ticker

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    RESULTS.mkdir(parents=True, exist_ok=True)
    by_name = {run.name: run for run in runs}
    data = {"runs": [asdict(run) | {"rows_per_s": run.rows_per_s} for run in runs], "model_only_rows_per_s": model_only}
    if memory:
        data["memory"] = asdict(memory) | {"rows_per_s": memory.rows_per_s}
    (RESULTS / "predict.json").write_text(json.dumps(data, indent=1) + "\n")

    print("\n| variant | rows | wall s | rows/s | vs a | vs a2 | vs b | CPU s | peak RSS MB |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for run in runs:
        ratios = [
            f"{run.rows_per_s / by_name[ref].rows_per_s:.1f}×" if ref in by_name else "–" for ref in ("a", "a2", "b")
        ]
        print(f"| ({run.name}) {run.label} | {run.rows:,} | {run.wall_s:.1f} | {run.rows_per_s:,.0f} | "
              f"{' | '.join(ratios)} | {run.cpu_s:.0f} | {run.peak_rss_mb:,.0f} |")  # fmt: skip
    if model_only:
        print(f"\nThe model alone, in memory, after warm-up: {model_only:,.0f} rows/s")
    if memory:
        print(f"\nMemory run: {memory.rows:,} rows in {memory.wall_s:.0f} s ({memory.rows_per_s:,.0f} rows/s), "
              f"peak RSS {memory.peak_rss_mb:,.0f} MB")  # fmt: skip

    figure, axis = plt.subplots(figsize=(8, 3.8))
    labels = [f"({run.name}) {run.label}" for run in runs]
    bars = axis.barh(labels[::-1], [run.rows_per_s for run in runs][::-1], color="#4c72b0")
    axis.bar_label(bars, labels=[f"{run.rows_per_s:,.0f}" for run in runs][::-1], padding=3)
    axis.set_xscale("log")
    axis.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    if model_only:
        axis.axvline(model_only, color="#c44e52", linestyle="--", label=f"the model alone: {model_only:,.0f} rows/s")
        axis.legend(loc="upper right", fontsize="small")
    axis.set_xlabel("rows per second, end to end (log scale)")
    axis.set_title(f"Batch prediction of {runs[-1].rows:,} MNIST rows, {os.cpu_count()} cores")
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
