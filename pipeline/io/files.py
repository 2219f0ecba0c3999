"""File inputs: expand a pattern, cut the files into byte ranges, read each range as RawBatches.

Beam's ReadFromText emits one element per line, and pays Beam's per-element cost (and, across a
shuffle, its encoding) for every row. Here a worker reads a whole byte range and emits batches of
lines, so Beam sees one element per few thousand rows and parsing stays vectorised. Only the
small range descriptions cross the Reshuffle; the bulk of the data is read where it is parsed.

Text and JSON lines split at any byte: a line belongs to the range its first byte falls in.
Compressed files and TFRecord files (whose framing cannot be re-synchronised) are read whole, so
write TFRecord inputs as several shards (`mnistkit convert --shards`) to use every worker.

Gzip and bzip2 files are decompressed here, by Python's gzip and bz2 readers, rather than by
Beam's CompressedFile: Beam inflates a whole compressed chunk at once (a 1 MB gzip of one 1 GiB
line peaked at ~2.9 GB RSS) and reads a truncated file as if it ended there. These readers inflate
at most what is asked for, and fail on a truncated or corrupt stream; that failure becomes one
dead letter naming the file (its rows before the damage still count) and the run goes on.
"""

from __future__ import annotations

import bz2
import gzip
import struct
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import BinaryIO

import google_crc32c
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from mnistkit.pipeline.io.parsing import MAX_RECORD_BYTES
from mnistkit.pipeline.rows import DeadLetter, RawBatch, Reason

__all__ = [
    "FileRange",
    "InputError",
    "frame_tfrecord",
    "is_compressed",
    "match_files",
    "plan_ranges",
    "read_range",
]

_BLOCK_BYTES = 4 << 20
# Ranges are small enough to balance workers, big enough that per-range overhead vanishes.
_MIN_RANGE_BYTES = 1 << 20
_MAX_RANGE_BYTES = 64 << 20
_TFRECORD_HEADER = struct.Struct("<QI")
_CRC = struct.Struct("<I")


class InputError(Exception):
    """An input pattern that matches nothing or cannot be read; the message says which."""


@dataclass(frozen=True)
class FileRange:
    """Bytes [start, stop) of one file; `stop` None means to the end (files read whole)."""

    path: str
    start: int = 0
    stop: int | None = None
    # The file's size, for progress: the range's share of the input is stop - start, or the rest.
    file_size: int = field(default=0, compare=False)

    @property
    def size(self) -> int:
        return (self.stop if self.stop is not None else self.file_size) - self.start


def match_files(pattern: str) -> list[tuple[str, int]]:
    """(path, size) of every file matching `pattern` (local path or gs://, globs allowed), sorted."""
    try:
        results = FileSystems.match([pattern])
    except Exception as exc:  # Beam wraps every filesystem failure in BeamIOError or ValueError
        raise InputError(f"cannot list {pattern}: {exc}") from exc
    files = sorted((m.path, m.size_in_bytes) for m in results[0].metadata_list)
    if not files:
        raise InputError(f"no input file matches {pattern}")
    return files


def plan_ranges(pattern: str, fmt: str, desired_splits: int) -> list[FileRange]:
    """Cut the files matching `pattern` into about `desired_splits` ranges of similar size."""
    files = match_files(pattern)
    total = sum(size for _, size in files)
    target = min(max(total // max(desired_splits, 1) + 1, _MIN_RANGE_BYTES), _MAX_RANGE_BYTES)
    ranges = []
    for path, size in files:
        if not _splittable(path, fmt) or size <= target:
            ranges.append(FileRange(path, file_size=size))
            continue
        pieces = -(-size // target)
        bounds = [size * i // pieces for i in range(pieces + 1)]
        ranges += [FileRange(path, start, stop, size) for start, stop in zip(bounds, bounds[1:], strict=False)]
    return ranges


def is_compressed(path: str) -> bool:
    return CompressionTypes.detect_compression_type(path) != CompressionTypes.UNCOMPRESSED


def _splittable(path: str, fmt: str) -> bool:
    return fmt != "tfrecord" and not is_compressed(path)


def read_range(file_range: FileRange, fmt: str, batch_rows: int) -> Iterator[RawBatch | DeadLetter]:
    """Records of one range in batches of at most `batch_rows`, and dead letters for corrupt frames
    and for a compressed file that is truncated or damaged (after the rows read before the damage)."""
    path = file_range.path
    compression = CompressionTypes.detect_compression_type(path)
    decoder = _DECODERS.get(compression)
    raw_type = CompressionTypes.AUTO if decoder is None else CompressionTypes.UNCOMPRESSED
    with FileSystems.open(path, compression_type=raw_type) as raw, decoder(raw) if decoder else raw as f:
        records = _tfrecords(f, path) if fmt == "tfrecord" else _lines(f, file_range)
        if decoder is not None:
            records = _until_damaged(records, path, compression)
        yield from _batched(records, path, batch_rows)


class _ShortReads:
    """A decompressing reader whose read(n) returns what one step inflates (read1).

    read(n) on gzip/bz2 files loops until it has n bytes, and a truncated stream raises there,
    dropping the bytes it had already inflated; the rows before the damage must still be read.
    """

    def __init__(self, f: gzip.GzipFile | bz2.BZ2File) -> None:
        self._f = f

    def read(self, n: int) -> bytes:
        return self._f.read1(n)

    def __enter__(self) -> _ShortReads:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._f.close()


_DECODERS = {
    CompressionTypes.GZIP: lambda raw: _ShortReads(gzip.GzipFile(fileobj=raw, mode="rb")),
    CompressionTypes.BZIP2: lambda raw: _ShortReads(bz2.BZ2File(raw, mode="rb")),
}


def _until_damaged(records: Iterable[bytes | DeadLetter], path: str, compression: str) -> Iterator[bytes | DeadLetter]:
    """`records`, then a dead letter if the decompressor finds the file truncated or corrupt."""
    count = 0
    try:
        for record in records:
            count += not isinstance(record, DeadLetter)
            yield record
    except (EOFError, zlib.error, gzip.BadGzipFile, OSError) as exc:
        # An OSError with an errno is the storage failing, not the data: let Beam retry the read.
        if type(exc) is OSError and exc.errno is not None:
            raise
        what = "truncated" if isinstance(exc, EOFError) else "corrupt"
        detail = f"{what} {compression} file ({exc}); the {count} records before the damage were read"
        yield DeadLetter.of(path, b"", Reason.CORRUPT_FILE, detail)


def _batched(records: Iterator[bytes | DeadLetter], source: str, batch_rows: int) -> Iterator[RawBatch | DeadLetter]:
    batch: list[bytes] = []
    for record in records:
        if isinstance(record, DeadLetter):
            yield record
            continue
        batch.append(record)
        if len(batch) >= batch_rows:
            yield RawBatch(source, batch)
            batch = []
    if batch:
        yield RawBatch(source, batch)


def _lines(f: BinaryIO, file_range: FileRange) -> Iterator[bytes]:
    """Lines (without "\\n" or "\\r\\n") that start inside the range.

    A line longer than MAX_RECORD_BYTES is cut there (the parser then rejects it as oversized) and
    the rest of it is skipped, so one runaway line cannot exhaust memory.
    """
    stop = file_range.stop
    position = file_range.start
    # Skip to the first line that starts inside the range: the line holding byte start-1 belongs
    # to the previous range.
    skipping = position > 0
    if skipping:
        position -= 1
        f.seek(position)
    pending = b""
    while True:
        block = f.read(_BLOCK_BYTES)
        if not block:
            break
        if skipping:
            cut = block.find(b"\n")
            if cut < 0:
                position += len(block)
                continue
            skipping = False
            position += cut + 1
            block = block[cut + 1 :]
        # Split the block itself: joining it to the partial line first would copy all of it.
        consumed = len(pending) + len(block)
        lines = block.split(b"\n")
        lines[0] = pending + lines[0]
        pending = lines.pop()
        consumed -= len(pending)
        if stop is not None and position + consumed > stop:
            # The range ends inside this block: only the lines that start before its end.
            kept = 0
            for line in lines:
                if position >= stop:
                    break
                position += len(line) + 1
                kept += 1
            yield from _without_cr(lines[:kept], block)
            return
        position += consumed
        yield from _without_cr(lines, block)
        if len(pending) > MAX_RECORD_BYTES:
            if stop is not None and position >= stop:
                return
            yield pending[: MAX_RECORD_BYTES + 1]
            position += len(pending)
            pending = b""
            skipping = True
    if pending and (stop is None or position < stop):
        yield pending[:-1] if pending.endswith(b"\r") else pending


def _without_cr(lines: list[bytes], block: bytes) -> list[bytes]:
    """`lines` with one trailing "\r" each removed (Windows line ends)."""
    if b"\r" not in block and not (lines and lines[0].endswith(b"\r")):  # lines[0] began in the last block
        return lines
    return [line[:-1] if line.endswith(b"\r") else line for line in lines]


def _tfrecords(f: BinaryIO, path: str) -> Iterator[bytes | DeadLetter]:
    """Payloads of a TFRecord stream, with CRC checks.

    A bad data CRC or an oversized record rejects that record only; a bad length CRC or a
    truncated file means the framing is lost, so the rest of the file becomes one dead letter.
    """
    reader = _BufferedReader(f)
    offset = 0
    while True:
        for payload in _whole_frames(reader):
            offset += _TFRECORD_HEADER.size + len(payload) + _CRC.size
            yield payload
        header = reader.take(_TFRECORD_HEADER.size)
        if not header:
            return
        if len(header) < _TFRECORD_HEADER.size:
            yield _lost_framing(path, offset, header, "truncated record header")
            return
        length, length_crc = _TFRECORD_HEADER.unpack(header)
        if _masked_crc(header[:8]) != length_crc:
            yield _lost_framing(path, offset, header, "corrupt record header")
            return
        kept = min(length, MAX_RECORD_BYTES + 1)
        payload = reader.take(kept)
        complete = len(payload) == kept and reader.skip(length - kept)
        data_crc = reader.take(_CRC.size)
        if not complete or len(data_crc) < _CRC.size:
            yield _lost_framing(path, offset, header + payload, "truncated record")
            return
        offset += _TFRECORD_HEADER.size + length + _CRC.size
        if length > MAX_RECORD_BYTES:
            yield DeadLetter.of(path, payload, Reason.OVERSIZED_LINE, f"{length} bytes")
        elif _masked_crc(payload) != _CRC.unpack(data_crc)[0]:
            yield DeadLetter.of(path, payload, Reason.BAD_TFRECORD, "data CRC mismatch")
        else:
            yield payload


def _whole_frames(reader: _BufferedReader) -> Iterator[bytes]:
    """Payloads of the sound frames already buffered, read straight from the buffer.

    The common case, without a call per field; it stops at the first frame that is incomplete,
    oversized or fails a CRC, which _tfrecords then reads (and reports) the careful way.
    """
    data, at = reader.buffered()
    end = len(data)
    header, crc = _TFRECORD_HEADER.size, _CRC.size
    try:
        while at + header <= end:
            length, length_crc = _TFRECORD_HEADER.unpack_from(data, at)
            stop = at + header + length
            if length > MAX_RECORD_BYTES or stop + crc > end or _masked_crc(data[at : at + 8]) != length_crc:
                return
            payload = data[at + header : stop]
            if _masked_crc(payload) != _CRC.unpack_from(data, stop)[0]:
                return
            at = stop + crc
            yield payload
    finally:
        reader.seek_buffered(at)


def _lost_framing(path: str, offset: int, raw: bytes, what: str) -> DeadLetter:
    detail = f"{what} at byte {offset}; the rest of the file was skipped"
    return DeadLetter.of(path, raw, Reason.BAD_TFRECORD, detail)


class _BufferedReader:
    """Exact-size reads over a stream, in big blocks (compressed streams are slow at small reads)."""

    def __init__(self, f: BinaryIO) -> None:
        self._f = f
        self._data = b""
        self._at = 0

    def take(self, n: int) -> bytes:
        """The next `n` bytes, or fewer at the end of the stream."""
        while len(self._data) - self._at < n:
            block = self._f.read(max(_BLOCK_BYTES, n))
            if not block:
                break
            self._data = self._data[self._at :] + block
            self._at = 0
        out = self._data[self._at : self._at + n]
        self._at += len(out)
        return out

    def buffered(self) -> tuple[bytes, int]:
        """The buffer and the position of the next unread byte in it."""
        return self._data, self._at

    def seek_buffered(self, at: int) -> None:
        """Continue from position `at` of the buffer (`buffered()`'s; only forward)."""
        self._at = at

    def skip(self, n: int) -> bool:
        """Drop the next `n` bytes; False when the stream ends first."""
        while n > 0:
            dropped = len(self.take(min(n, _BLOCK_BYTES)))
            if not dropped:
                return False
            n -= dropped
        return True


def _masked_crc(data: bytes) -> int:
    crc = google_crc32c.value(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def frame_tfrecord(payload: bytes) -> bytes:
    """One TFRecord frame: length, its masked CRC-32C, the payload and its masked CRC-32C."""
    length = struct.pack("<Q", len(payload))
    return length + _CRC.pack(_masked_crc(length)) + payload + _CRC.pack(_masked_crc(payload))
