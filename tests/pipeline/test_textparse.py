"""The compiled text scanner against the per-record parser: the same rows, bit-identical values, the
same dead letters, on random valid rows in many spellings and random corruptions of them."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mnistkit.model_export.model import NUM_PIXELS
from mnistkit.pipeline.io import parsing, textparse
from mnistkit.pipeline.io.compiled import LazyKernel

numba = pytest.importorskip("numba")


@pytest.fixture(scope="module")
def kernel():
    return textparse.warm_up()


@pytest.fixture
def scanner_on(monkeypatch, kernel):
    """parse_text with the scanner loaded, as in a process past its warm-up."""
    scanner = LazyKernel(textparse.warm_up, "text")
    scanner.kernel = kernel
    monkeypatch.setattr(textparse, "_SCANNER", scanner)


# How writers spell a pixel value: the seed's 12-digit form, the kit's, float32/float64 repr,
# fixed and exponent forms, leading/trailing zeros; all must come out as the same float32.
SPELLINGS = [
    lambda v: f"{v:.12g}",
    lambda v: repr(float(np.float32(v))),
    lambda v: repr(float(v)),
    lambda v: f"{v:.17g}",
    lambda v: f"{v:.6e}",
    lambda v: f"{v:.3E}",
    lambda v: f"{v:.20f}",
    lambda v: f"0{v:.9f}",
    lambda v: f"{v:.1f}",
    lambda v: f"{round(v)}",
]
# Corruptions of one row; each either breaks it or leaves it valid in an odd spelling.
CORRUPTIONS = [
    lambda row, r: b"",
    lambda row, r: b"   ",
    lambda row, r: row.replace(b":", b";", 1),
    lambda row, r: b":" + row.split(b":", 1)[1],
    lambda row, r: b"+" + row,
    lambda row, r: b"-" + row,
    lambda row, r: b" " + row,
    lambda row, r: b"9223372036854775807" + row[row.index(b":") :],
    lambda row, r: b"9223372036854775808" + row[row.index(b":") :],
    lambda row, r: b"99999999999999999999" + row[row.index(b":") :],
    lambda row, r: b"0000000000000000000042" + row[row.index(b":") :],
    lambda row, r: row + b",0.5",
    lambda row, r: row.rsplit(b",", 1)[0],
    lambda row, r: row + b" ",
    lambda row, r: row + b"\r",
    lambda row, r: row + b",",
    lambda row, r: row.replace(b",", b",,", 1),
    lambda row, r: _set(row, r, b"nan"),
    lambda row, r: _set(row, r, b"-inf"),
    lambda row, r: _set(row, r, b"1.0000001"),
    lambda row, r: _set(row, r, b"1e1"),
    lambda row, r: _set(row, r, b"-0.5"),
    lambda row, r: _set(row, r, b"-0.0"),
    lambda row, r: _set(row, r, b"+0.25"),
    lambda row, r: _set(row, r, b".5"),
    lambda row, r: _set(row, r, b"5."),
    lambda row, r: _set(row, r, b"0.5e"),
    lambda row, r: _set(row, r, b"5e-1"),
    lambda row, r: _set(row, r, b"1e-50"),
    lambda row, r: _set(row, r, b"1.4e-45"),
    lambda row, r: _set(row, r, b"25e-99999"),
    lambda row, r: _set(row, r, b"0.1234567890123456789012"),
    lambda row, r: _set(row, r, b"0x1p-3"),
    lambda row, r: _set(row, r, b"abc"),
    lambda row, r: _set(row, r, b'"0.5"'),
    lambda row, r: _set(row, r, b""),
    lambda row, r: _set(row, r, b" 0.5"),
    lambda row, r: _set(row, r, b"0.5 "),
    # Exactly halfway between two float32s: rounding via the double would round twice.
    lambda row, r: _set(row, r, b"0.5000000298023224"),
    lambda row, r: _set(row, r, b"0.50000002980232238"),
    lambda row, r: row[: int(r.integers(0, len(row)))],
    lambda row, r: _flip(row, r),
    lambda row, r: b"1:" + b",".join([b"0.5"] * (parsing.MAX_RECORD_BYTES // 4)),
]


def _set(row: bytes, rng: np.random.Generator, value: bytes) -> bytes:
    key, values = row.split(b":", 1)
    fields = values.split(b",")
    fields[int(rng.integers(0, len(fields)))] = value
    return key + b":" + b",".join(fields)


def _flip(row: bytes, rng: np.random.Generator) -> bytes:
    i = int(rng.integers(0, len(row)))
    return row[:i] + bytes([int(rng.integers(32, 127))]) + row[i + 1 :]


def _row(rng: np.random.Generator, spelling) -> bytes:
    levels = rng.integers(0, 256, NUM_PIXELS)
    values = np.where(rng.random(NUM_PIXELS) < 0.7, levels / 255, rng.random(NUM_PIXELS))
    key = int(rng.integers(0, 2**63 - 1))
    return f"{key}:".encode() + ",".join(spelling(float(v)) for v in values).encode()


def _same(fast, reference) -> None:
    (batch, dead), (expected, expected_dead) = fast, reference
    np.testing.assert_array_equal(batch.keys, expected.keys)
    assert batch.images.tobytes() == expected.images.tobytes()  # bit-identical, -0.0 included
    assert batch.sources == expected.sources
    letters = sorted((d.reason, d.raw, d.detail) for d in dead)
    assert letters == sorted((d.reason, d.raw, d.detail) for d in expected_dead)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    seed=st.integers(0, 2**32 - 1),
    spellings=st.lists(st.integers(0, len(SPELLINGS) - 1), min_size=1, max_size=6),
    corruptions=st.lists(st.tuples(st.integers(0, 5), st.integers(0, len(CORRUPTIONS) - 1)), max_size=4),
)
def test_scanner_and_per_record_parser_agree(scanner_on, seed, spellings, corruptions):
    rng = np.random.default_rng(seed)
    valid = [_row(rng, SPELLINGS[s]) for s in spellings]
    rows = list(valid)
    for at, kind in corruptions:
        rows[at % len(rows)] = CORRUPTIONS[kind](valid[at % len(rows)], rng)
    _same(parsing.parse_text(rows, "src"), parsing._parse_text_records(rows, "src"))


@pytest.mark.parametrize("kind", range(len(CORRUPTIONS)))
def test_every_corruption_gets_the_per_record_verdict(scanner_on, kind):
    rng = np.random.default_rng(kind)
    rows = [_row(rng, SPELLINGS[0]) for _ in range(3)]
    rows[1] = CORRUPTIONS[kind](rows[1], rng)
    _same(parsing.parse_text(rows, "src"), parsing._parse_text_records(rows, "src"))


def test_the_scanner_decides_common_spellings_itself(kernel):
    rng = np.random.default_rng(1)
    rows = [_row(rng, SPELLINGS[i]) for i in (0, 4, 5, 7, 8, 9)]  # <= 16 significant digits
    scan = textparse._run(kernel, rows)
    assert scan.ok.all()
    halfway = CORRUPTIONS[-5](rows[0], rng)
    assert not textparse._run(kernel, [halfway]).ok[0]


def test_a_process_loads_the_scanner_only_after_its_warm_up(monkeypatch):
    scanner = LazyKernel(textparse.warm_up, "text")
    monkeypatch.setattr(textparse, "_SCANNER", scanner)
    monkeypatch.setattr(textparse, "SCANNER_AFTER_ROWS", 5)
    rows = [_row(np.random.default_rng(0), SPELLINGS[0])] * 3
    assert textparse.scan_text(rows) is None and textparse.scan_text(rows) is None  # 6 rows parsed per record
    scan = textparse.scan_text(rows)
    assert scan is not None and scan.ok.all()
