"""File ranges: every line read exactly once whatever the cut points; TFRecord framing and its damage."""

from __future__ import annotations

import gzip
import random

import pytest

import mnistkit.pipeline.io.files as files
from mnistkit.pipeline.io.files import FileRange, InputError, frame_tfrecord, plan_ranges, read_range
from mnistkit.pipeline.rows import DeadLetter, RawBatch, Reason


def _read(file_range: FileRange, fmt: str, batch_rows: int = 3) -> tuple[list[bytes], list[DeadLetter]]:
    records, dead = [], []
    for item in read_range(file_range, fmt, batch_rows):
        if isinstance(item, RawBatch):
            assert 0 < len(item) <= batch_rows and item.source == file_range.path
            records += item.records
        else:
            dead.append(item)
    return records, dead


@pytest.fixture
def tiny_blocks(monkeypatch):
    """Blocks of 7 bytes, so lines and frames straddle block boundaries all the time."""
    monkeypatch.setattr(files, "_BLOCK_BYTES", 7)


def test_any_cut_points_read_every_line_exactly_once(tmp_path, tiny_blocks):
    rng = random.Random(3)
    path = tmp_path / "f.txt"
    for _ in range(300):
        lines = [bytes(rng.choice(b"ab:,") for _ in range(rng.randint(0, 12))) for _ in range(rng.randint(0, 25))]
        data = b"\n".join(lines) + rng.choice([b"", b"\n"])
        path.write_bytes(data)
        expected = data.split(b"\n")
        if data.endswith(b"\n") or not data:
            expected.pop()
        cuts = sorted({0, len(data), *(rng.randint(0, len(data)) for _ in range(rng.randint(0, 6)))})
        got = []
        for start, stop in zip(cuts, cuts[1:], strict=False):
            got += _read(FileRange(str(path), start, stop), "text")[0]
        assert got == expected, (data, cuts)


def test_crlf_line_ends_are_stripped(tmp_path):
    path = tmp_path / "f.txt"
    path.write_bytes(b"1:a\r\n2:b\r\n3:c")
    assert _read(FileRange(str(path)), "text")[0] == [b"1:a", b"2:b", b"3:c"]


def test_a_runaway_line_is_cut_without_buffering_it(tmp_path, tiny_blocks, monkeypatch):
    monkeypatch.setattr(files, "MAX_RECORD_BYTES", 10)
    path = tmp_path / "f.txt"
    path.write_bytes(b"short\n" + b"x" * 100 + b"\nafter\n")
    assert _read(FileRange(str(path)), "text")[0] == [b"short", b"x" * 11, b"after"]


def test_gzip_files_are_read_whole(tmp_path):
    path = tmp_path / "f.jsonl.gz"
    path.write_bytes(gzip.compress(b'{"a": 1}\n{"a": 2}\n'))
    assert plan_ranges(str(path), "jsonl", 8) == [FileRange(str(path))]
    assert _read(FileRange(str(path)), "jsonl")[0] == [b'{"a": 1}', b'{"a": 2}']


def test_plan_cuts_big_text_files_into_even_ranges(tmp_path, monkeypatch):
    monkeypatch.setattr(files, "_MIN_RANGE_BYTES", 100)
    (tmp_path / "a.txt").write_bytes(b"x\n" * 1000)
    (tmp_path / "b.txt").write_bytes(b"x\n" * 10)
    (tmp_path / "c.tfrecord").write_bytes(frame_tfrecord(b"x" * 3000))
    ranges = plan_ranges(str(tmp_path / "*.txt"), "text", 10)
    big = [r for r in ranges if r.path.endswith("a.txt")]
    assert [r.start for r in big][0] == 0 and big[-1].stop == 2000 and len(big) > 5
    assert all(a.stop == b.start for a, b in zip(big, big[1:], strict=False))
    assert [r for r in ranges if r.path.endswith("b.txt")] == [FileRange(str(tmp_path / "b.txt"))]
    assert plan_ranges(str(tmp_path / "*.tfrecord"), "tfrecord", 10) == [FileRange(str(tmp_path / "c.tfrecord"))]


def test_a_pattern_matching_nothing_is_a_clear_error(tmp_path):
    with pytest.raises(InputError, match="no input file matches"):
        plan_ranges(str(tmp_path / "missing-*.txt"), "text", 2)


PAYLOADS = [bytes([i]) * i for i in range(12)]


def test_tfrecord_frames_read_back_plain_and_gzipped(tmp_path, tiny_blocks):
    data = b"".join(frame_tfrecord(p) for p in PAYLOADS)
    (tmp_path / "r.tfrecord").write_bytes(data)
    (tmp_path / "r.tfrecord.gz").write_bytes(gzip.compress(data))
    for name in ("r.tfrecord", "r.tfrecord.gz"):
        assert _read(FileRange(str(tmp_path / name)), "tfrecord") == (PAYLOADS, [])


def test_tfrecord_damage_rejects_what_it_must_and_no_more(tmp_path, tiny_blocks, monkeypatch):
    frames = [bytearray(frame_tfrecord(p)) for p in PAYLOADS]
    frames[3][12] ^= 0xFF  # payload byte: only this record fails its CRC
    monkeypatch.setattr(files, "MAX_RECORD_BYTES", 10)  # payload 11 is now oversized
    path = tmp_path / "r.tfrecord"
    path.write_bytes(b"".join(frames) + frame_tfrecord(b"tail")[:-2])
    records, dead = _read(FileRange(str(path)), "tfrecord")
    assert records == [p for i, p in enumerate(PAYLOADS) if i not in (3, 11)]
    assert [(d.reason, d.detail.split(" at ")[0]) for d in dead] == [
        (Reason.BAD_TFRECORD, "data CRC mismatch"),
        (Reason.OVERSIZED_LINE, "11 bytes"),
        (Reason.BAD_TFRECORD, "truncated record"),
    ]


def test_a_corrupt_header_skips_the_rest_of_the_file(tmp_path):
    frames = [bytearray(frame_tfrecord(p)) for p in PAYLOADS[:4]]
    frames[2][0] ^= 0x01
    path = tmp_path / "r.tfrecord"
    path.write_bytes(b"".join(frames))
    records, dead = _read(FileRange(str(path)), "tfrecord")
    assert records == PAYLOADS[:2]
    assert len(dead) == 1 and "corrupt record header" in dead[0].detail
