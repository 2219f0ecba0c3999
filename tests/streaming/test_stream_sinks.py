"""Stream outputs as built: a BigQuery table (rows streamed in, dead letters to a folder) and the
Dataflow variant of the pipeline. test_pubsub_stream.py streams into a table on bqemulator."""

from __future__ import annotations

import apache_beam as beam
import pytest
from apache_beam.io.gcp.bigquery import WriteToBigQuery
from streamtest import applied_transforms

from mnistkit.pipeline.io.bigquery import PREDICTIONS_SCHEMA
from mnistkit.pipeline.io.streams import STREAM_PREDICTIONS_SCHEMA, StreamInputError
from mnistkit.pipeline.streaming.pipeline import StreamConfig, build_stream_pipeline

TABLE = "bq://demo-project.mnist.stream_predictions"


def test_a_table_output_streams_rows_with_their_timing_columns(exported_model, tmp_path):
    config = StreamConfig(
        model=str(exported_model), input=f"watch://{tmp_path}", output=TABLE, errors_output=str(tmp_path / "errors")
    )
    pipeline = beam.Pipeline()
    build_stream_pipeline(pipeline, config)
    (write,) = applied_transforms(pipeline, WriteToBigQuery)
    assert write.table_reference.projectId == "demo-project"
    assert (write.table_reference.datasetId, write.table_reference.tableId) == ("mnist", "stream_predictions")
    assert write.method == WriteToBigQuery.Method.STREAMING_INSERTS
    assert write.create_disposition == beam.io.BigQueryDisposition.CREATE_IF_NEEDED
    assert write.write_disposition == beam.io.BigQueryDisposition.WRITE_APPEND
    names = [field["name"] for field in STREAM_PREDICTIONS_SCHEMA["fields"]]
    assert names == [f["name"] for f in PREDICTIONS_SCHEMA["fields"]] + [
        "event_time",
        "prediction_time",
        "latency_ms",
        "model_version",
    ]


def test_dead_letters_of_a_table_output_need_a_folder(tmp_path):
    assert StreamConfig("m", "watch://in", str(tmp_path)).errors_folder == str(tmp_path)
    assert StreamConfig("m", "watch://in", TABLE, errors_output="gs://b/errors").errors_folder == "gs://b/errors"
    with pytest.raises(StreamInputError, match="--errors-output"):
        _ = StreamConfig("m", "watch://in", TABLE).errors_folder


def test_on_dataflow_the_micro_batches_form_under_runner_sharded_keys(exported_model, tmp_path):
    def batchers(runner) -> set[type]:
        pipeline = beam.Pipeline()
        config = StreamConfig(str(exported_model), "pubsub://projects/demo-project/topics/rows", str(tmp_path))
        build_stream_pipeline(pipeline, StreamConfig(**{**config.__dict__, "runner": runner}))
        return {type(t) for t in applied_transforms(pipeline, beam.PTransform)} & {
            beam.GroupIntoBatches,
            beam.GroupIntoBatches.WithShardedKey,
        }

    assert batchers(None) == {beam.GroupIntoBatches}
    from mnistkit.pipeline.cloud.config import CloudConfig
    from mnistkit.pipeline.cloud.launch import DataflowRunnerConfig

    dataflow = DataflowRunnerConfig(CloudConfig(project_id="demo-project", max_workers=2), job_name="rows")
    assert beam.GroupIntoBatches.WithShardedKey in batchers(dataflow)
