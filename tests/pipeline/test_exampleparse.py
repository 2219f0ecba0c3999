"""The compiled TFRecord scanner against the protobuf path: the same rows, the same pixels, the same
dead letters, on Examples in every wire spelling protobuf accepts, with extra features, and on
random corruptions of them; and it decides the layouts writers produce by itself."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mnistkit.model_export.model import NUM_PIXELS
from mnistkit.pipeline.io import exampleparse, parsing
from mnistkit.pipeline.io.compiled import LazyKernel
from mnistkit.pipeline.io.example_proto import encode_example

numba = pytest.importorskip("numba")


@pytest.fixture(scope="module")
def kernel():
    return exampleparse.warm_up()


def _scanner(monkeypatch, kernel) -> None:
    scanner = LazyKernel(exampleparse.warm_up, "TFRecord")
    scanner.kernel, scanner.unavailable = kernel, kernel is None
    monkeypatch.setattr(exampleparse, "_SCANNER", scanner)


def _both(monkeypatch, kernel, records: list[bytes]) -> tuple:
    """parse_tfrecord with the scanner loaded, and without it (protobuf alone)."""
    _scanner(monkeypatch, kernel)
    fast = parsing.parse_tfrecord(records, "src")
    _scanner(monkeypatch, None)
    return fast, parsing.parse_tfrecord(records, "src")


def _same(fast, reference) -> None:
    (batch, dead), (expected, expected_dead) = fast, reference
    np.testing.assert_array_equal(batch.keys, expected.keys)
    assert batch.images.tobytes() == expected.images.tobytes()
    letters = sorted((d.reason, d.raw, d.detail) for d in dead)
    assert letters == sorted((d.reason, d.raw, d.detail) for d in expected_dead)


# The wire format by hand, so tests can spell what protobuf's own writer never does.
def varint(n: int) -> bytes:
    n &= 2**64 - 1
    out = bytearray()
    while True:
        low, n = n & 0x7F, n >> 7
        out.append(low | 0x80 if n else low)
        if not n:
            return bytes(out)


def field(number: int, payload: bytes) -> bytes:
    return varint(number << 3 | 2) + varint(len(payload)) + payload


def int64s(values: list[int], packed: bool) -> bytes:
    if packed:
        return field(3, field(1, b"".join(map(varint, values))))
    return field(3, b"".join(varint(1 << 3) + varint(v) for v in values))


def floats(values: list[float], packed: bool) -> bytes:
    raw = [np.float32(v).tobytes() for v in values]
    return field(2, field(1, b"".join(raw)) if packed else b"".join(b"\x0d" + r for r in raw))


def byte_values(values: list[bytes]) -> bytes:
    return field(1, b"".join(field(1, v) for v in values))


def entry(name: bytes, feature: bytes) -> bytes:
    return field(1, field(1, name) + field(2, feature))


def example(entries: list[bytes]) -> bytes:
    return field(1, b"".join(entries))


EXTRAS = [
    entry(b"label", int64s([7], packed=True)),
    entry(b"label", int64s([3, 4], packed=False)),
    entry(b"weights", floats([0.5, 2.0], packed=True)),
    entry(b"weights", floats([1.5], packed=False)),
    entry(b"name", byte_values([b"a", b"", b"xyz"])),
    entry(b"empty", b""),
    entry(b"empty_list", field(1, b"")),
    NON_ASCII := entry(b"\xc3\xa9t\xc3\xa9", int64s([1], packed=True)),  # protobuf decides these
    entry(b"keys", int64s([1], packed=True)),
    entry(b"imag", byte_values([b"x"])),
]


@st.composite
def examples(draw) -> bytes:
    key = draw(st.integers(-(2**63), 2**63 - 1))
    pixels = draw(st.binary(min_size=NUM_PIXELS, max_size=NUM_PIXELS))
    entries = [entry(b"key", int64s([key], draw(st.booleans()))), entry(b"image", byte_values([pixels]))]
    entries += draw(st.lists(st.sampled_from(EXTRAS), max_size=3))
    return example(draw(st.permutations(entries)))


@st.composite
def corrupted(draw, record: bytes) -> bytes:
    for _ in range(draw(st.integers(1, 3))):
        at = draw(st.integers(0, len(record)))
        end = draw(st.integers(at, min(len(record), at + 8)))
        piece = draw(st.one_of(st.binary(max_size=4), st.sampled_from([b"\x0a", b"\x12", b"\x1a", b"\x08", b"\x80"])))
        record = record[:at] + piece + record[end:]
    return record


SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@SETTINGS
@given(data=st.data())
def test_scanner_and_protobuf_agree_on_valid_examples_in_any_spelling(monkeypatch, kernel, data):
    records = data.draw(st.lists(examples(), min_size=1, max_size=6))
    fast, reference = _both(monkeypatch, kernel, records)
    _same(fast, reference)
    assert len(reference[0]) == len(records)
    # ...and the scanner decided them itself, but for the non-ASCII feature name it leaves to protobuf.
    decided = exampleparse._run(kernel, records).ok
    assert decided.tolist() == [NON_ASCII not in record for record in records]


@SETTINGS
@given(data=st.data())
def test_scanner_and_protobuf_agree_on_corrupted_examples(monkeypatch, kernel, data):
    records = data.draw(st.lists(examples(), min_size=1, max_size=4))
    records = [data.draw(corrupted(r)) if data.draw(st.booleans()) else r for r in records]
    _same(*_both(monkeypatch, kernel, records))


def _pixels(seed: int) -> bytes:
    return np.random.default_rng(seed).integers(0, 256, NUM_PIXELS, dtype=np.uint8).tobytes()


@pytest.mark.parametrize(
    "record",
    [
        example([entry(b"key", int64s([1], True) + int64s([2], True)), entry(b"image", byte_values([_pixels(0)]))]),
        example([entry(b"key", int64s([1], True)), entry(b"key", int64s([2], True)),
                 entry(b"image", byte_values([_pixels(1)]))]),
        example([entry(b"key", int64s([1, 2], True)), entry(b"image", byte_values([_pixels(2)]))]),
        example([entry(b"key", floats([1.0], True)), entry(b"image", byte_values([_pixels(3)]))]),
        example([entry(b"key", int64s([5], True)), entry(b"image", byte_values([_pixels(4)[:-1]]))]),
        example([entry(b"key", int64s([5], True)), entry(b"image", byte_values([_pixels(5), b"x"]))]),
        example([entry(b"key", int64s([5], True))]),
        example([entry(b"image", byte_values([_pixels(6)]))]),
        example([entry(b"key", int64s([5], True)), entry(b"image", byte_values([_pixels(7)]))]) + b"\x00",
        b"\x0a\x85\x80\x00" + example([])[2:],  # a redundant continuation byte in a length
        b"",
    ],
    ids=["two-lists", "duplicate-key", "two-keys", "float-key", "short-image", "two-images", "no-image", "no-key",
         "trailing-byte", "overlong-varint", "empty"],
)  # fmt: skip
def test_every_unusual_record_gets_the_protobuf_verdict(monkeypatch, kernel, record):
    good = encode_example(9, _pixels(9))
    _same(*_both(monkeypatch, kernel, [good, record, good]))
    assert not exampleparse._run(kernel, [record]).ok[0]


def test_the_scanner_decides_the_layouts_writers_produce(kernel):
    from tensorflow.core.example.example_pb2 import Example

    written_by_tensorflow = Example()
    written_by_tensorflow.features.feature["label"].int64_list.value.append(3)
    written_by_tensorflow.features.feature["image"].bytes_list.value.append(_pixels(11))
    written_by_tensorflow.features.feature["key"].int64_list.value.append(-(2**63))
    records = [
        encode_example(0, _pixels(10)),
        encode_example(2**63 - 1, _pixels(12), {"label": 4}),
        written_by_tensorflow.SerializeToString(),
        example([entry(b"image", byte_values([_pixels(13)])), entry(b"key", int64s([42], packed=False))]),
    ]
    scan = exampleparse._run(kernel, records)
    assert scan.ok.all()
    assert scan.keys.tolist() == [0, 2**63 - 1, -(2**63), 42]
    assert [row.tobytes() for row in scan.pixels] == [_pixels(i) for i in (10, 12, 11, 13)]


def test_a_process_loads_the_scanner_only_after_its_warm_up(monkeypatch):
    monkeypatch.setattr(exampleparse, "_SCANNER", LazyKernel(exampleparse.warm_up, "TFRecord"))
    monkeypatch.setattr(exampleparse, "SCANNER_AFTER_ROWS", 5)
    records = [encode_example(k, _pixels(k)) for k in range(3)]
    assert exampleparse.scan_examples(records) is None and exampleparse.scan_examples(records) is None
    scan = exampleparse.scan_examples(records)
    assert scan is not None and scan.ok.all() and scan.keys.tolist() == [0, 1, 2]


def test_a_big_input_loads_its_formats_scanner_before_the_first_batch(monkeypatch):
    from mnistkit.pipeline.io import textparse

    loads: list[str] = []
    for module, name in ((textparse, "text"), (exampleparse, "tfrecord")):
        monkeypatch.setattr(module, "_SCANNER", LazyKernel(lambda name=name: loads.append(name) or "kernel", name))
    parsing.load_fast_path("tfrecord", parsing.LOAD_FAST_PATH_BYTES - 1)
    parsing.load_fast_path("jsonl", 10 * parsing.LOAD_FAST_PATH_BYTES)
    assert loads == []
    parsing.load_fast_path("tfrecord", parsing.LOAD_FAST_PATH_BYTES)
    parsing.load_fast_path("text", 10 * parsing.LOAD_FAST_PATH_BYTES)
    parsing.load_fast_path("text", 10 * parsing.LOAD_FAST_PATH_BYTES)  # once per process
    assert loads == ["tfrecord", "text"]
    assert exampleparse._SCANNER.get(1, exampleparse.SCANNER_AFTER_ROWS) == "kernel"
