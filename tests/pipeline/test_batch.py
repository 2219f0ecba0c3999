"""The batch pipeline end to end: real data, real Beam, real TensorFlow."""

from __future__ import annotations

import gzip
import json
from collections import Counter

import numpy as np
import pytest

from mnistkit.model_export.model import NUM_PIXELS
from mnistkit.pipeline.batch import OutputExistsError
from mnistkit.pipeline.inference.savedmodel import ModelError
from mnistkit.pipeline.io.formats import encode_jsonl, encode_text
from mnistkit.pipeline.rows import DeadLetter, Reason
from mnistkit.pipeline.runners import RunnerConfig

PRED_FIELDS = [f"pred{i}" for i in range(10)]


def _probabilities(predictions: dict[int, dict], keys) -> np.ndarray:
    return np.asarray([[predictions[k][f] for f in PRED_FIELDS] for k in keys], np.float32)


@pytest.fixture(scope="module")
def text_run(tmp_path_factory, exported_model, inputs, run_pipeline):
    return run_pipeline(exported_model, inputs["text"], tmp_path_factory.mktemp("text") / "preds")


def test_every_key_is_predicted_once_and_matches_the_model(text_run, test_rows, direct_probabilities):
    summary, predictions, dead = text_run
    keys = test_rows[0].tolist()
    assert sorted(predictions) == keys and dead == []
    assert (summary.rows_read, summary.rows_predicted, summary.rejected) == (1000, 1000, {})
    assert summary.reconciled and summary.rows_per_s > 0
    got = _probabilities(predictions, keys)
    np.testing.assert_allclose(got, direct_probabilities, atol=1e-5)
    assert [predictions[k]["class"] for k in keys] == direct_probabilities.argmax(axis=1).tolist()
    assert all(predictions[k]["confidence"] == max(got[k]) for k in keys)


@pytest.mark.parametrize("fmt", ["jsonl", "tfrecord"])
def test_all_formats_agree(fmt, tmp_path, exported_model, inputs, text_run, run_pipeline):
    summary, predictions, dead = run_pipeline(exported_model, inputs[fmt], tmp_path / "preds")
    _, text_predictions, _ = text_run
    assert summary.format == fmt and summary.rows_predicted == 1000 and dead == []
    assert predictions.keys() == text_predictions.keys()
    keys = sorted(predictions)
    assert [predictions[k]["class"] for k in keys] == [text_predictions[k]["class"] for k in keys]
    np.testing.assert_allclose(_probabilities(predictions, keys), _probabilities(text_predictions, keys), atol=1e-5)


def test_the_summary_file_is_what_run_predict_returned(text_run):
    summary = text_run[0]
    written = json.loads(open(summary.outputs["summary"]).read())
    assert written == json.loads(json.dumps(summary.to_dict()))
    assert written["rows_read"] == written["rows_predicted"] + written["rows_rejected"]


@pytest.mark.parametrize("mode", ["multi_threading", "multi_processing"])
def test_several_workers_read_globs_and_gzip(mode, tmp_path, exported_model, test_rows, run_pipeline):
    keys, pixels = test_rows
    data = tmp_path / "in"
    data.mkdir()
    (data / "part-0.txt").write_bytes(encode_text(keys[:400], pixels[:400]))
    (data / "part-1.txt").write_bytes(encode_text(keys[400:700], pixels[400:700]))
    (data / "part-2.txt.gz").write_bytes(gzip.compress(encode_text(keys[700:], pixels[700:])))
    summary, predictions, dead = run_pipeline(
        exported_model,
        str(data / "part-*"),
        tmp_path / "out" / "preds",
        format="text",
        runner=RunnerConfig(workers=2, running_mode=mode),
    )
    assert sorted(predictions) == keys.tolist() and dead == []
    assert summary.rows_read == summary.rows_predicted == 1000


def test_a_wrong_model_fails_before_the_pipeline(tmp_path, inputs, run_pipeline):
    with pytest.raises(ModelError, match="No exported model"):
        run_pipeline(tmp_path / "no-model", inputs["text"], tmp_path / "preds")
    assert list(tmp_path.iterdir()) == []


def test_earlier_outputs_are_kept_unless_overwrite(tmp_path, exported_model, test_rows, run_pipeline):
    source = tmp_path / "few.txt"
    source.write_bytes(encode_text(test_rows[0][:5], test_rows[1][:5]))
    run_pipeline(exported_model, str(source), tmp_path / "preds")
    with pytest.raises(OutputExistsError, match="--overwrite"):
        run_pipeline(exported_model, str(source), tmp_path / "preds")
    summary, predictions, _ = run_pipeline(exported_model, str(source), tmp_path / "preds", overwrite=True)
    assert len(predictions) == summary.rows_predicted == 5


# --- Fuzz: thousands of generated bad rows among good ones -------------------------------------

BAD_NUMBERS = [b"abc", b"", b"NA", b"1..2", b"0x1", b"--1", b'"0.5"', b"1e", b"0.5.5"]
NON_FINITE = [b"nan", b"inf", b"-inf", b"NaN", b"Infinity"]
OUT_OF_RANGE = [b"1.5", b"-0.01", b"255", b"1e3", b"1.0000001"]


def _bad_text_rows(rng: np.random.Generator, good: list[bytes], n: int) -> list[tuple[bytes, Reason]]:
    rows = []
    for i in range(n):
        key = b"%d" % (10_000 + i)
        values = good[rng.integers(len(good))].partition(b":")[2].split(b",")
        kind = i % 11

        def with_value(token: bytes, key=key, values=values) -> bytes:
            changed = list(values)
            changed[rng.integers(NUM_PIXELS)] = token
            return key + b":" + b",".join(changed)

        if kind == 0:
            rows.append((b" " * int(rng.integers(0, 4)), Reason.EMPTY_LINE))
        elif kind == 1:
            rows.append((b",".join(values), Reason.MISSING_KEY))
        elif kind == 2:
            rows.append((b":" + b",".join(values), Reason.MISSING_KEY))
        elif kind == 3:
            bad_key = [b"abc", b"1.5", b"0x10", b"1e3", b"--2", b"99999999999999999999"][i % 6]
            rows.append((bad_key + b":" + b",".join(values), Reason.BAD_KEY))
        elif kind == 4:
            count = int(rng.choice([0, 1, 783, 785, 1568]))
            rows.append((key + b":" + b",".join((values * 2)[:count]), Reason.WRONG_VALUE_COUNT))
        elif kind == 5:
            rows.append((with_value(BAD_NUMBERS[i % len(BAD_NUMBERS)]), Reason.NON_NUMERIC))
        elif kind == 6:
            rows.append((with_value(NON_FINITE[i % len(NON_FINITE)]), Reason.NON_FINITE))
        elif kind == 7:
            rows.append((with_value(OUT_OF_RANGE[i % len(OUT_OF_RANGE)]), Reason.OUT_OF_RANGE))
        elif kind == 8:
            rows.append((key + b":" + b"0," * 40_000 + b"0", Reason.OVERSIZED_LINE))
        else:
            junk = bytes(rng.integers(0, 256, size=int(rng.integers(1, 300)), dtype=np.uint8))
            junk = b"\xff" + junk.replace(b"\n", b"").replace(b"\r", b"")
            rows.append((junk, Reason.BAD_KEY if b":" in junk else Reason.MISSING_KEY))
    return rows


def _bad_jsonl_rows(rng: np.random.Generator, n: int) -> list[tuple[bytes, Reason]]:
    image = [0.5] * NUM_PIXELS
    makers = [
        (lambda k: b"", Reason.EMPTY_LINE),
        (lambda k: b'{"key": %d, "image": [0.5' % k, Reason.INVALID_JSON),
        (lambda k: b"%d:0.5" % k, Reason.INVALID_JSON),
        (lambda k: json.dumps({"image": image, "id": k}).encode(), Reason.MISSING_KEY),
        (lambda k: json.dumps({"key": str(k), "image": image}).encode(), Reason.BAD_KEY),
        (lambda k: json.dumps({"key": k + 0.5, "image": image}).encode(), Reason.BAD_KEY),
        (lambda k: json.dumps({"key": k, "image": image[: k % 700]}).encode(), Reason.WRONG_VALUE_COUNT),
        (lambda k: json.dumps({"key": k}).encode(), Reason.WRONG_VALUE_COUNT),
        (lambda k: json.dumps({"key": k, "image": [*image[:-1], "x"]}).encode(), Reason.NON_NUMERIC),
        (lambda k: json.dumps({"key": k, "image": [*image[:-1], None]}).encode(), Reason.NON_NUMERIC),
        (lambda k: json.dumps({"key": k, "image": [float("inf"), *image[1:]]}).encode(), Reason.NON_FINITE),
        (lambda k: json.dumps({"key": k, "image": [*image[:-1], -3]}).encode(), Reason.OUT_OF_RANGE),
    ]
    order = rng.permutation(n)
    return [(makers[i % len(makers)][0](10_000 + int(i)), makers[i % len(makers)][1]) for i in order]


def _expected_dead(rows: list[tuple[bytes, Reason]], source: str) -> Counter:
    return Counter((DeadLetter.of(source, raw, reason).raw, str(reason)) for raw, reason in rows)


def _check_fuzz(run, good_keys, bad_rows, source):
    summary, predictions, dead = run
    assert sorted(predictions) == sorted(good_keys)
    assert Counter((d["raw"], d["reason"]) for d in dead) == _expected_dead(bad_rows, source)
    assert {d["source"] for d in dead} == {source}
    assert summary.rows_read == len(good_keys) + len(bad_rows)
    assert summary.rejected == dict(Counter(str(reason) for _, reason in bad_rows))
    assert summary.reconciled


@pytest.mark.parametrize("fmt", ["text", "jsonl"])
def test_fuzzed_lines_are_each_dead_lettered(fmt, tmp_path, exported_model, test_rows, run_pipeline):
    rng = np.random.default_rng(11 if fmt == "text" else 12)
    keys, pixels = test_rows
    encode = encode_text if fmt == "text" else encode_jsonl
    good = encode(keys, pixels).splitlines()
    bad = _bad_text_rows(rng, good, 3000) if fmt == "text" else _bad_jsonl_rows(rng, 1200)
    lines = good + [raw for raw, _ in bad]
    source = tmp_path / f"fuzz.{'txt' if fmt == 'text' else 'jsonl'}"
    source.write_bytes(b"\n".join(lines[i] for i in rng.permutation(len(lines))) + b"\n")
    run = run_pipeline(exported_model, str(source), tmp_path / "preds")
    _check_fuzz(run, keys.tolist(), bad, str(source))


def test_fuzzed_tfrecords_are_each_dead_lettered(tmp_path, exported_model, test_rows, run_pipeline):
    import tensorflow as tf

    from mnistkit.pipeline.io.files import frame_tfrecord

    def example(**features) -> bytes:
        return tf.train.Example(features=tf.train.Features(feature=features)).SerializeToString()

    def int64(value):
        return tf.train.Feature(int64_list=tf.train.Int64List(value=[value]))

    def raw(value):
        return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))

    rng = np.random.default_rng(13)
    keys, pixels = test_rows
    good = [example(key=int64(int(k)), image=raw(p.tobytes())) for k, p in zip(keys, pixels, strict=True)]
    makers = [
        (lambda k: example(image=raw(bytes(NUM_PIXELS)), id=int64(k)), Reason.MISSING_KEY),
        (lambda k: example(key=raw(b"%d" % k), image=raw(bytes(NUM_PIXELS))), Reason.BAD_KEY),
        (lambda k: example(key=int64(k)), Reason.BAD_TFRECORD),
        (lambda k: example(key=int64(k), image=raw(bytes(k % 700))), Reason.WRONG_VALUE_COUNT),
        (lambda k: b"\x0a\xff\xff" + bytes([k % 256]) * 5, Reason.BAD_TFRECORD),
    ]
    bad = [(makers[i % len(makers)][0](10_000 + i), makers[i % len(makers)][1]) for i in range(1000)]
    frames = [frame_tfrecord(p) for p in good] + [frame_tfrecord(p) for p, _ in bad]
    corrupted_at = rng.choice(len(good), size=20, replace=False)
    corrupted = []
    for i in corrupted_at:
        frame = bytearray(frames[i])
        frame[20] ^= 0x01  # inside the payload: its CRC no longer matches
        frames[i] = bytes(frame)
        corrupted.append((bytes(frame[12:-4]), Reason.BAD_TFRECORD))
    source = tmp_path / "fuzz.tfrecord"
    source.write_bytes(b"".join(frames[i] for i in rng.permutation(len(frames))))
    run = run_pipeline(exported_model, str(source), tmp_path / "preds")
    good_keys = np.delete(keys, corrupted_at).tolist()
    _check_fuzz(run, good_keys, bad + corrupted, str(source))
