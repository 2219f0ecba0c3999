"""Model calls per second of TensorFlow and PyTorch exports of the same networks, on every runtime
that serves them, side by side in one run on the same rows.

    .venv/bin/python benchmarks/bench_frameworks.py [--rows 20000] [--batch 256] [--rounds 5] [--threads 1]

Variants, each loaded through the kit's own `load_runtime` (what a worker calls):
  tensorflow  the Keras CNN's SavedModel on the TensorFlow runtime
  openvino    the same SavedModel on OpenVINO (its IR, written at export)
  pytorch     the PyTorch CNN (model_export/torch_models.py, the same layers) on the PyTorch runtime
  openvino    the same PyTorch export on OpenVINO (the IR written from its TorchScript program)
  and the recipe's MLP (PyTorch only) on both of its runtimes.
The networks are freshly initialised: the cost of a call does not depend on the weights. Rounds
interleave the variants, so a neighbour's load on the shared machine hits them all alike; the
best round of each counts, and the ratios to the TensorFlow CNN are the numbers to compare.
Writes benchmarks/results/frameworks.json and prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from mnistkit.model_export.runtime import configure_tensorflow_env

RESULTS = Path(__file__).resolve().parent / "results"


def exports(work: Path) -> dict[str, str]:
    """Version dirs of the Keras CNN, the PyTorch CNN and the PyTorch MLP."""
    from mnistkit.model_export.export import export_saved_model
    from mnistkit.model_export.model import build_model
    from mnistkit.model_export.torch_export import export_torch_model
    from mnistkit.model_export.torch_models import build_torch_model

    return {
        "tf-cnn": str(export_saved_model(build_model(), work / "tf-cnn")),
        "torch-cnn": str(export_torch_model(build_torch_model("cnn"), "cnn", work / "torch-cnn")),
        "torch-mlp": str(export_torch_model(build_torch_model("mlp"), "mlp", work / "torch-mlp")),
    }


VARIANTS = [
    ("CNN", "TensorFlow", "tf-cnn", "tensorflow"),
    ("CNN", "TensorFlow", "tf-cnn", "openvino"),
    ("CNN", "PyTorch", "torch-cnn", "pytorch"),
    ("CNN", "PyTorch", "torch-cnn", "openvino"),
    ("MLP", "PyTorch", "torch-mlp", "pytorch"),
    ("MLP", "PyTorch", "torch-mlp", "openvino"),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="intra-op threads per model call")
    args = parser.parse_args()
    configure_tensorflow_env()
    from mnistkit.pipeline.inference.runtimes import RuntimeOptions, load_runtime

    rng = np.random.default_rng(0)
    images = rng.random((args.rows, 784), dtype=np.float32)
    keys = np.arange(args.rows, dtype=np.int64)
    with tempfile.TemporaryDirectory() as work:
        versions = exports(Path(work))
        loaded = [
            load_runtime(versions[export], RuntimeOptions(runtime, "f32", args.threads, 1))
            for _, _, export, runtime in VARIANTS
        ]
        best = [0.0] * len(VARIANTS)
        for _ in range(args.rounds):
            for i, runtime in enumerate(loaded):
                runtime.predict(keys[: args.batch], images[: args.batch])  # warm
                start = time.perf_counter()
                for s in range(0, args.rows, args.batch):
                    runtime.predict(keys[s : s + args.batch], images[s : s + args.batch])
                best[i] = max(best[i], args.rows / (time.perf_counter() - start))
    reference = best[0]
    rows = [
        {
            "network": net,
            "export": fw,
            "runtime": rt,
            "rows_per_s": round(rate),
            "vs_tf_cnn": round(rate / reference, 2),
        }
        for (net, fw, _, rt), rate in zip(VARIANTS, best, strict=True)
    ]
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "frameworks.json").write_text(json.dumps({"settings": vars(args), "results": rows}, indent=1) + "\n")
    print(f"| network | export | runtime | rows/s ({args.threads} thread, batches of {args.batch}) | vs TF CNN |")
    print("|---|---|---|---|---|")
    for row in rows:
        cells = (row["network"], row["export"], row["runtime"], f"{row['rows_per_s']:,}", f"{row['vs_tf_cnn']:.2f}×")
        print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
