"""A watched folder reads every format `mnistkit predict` reads, through the same readers and
parsers: text (the original sample's `images.txt` format), JSON lines, TFRecord written by
TensorFlow itself, and a gzipped file, with the batch pipeline's dead letters for bad rows."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
from streamtest import read_outputs

from mnistkit.pipeline.batch import PredictConfig, run_predict
from mnistkit.pipeline.inference.savedmodel import resolve_model
from mnistkit.pipeline.io.formats import encode_jsonl, encode_text
from mnistkit.pipeline.runners import RunnerConfig
from mnistkit.pipeline.streaming.pipeline import StreamConfig, run_stream


def seed_text(keys: np.ndarray, pixels: np.ndarray) -> bytes:
    """Rows as the original sample wrote them: `'%.12g' % (float32(p) * float32(1/255))`, 0.0/1.0 kept."""
    scale = np.float32(1 / 255)

    def value(p: int) -> str:
        return {0: "0.0", 255: "1.0"}.get(p) or "%.12g" % (np.float32(p) * scale)

    lines = (f"{k}:{','.join(value(int(p)) for p in row)}\n" for k, row in zip(keys, pixels, strict=True))
    return "".join(lines).encode()


def tf_records(path: Path, keys: np.ndarray, pixels: np.ndarray, extra: list[bytes]) -> None:
    """A TFRecord file written by TensorFlow's own writer (not the kit's framing)."""
    import tensorflow as tf

    with tf.io.TFRecordWriter(str(path)) as writer:
        for key, row in zip(keys.tolist(), pixels, strict=True):
            features = {
                "key": tf.train.Feature(int64_list=tf.train.Int64List(value=[key])),
                "image": tf.train.Feature(bytes_list=tf.train.BytesList(value=[row.tobytes()])),
            }
            writer.write(tf.train.Example(features=tf.train.Features(feature=features)).SerializeToString())
        for record in extra:
            writer.write(record)


def test_a_watched_folder_scores_text_jsonl_tfrecord_and_gzip_like_predict(exported_model, mnist_test_set, tmp_path):
    images = mnist_test_set[0].reshape(-1, 784)
    incoming, out = tmp_path / "incoming", tmp_path / "out"
    incoming.mkdir()
    keys = np.arange(40, dtype=np.int64)
    (incoming / "images.txt").write_bytes(seed_text(keys[:10], images[:10]) + b"100:0.5,0.5\n")
    (incoming / "rows.jsonl").write_bytes(encode_jsonl(keys[10:20], images[10:20]) + b'{"key": 101, "image": [\n')
    import tensorflow as tf

    image_only = tf.train.Features(feature={"image": tf.train.Feature(bytes_list=tf.train.BytesList(value=[b"x"]))})
    no_key = tf.train.Example(features=image_only).SerializeToString()
    tf_records(incoming / "rows.tfrecord", keys[20:30], images[20:30], [no_key])
    (incoming / "more.txt.gz").write_bytes(
        gzip.compress(encode_text(keys[30:40], images[30:40]) + b"102:" + b"0.5," * 783 + b"x\n")
    )
    (incoming / "notes.md").write_text("not rows\n")

    config = StreamConfig(
        model=str(exported_model),
        input=f"watch://{incoming}",
        output=str(out),
        max_batch=16,
        window_seconds=0.3,
        poll_seconds=0.2,
        idle=3.0,
    )
    summary = run_stream(config).summary
    outputs = read_outputs(out)
    rows = {row["key"]: row for row in outputs.rows}
    assert len(outputs.rows) == len(rows) == 40 and sorted(rows) == keys.tolist()

    # The same files through `mnistkit predict`: the same dead letters, reason for reason.
    batch_dead = []
    for name in ("images.txt", "rows.jsonl", "rows.tfrecord", "more.txt.gz"):
        prefix = tmp_path / "batch" / name
        run_predict(
            PredictConfig(str(exported_model), str(incoming / name), str(prefix), runner=RunnerConfig(1, "in_memory"))
        )
        for path in prefix.parent.glob(f"{name}-errors-*.jsonl"):
            batch_dead += [json.loads(line) for line in path.read_text().splitlines()]

    def letters(dead: list[dict]) -> list[tuple[str, str, str]]:
        return sorted((Path(d["source"]).name, d["reason"], d["raw"]) for d in dead)

    stream_dead = [d for d in outputs.dead if not d["source"].endswith("notes.md")]
    assert letters(stream_dead) == letters(batch_dead)
    assert sorted(d["reason"] for d in outputs.dead) == [
        "invalid_json",
        "missing_key",
        "non_numeric",
        "unknown_format",
        "wrong_value_count",
    ]
    assert summary.rows_read == 45 and summary.rows_predicted == 40 and summary.reconciled

    # An independent oracle: the exported signature called straight through TensorFlow.
    signature = tf.saved_model.load(resolve_model(str(exported_model))).signatures["serving_default"]
    expected = signature(key=tf.constant(keys), image=tf.constant(images[:40].astype(np.float32) / 255))
    got = np.array([[rows[k][f"pred{d}"] for d in range(10)] for k in keys.tolist()])
    np.testing.assert_allclose(got, expected["probabilities"].numpy(), atol=1e-5)
    assert [rows[k]["class"] for k in keys.tolist()] == expected["class"].numpy().tolist()
