"""A stream record in a format no parser knows is a dead letter, not a crashed stream."""

from __future__ import annotations

from streamtest import payload

from mnistkit.pipeline.rows import Reason, StreamRecord
from mnistkit.pipeline.streaming.pipeline import parse_micro_batch


def test_records_of_an_unknown_format_are_dead_letters_and_the_rest_is_parsed():
    records = [
        StreamRecord(payload(1), "a", 1.0, "jsonl"),
        StreamRecord(b"1:0.5", "b", 2.0, "csv-v2"),
        StreamRecord(payload(3), "c", 3.0, "jsonl"),
        StreamRecord(b"\x00\x01", "d", 4.0, "csv-v2"),
    ]
    batch, dead = parse_micro_batch(records)
    assert batch.rows.keys.tolist() == [1, 3]
    assert batch.event_times.tolist() == [1.0, 3.0]
    assert [(d.source, d.reason) for d in dead] == [("b", Reason.UNKNOWN_FORMAT), ("d", Reason.UNKNOWN_FORMAT)]
    assert "csv-v2" in dead[0].detail
