"""simulate-stream: rows at a fixed rate into a folder or onto a Pub/Sub topic."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mnistkit.pipeline.io.streams import StreamInputError
from mnistkit.pipeline.streaming.simulate import BAD_ROW, FolderSink, PubSubSink, dataset_rows, open_sink, simulate


class FakeClock:
    """Time that passes only when slept through."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


class Recorder:
    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.sends: list[tuple[float, list[bytes]]] = []
        self.closed = False

    def send(self, rows):
        self.sends.append((self.clock(), list(rows)))

    def close(self):
        self.closed = True


def test_rows_leave_when_due_and_rows_due_together_leave_together():
    clock = FakeClock()
    sink = Recorder(clock)
    rows = iter([b"%d" % i for i in range(50)])
    result = simulate(rows, 50, rate=100, sink=sink, min_send_seconds=0.05, clock=clock, sleep=clock.sleep)
    assert (result.rows, result.sends) == (50, len(sink.sends)) and sink.closed
    sent = [row for _, rows in sink.sends for row in rows]
    assert sent == [b"%d" % i for i in range(50)]
    for at, rows in sink.sends:
        last = int(rows[-1])
        assert at >= last / 100 - 1e-9  # no row leaves before it is due
    gaps = np.diff([at for at, _ in sink.sends])
    assert gaps.min() >= 0.05 - 1e-9
    assert result.seconds == pytest.approx(0.49, abs=0.05)
    assert result.rows_per_s == pytest.approx(100, rel=0.1)


def test_slow_rates_send_one_row_at_a_time():
    clock = FakeClock()
    sink = Recorder(clock)
    simulate(iter([b"a", b"b", b"c"]), 3, rate=2, sink=sink, clock=clock, sleep=clock.sleep)
    assert sink.sends == [(0.0, [b"a"]), (0.5, [b"b"]), (1.0, [b"c"])]


def test_dataset_rows_cycle_the_images_with_fresh_keys_and_can_include_bad_rows():
    pixels = np.arange(3 * 784, dtype=np.uint64).reshape(3, 784).astype(np.uint8)
    rows = list(dataset_rows(pixels, 7, key_start=100, bad_every=5))
    decoded = [json.loads(row) for row in rows]
    assert [d["key"] for d in decoded] == list(range(100, 107))
    assert rows[4] == BAD_ROW % 104
    assert decoded[3]["image"] == decoded[0]["image"]
    assert np.asarray(decoded[0]["image"], np.float32).tolist() == (pixels[0] / np.float32(255)).tolist()


def test_folder_sends_become_whole_files(tmp_path):
    sink = open_sink(f"watch://{tmp_path / 'incoming'}")
    assert isinstance(sink, FolderSink)
    sink.send([b'{"key": 1}', b'{"key": 2}'])
    sink.send([b'{"key": 3}'])
    sink.close()
    files = sorted((tmp_path / "incoming").iterdir())
    assert [f.name.startswith("rows-") and f.suffix == ".jsonl" for f in files] == [True, True]
    assert [f.read_text() for f in files] == ['{"key": 1}\n{"key": 2}\n', '{"key": 3}\n']


def test_pubsub_sends_publish_one_message_per_row_and_close_waits_for_them():
    class Future:
        def __init__(self, log: list, row: bytes) -> None:
            self.log, self.row = log, row

        def result(self):
            self.log.append(("acked", self.row))

    class Publisher:
        def __init__(self) -> None:
            self.log: list = []

        def publish(self, topic, data):
            self.log.append((topic, data))
            return Future(self.log, data)

    client = Publisher()
    sink = PubSubSink("projects/demo-project/topics/rows", client)
    sink.send([b"r1", b"r2"])
    sink.close()
    topic = "projects/demo-project/topics/rows"
    assert client.log == [(topic, b"r1"), (topic, b"r2"), ("acked", b"r1"), ("acked", b"r2")]


def test_subscriptions_cannot_be_published_to():
    with pytest.raises(StreamInputError, match="publish to a topic"):
        open_sink("pubsub://projects/demo-project/subscriptions/rows")
