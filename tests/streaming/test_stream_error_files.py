"""A stream's errors files are named by the rows' event time and content: a retried bundle
rewrites its file instead of adding a duplicate."""

from __future__ import annotations

import apache_beam as beam
from apache_beam.testing import test_pipeline
from apache_beam.transforms.window import TimestampedValue

from mnistkit.pipeline.io.streams import WriteStreamFiles, write_dead_letters
from mnistkit.pipeline.rows import DeadLetter, Reason

DEAD = [DeadLetter("pubsub:1", "{", Reason.INVALID_JSON, "x"), DeadLetter("pubsub:2", "", Reason.EMPTY_LINE)]


def test_writing_the_same_dead_letters_twice_leaves_one_file(tmp_path):
    write_dead_letters(str(tmp_path), DEAD, 1_700_000_000.25)
    write_dead_letters(str(tmp_path), DEAD, 1_700_000_000.25)
    (only,) = tmp_path.iterdir()
    assert only.name.startswith("errors-20231114T221320.250000-")
    assert len(only.read_text().splitlines()) == 2
    write_dead_letters(str(tmp_path), DEAD[:1], 1_700_000_000.25)
    assert len(list(tmp_path.iterdir())) == 2  # other content, another file


def test_a_replayed_dead_letter_list_in_a_pipeline_lands_in_one_file(tmp_path):
    with test_pipeline.TestPipeline() as p:
        scored = p | "NoRows" >> beam.Create([])
        dead = (
            p
            | beam.Create([DEAD, DEAD])  # the same list delivered twice, as a retried bundle would
            | beam.Map(lambda d: TimestampedValue(d, 1_700_000_000))
        )
        _ = (scored, dead) | WriteStreamFiles(str(tmp_path / "out"), str(tmp_path / "errors"))
    (only,) = (tmp_path / "errors").iterdir()
    assert only.name.startswith("errors-20231114T221320.000000-")
