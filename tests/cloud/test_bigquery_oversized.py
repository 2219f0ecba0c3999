"""BigQuery rows with huge images are cut down before they are batched (bigquery.screen_size), and
end as the same `oversized_line` dead letter a huge line of a file does."""

from __future__ import annotations

from mnistkit.pipeline.io.bigquery import rows_to_raw, screen_size
from mnistkit.pipeline.io.parsing import MAX_RECORD_BYTES, parse
from mnistkit.pipeline.rows import RawBatch, Reason


def _outcomes(rows: list[dict]) -> tuple[list[int], list[tuple[str, Reason]]]:
    keys, dead = [], []
    for item in rows_to_raw([screen_size(row) for row in rows], "bq://p.d.t"):
        if isinstance(item, RawBatch):
            batch, letters = parse(item, "text")
            keys += batch.keys.tolist()
            dead += [(d.raw[:8], d.reason) for d in letters]
        else:
            dead.append((item.value.raw[:8], item.value.reason))
    return keys, dead


def test_a_multi_megabyte_string_is_dropped_before_batching_and_rejected_as_oversized():
    good = ",".join(["0.5"] * 784)
    huge = "0.5," * (2 * 1024 * 1024)
    screened = screen_size({"key": 2, "image": huge})
    assert "image" not in screened and len(repr(screened)) < 1000  # the batch holds no copy of it
    keys, dead = _outcomes(
        [
            {"key": 1, "image": good},
            {"key": 2, "image": huge},
            {"key": 3, "image": b"\x00" * (MAX_RECORD_BYTES + 1)},
            {"key": 4, "image": good},
        ]
    )
    assert keys == [1, 4]
    assert dead == [("2:0.5,0.", Reason.OVERSIZED_LINE), ("3:<65537", Reason.OVERSIZED_LINE)]


def test_an_image_just_under_the_limit_is_judged_by_the_parser_as_a_file_line_is():
    image = "0.5" + " " * (MAX_RECORD_BYTES - 3)
    assert screen_size({"key": 5, "image": image})["image"] == image
    keys, dead = _outcomes([{"key": 5, "image": image}])
    # `5:` plus the image is over the limit by two bytes: the parser rejects it, with the same reason.
    assert keys == [] and [reason for _, reason in dead] == [Reason.OVERSIZED_LINE]
    assert len(image) == MAX_RECORD_BYTES
