"""Spellings of a text value at the edge of what a number is: the fast path (pyarrow's CSV reader)
and the reference parser must give every one the same outcome."""

from __future__ import annotations

import pytest

from mnistkit.pipeline.io.parsing import parse_text
from mnistkit.pipeline.io.reference import reference_record

SPELLINGS = [
    b"nan(123)", b"nan()", b"NaN(abc_1)", b"-nan(0x1)", b" nan(7) ", b"nan(", b"nan(1 2)", b"nan(-)",
    b"nan(.)", b"nan)", b"inf(1)", b"nanq", b"1e999", b"-inf", b"Infinity", b"0x1p-2", b"1_0", b"",
]  # fmt: skip


@pytest.mark.parametrize("value", SPELLINGS, ids=[s.decode() or "empty" for s in SPELLINGS])
def test_the_fast_path_and_the_reference_agree_on_a_value(value):
    line = b"7:" + b",".join([value] + [b"0.5"] * 783)
    batch, dead = parse_text([line], "s")
    expected = reference_record("text", line)[0]
    got = dead[0].reason if dead else int(batch.keys[0])
    assert got == expected


def test_c_nan_spellings_are_non_finite_not_non_numeric():
    line = b"7:nan(123)," + b",".join([b"0.5"] * 783)
    assert reference_record("text", line)[0].value == "non_finite"
