"""The text format's fast path: one compiled pass over a batch of `key:v1,...,v784` lines.

parsing.parse_text hands every batch here first. The scanner accepts a row only when it can
decide it exactly, and leaves every other row (bad ones, and valid ones in unusual spellings) to
parsing.py's per-record path, which names the reasons: so the reasons, and the last word on any
row, stay in one place, and this module only ever says "valid, and these are its values".

Accepted here, in one pass over the bytes, with no Python per row or per value:
- key: 1 to 19 ASCII digits, at most int64's max, then `:`;
- 784 values `digits[.digits][(e|E)[+|-]digits]`, comma-separated, nothing else on the line, each
  in 0..1 once rounded to float32.
A value's digits give an integer mantissa m and a decimal exponent q; when m < 2**53 and |q| <= 22
both m and 10**|q| are exact doubles, so one IEEE multiply or divide gives the correctly rounded
double of the text. Rounding that double to float32 is the correctly rounded float32 (what
pyarrow's parser gives) except when the double lies exactly halfway between two float32s, or is
a float32 subnormal: those rows, and any value outside the exact range, go to the per-record path.

Why numba: the seed format (4.7 KB per row) ran at ~11 µs per row (~430 MB/s per core) against
~31 µs for pyarrow's CSV reader plus the per-record checks (docs/BENCHMARKS.md). Its cost is
start-up: `import numba` is ~0.3 s and loading the cached machine code ~0.2 s (compiling it,
with a cold cache, ~1 s). So a process uses the scanner only once it has parsed `SCANNER_AFTER_ROWS`
rows the per-record way: a 1,000-row local run never pays for it, a big one pays once per
process. The compiled code is cached on disk (`cache=True`: next to this file, or under
NUMBA_CACHE_DIR where that is read-only); worker images compile it at build time with
`python -m mnistkit.pipeline.io.textparse`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from mnistkit.model_export.model import NUM_PIXELS
from mnistkit.pipeline.io.compiled import LazyKernel, packed

__all__ = ["SCANNER_AFTER_ROWS", "load", "TextScan", "scan_text", "warm_up"]

# Rows a process parses the per-record way before it loads the scanner (see the module docstring):
# at ~20 µs saved per row, 0.5 s of loading pays for itself after ~25k rows.
SCANNER_AFTER_ROWS = 20_000
# Longer lines are never valid rows (parsing.MAX_RECORD_BYTES); the scanner leaves them alone.
_MAX_LINE_BYTES = 64 * 1024
_POW10 = np.array([10.0**i for i in range(23)], np.float64)  # all exact doubles


@dataclass(frozen=True)
class TextScan:
    """One batch scanned: `ok[i]` says row i was decided here, with `keys[i]` and `images[i]`."""

    ok: np.ndarray
    keys: np.ndarray
    images: np.ndarray


def _compile() -> Callable[..., None]:
    import numba

    @numba.njit(cache=True, nogil=True, boundscheck=False)
    def scan(buf, starts, lengths, pow10, keys, images, ok, as_float, as_bits):  # pragma: no cover - compiled
        for r in range(len(starts)):
            p = starts[r]
            end = p + lengths[r]
            ok[r] = False
            if lengths[r] > 65536:
                continue
            key = 0
            digits = 0
            while p < end and 48 <= buf[p] <= 57 and digits < 20:
                key = key * 10 + (buf[p] - 48)
                p += 1
                digits += 1
            # 19 digits past int64's max wrap to negative values, never to positive ones.
            if digits == 0 or digits > 19 or key < 0 or p >= end or buf[p] != 58:
                continue
            p += 1
            good = True
            for j in range(784):
                mantissa = 0
                significant = 0
                fraction = 0
                start = p
                while p < end and 48 <= buf[p] <= 57:
                    d = buf[p] - 48
                    if significant > 0 or d != 0:
                        significant += 1
                    if significant <= 18:
                        mantissa = mantissa * 10 + d
                    p += 1
                if p == start:
                    good = False
                    break
                if p < end and buf[p] == 46:
                    p += 1
                    start = p
                    while p < end and 48 <= buf[p] <= 57:
                        d = buf[p] - 48
                        if significant > 0 or d != 0:
                            significant += 1
                        if significant <= 18:
                            mantissa = mantissa * 10 + d
                        fraction += 1
                        p += 1
                    if p == start:
                        good = False
                        break
                exponent = 0
                if p < end and (buf[p] == 101 or buf[p] == 69):
                    p += 1
                    negative = False
                    if p < end and (buf[p] == 45 or buf[p] == 43):
                        negative = buf[p] == 45
                        p += 1
                    start = p
                    while p < end and 48 <= buf[p] <= 57 and p - start < 4:
                        exponent = exponent * 10 + (buf[p] - 48)
                        p += 1
                    if p == start or (p < end and 48 <= buf[p] <= 57):
                        good = False
                        break
                    if negative:
                        exponent = -exponent
                q = exponent - fraction
                if significant > 18 or mantissa >= 9007199254740992 or q > 22 or q < -22:
                    good = False
                    break
                value = mantissa * pow10[q] if q >= 0 else mantissa / pow10[-q]
                if value > 1.0 or (0.0 < value < 1.1754943508222875e-38):
                    good = False
                    break
                # A double exactly halfway between two float32s (low 29 mantissa bits 1000...0)
                # would be rounded twice; the per-record path rounds the text once.
                as_float[0] = value  # as_bits is the same 8 bytes, read as an integer
                if (as_bits[0] & 0x1FFFFFFF) == 0x10000000:
                    good = False
                    break
                images[r, j] = np.float32(value)
                if j < 783:
                    if p >= end or buf[p] != 44:
                        good = False
                        break
                    p += 1
                elif p != end:
                    good = False
            if good:
                keys[r] = key
                ok[r] = True

    return scan


_SCANNER = LazyKernel(lambda: warm_up(), "text")


def warm_up() -> Callable[..., None]:
    """Compile (or load from the on-disk cache) the scanner and run it once; returns it."""
    kernel = _compile()
    _run(kernel, [b"1:" + b",".join([b"0.5"] * NUM_PIXELS)])
    return kernel


def _run(kernel: Callable[..., None], lines: Sequence[bytes]) -> TextScan:
    n = len(lines)
    buf, starts, lengths = packed(lines, b"\n")
    keys = np.zeros(n, np.int64)
    images = np.empty((n, NUM_PIXELS), np.float32)
    ok = np.zeros(n, np.bool_)
    as_float = np.zeros(1, np.float64)
    kernel(buf, starts, lengths, _POW10, keys, images, ok, as_float, as_float.view(np.int64))
    return TextScan(ok, keys, images)


def scan_text(lines: Sequence[bytes]) -> TextScan | None:
    """Scan a batch of lines, or None while this process warms up (then parse them per record)."""
    kernel = _SCANNER.get(len(lines), SCANNER_AFTER_ROWS)
    return _run(kernel, lines) if kernel is not None and lines else None


def load() -> None:
    """Load the scanner now, whatever this process has parsed so far (no-op without numba)."""
    _SCANNER.load_now()


if __name__ == "__main__":
    # Compile the scanner into numba's cache, e.g. while building a worker image.
    warm_up()
    print("text scanner compiled and cached")
