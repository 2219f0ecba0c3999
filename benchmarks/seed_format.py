"""Write MNIST rows in the original Dataflow sample's text format (the "seed format"), for bench_predict.py.

Each row is `key:v1,...,v784`, every value `'%.12g' % (np.float32(p) * np.float32(1/255))` for
the pixel p in 0..255, the integers printed `0.0` and `1.0`: ~4.7 KB a row, what users bring.
Keys count up from 1; rows cycle through the images.

    .venv/bin/python benchmarks/seed_format.py --out-dir ../scratch/speed/data --rows 1000 100000 1000000

Pixels take 256 values, so the 256 strings are formatted once and each distinct image's values
once (`'%.12g' %` per value would take minutes for 1M rows).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from bench_predict import SAMPLE

from mnistkit.model_export.datasets import load_dataset


def seed_value(pixel: int) -> str:
    """The seed format's text for one pixel value."""
    if pixel in (0, 255):
        return f"{pixel // 255}.0"
    return "%.12g" % (np.float32(pixel) * np.float32(1 / 255))


def write_seed_file(path: Path, images: np.ndarray, rows: int, chunk: int = 10_000) -> int:
    """`rows` seed-format lines in `path`; returns the bytes written."""
    table = [seed_value(p).encode() for p in range(256)]
    values = [b",".join([table[p] for p in row]) for row in images.reshape(len(images), -1).tolist()]
    written = 0
    with open(path, "wb") as f:
        for start in range(0, rows, chunk):
            lines = (b"%d:%s" % (i + 1, values[i % len(values)]) for i in range(start, min(start + chunk, rows)))
            block = b"\n".join(lines) + b"\n"
            f.write(block)
            written += len(block)
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, default=SAMPLE, help="the MNIST IDX files (default: the sample)")
    parser.add_argument("--out-dir", type=Path, required=True)
    parser.add_argument("--rows", type=int, nargs="+", default=[1000, 100_000, 1_000_000])
    args = parser.parse_args()
    # The issue's own examples of the spelling.
    assert seed_value(1) == "0.00392156885937" and seed_value(254) == "0.996078491211"
    images, _ = load_dataset("mnist", "test", args.data_dir)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    for rows in args.rows:
        path = args.out_dir / f"seed-{rows}.txt"
        size = write_seed_file(path, images, rows)
        print(f"{path}: {rows:,} rows, {size / 1e6:.1f} MB, {size / rows:,.0f} B/row")


if __name__ == "__main__":
    main()
