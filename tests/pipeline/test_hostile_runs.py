"""Whole batch runs over hostile inputs: a truncated archive among good files, poison rows in
every format. The summary reconciles exactly and names what was lost."""

from __future__ import annotations

import gzip

import numpy as np

from mnistkit.pipeline.io.formats import encode_jsonl, encode_text


def test_a_truncated_gzip_among_good_files_is_one_dead_letter_and_the_run_goes_on(
    tmp_path, exported_model, test_rows, run_pipeline
):
    keys, pixels = test_rows
    source = tmp_path / "in"
    source.mkdir()
    (source / "a.txt").write_bytes(encode_text(keys[:300], pixels[:300]))
    whole = gzip.compress(encode_text(keys[300:], pixels[300:]))
    (source / "b.txt.gz").write_bytes(whole[: len(whole) // 2])
    summary, predictions, dead = run_pipeline(exported_model, str(source / "*"), tmp_path / "preds", format="text")
    assert [(d["reason"], d["source"]) for d in dead] == [("corrupt_file", str(source / "b.txt.gz"))]
    assert "truncated" in dead[0]["detail"]
    read_from_b = summary.rows_read - 300 - 1
    assert 0 < read_from_b < 700
    assert sorted(predictions) == list(range(300 + read_from_b))
    assert summary.reconciled and summary.rejected == {"corrupt_file": 1}


def test_hostile_rows_in_a_run_cost_only_themselves(tmp_path, exported_model, test_rows, run_pipeline):
    keys, pixels = test_rows
    good = encode_jsonl(keys[:50], pixels[:50]).splitlines()
    hostile = [
        b"[" * 3000 + b"]" * 3000,
        good[0][:-1] + b', "x": ' + b"[" * 3000 + b"]" * 3000 + b"}",
        b"[" + good[1] + b"]",
        good[2][:30],
        good[2][30:],
        good[3] + good[4],
        b'{"key": ' + b"1" * 5000 + b', "image": []}',
    ]
    path = tmp_path / "rows.jsonl"
    path.write_bytes(b"\n".join(good[5:] + hostile) + b"\n")
    summary, predictions, dead = run_pipeline(exported_model, str(path), tmp_path / "preds")
    assert sorted(predictions) == np.arange(5, 50).tolist()
    assert len(dead) == len(hostile) and {d["reason"] for d in dead} == {"invalid_json"}
    assert summary.rows_read == 45 + len(hostile) and summary.reconciled
