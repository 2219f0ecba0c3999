"""`mnistkit stage` on the GCS and BigQuery emulators: uploads, checksum skips, the load job, and
model versions that become visible only once whole."""

from __future__ import annotations

import gzip
import shutil

import numpy as np
import pytest
from cloudtest import DATA_BUCKET, DATASET, INPUT_LOCATION, MODEL_BUCKET, PROJECT

from mnistkit.pipeline.cloud.config import load_config
from mnistkit.pipeline.cloud.staging import plan_model_upload, stage, text_rows_as_json
from mnistkit.pipeline.io.formats import encode_text


@pytest.fixture
def inputs(tmp_path, mnist_test_set):
    images, _ = mnist_test_set
    folder = tmp_path / "inputs"
    folder.mkdir()
    text = encode_text(np.arange(20), images[:20].reshape(20, -1))
    bad = b"oops:0.5\n\n7:not,numbers\n"
    (folder / "digits.txt").write_bytes(text)
    (folder / "more.txt.gz").write_bytes(
        gzip.compress(encode_text(np.arange(20, 25), images[20:25].reshape(5, -1)) + bad)
    )
    (folder / "notes.jsonl").write_bytes(b'{"key": 1, "image": []}\n')
    return folder


def _objects(client, bucket: str) -> dict[str, str]:
    return {b.name: b.crc32c for b in client.list_blobs(bucket)}


def test_stage_uploads_skips_unchanged_files_and_loads_text_inputs(cloud_env, gcs, bigquery, exported_model, inputs):
    from google.cloud import storage

    config = load_config()
    files = sorted(inputs.iterdir())
    report = stage(config, exported_model, files, progress=False)

    client = storage.Client(project=PROJECT)
    (version,) = [p.name for p in exported_model.iterdir()]
    models = _objects(client, MODEL_BUCKET)
    assert f"mnist/{version}/saved_model.pb" in models and f"mnist/{version}/model.json" in models
    assert len(models) == sum(1 for p in exported_model.rglob("*") if p.is_file())
    assert set(_objects(client, DATA_BUCKET)) == {"inputs/digits.txt", "inputs/more.txt.gz", "inputs/notes.jsonl"}
    assert report.model_uri == f"gs://{MODEL_BUCKET}/mnist" and not report.skipped
    assert report.input_uris == [f"{INPUT_LOCATION}/{p.name}" for p in files]
    # Text files only (the .jsonl is not), keyless lines rejected, bad values kept for the pipeline.
    assert (report.table, report.rows_loaded, report.lines_rejected) == (f"bq://{PROJECT}.{DATASET}.images", 26, 1)
    rows = list(bigquery.client().list_rows(f"{PROJECT}.{DATASET}.images"))
    assert sorted(r["key"] for r in rows) == sorted([*range(25), 7])
    assert {r["image"] for r in rows if r["key"] == 7} >= {"not,numbers"}
    assert all(r["image"].count(",") == 783 for r in rows if r["key"] == 3)

    # A second run uploads only what changed, and truncate replaces the table's rows.
    (inputs / "digits.txt").write_bytes(b"1:" + b"0," * 783 + b"1\n")
    again = stage(config, exported_model, files, write="truncate", progress=False)
    assert again.uploaded == [f"gs://{DATA_BUCKET}/inputs/digits.txt"]
    assert len(again.skipped) == len(report.uploaded) - 1
    assert again.bytes_uploaded == (inputs / "digits.txt").stat().st_size
    assert again.rows_loaded == 7
    assert bigquery.client().get_table(f"{PROJECT}.{DATASET}.images").num_rows == 7


def test_a_version_dir_keeps_its_version_in_the_destination(exported_model):
    (version,) = exported_model.iterdir()
    uploads = plan_model_upload(version, "gs://b/m")
    assert {u.uri for u in uploads} >= {f"gs://b/m/{version.name}/saved_model.pb"}


@pytest.fixture
def two_versions(exported_model, tmp_path):
    """An export dir with the trained version and a newer copy of it."""
    (version,) = exported_model.iterdir()
    export = tmp_path / "export"
    old, new = export / version.name, export / str(int(version.name) + 1)
    shutil.copytree(version, old)
    shutil.copytree(version, new)
    return export, old, new


def test_saved_model_pb_is_planned_after_every_other_file(two_versions):
    export, _, _ = two_versions
    names = [u.uri.rsplit("/", 1)[-1] for u in plan_model_upload(export, "gs://b/m")]
    first_pb = names.index("saved_model.pb")
    assert names[first_pb:] == ["saved_model.pb", "saved_model.pb"] and "variables.index" in names


def test_a_pytorch_version_uploads_its_program_last_and_keeps_its_version(tmp_path):
    """model.pt is a PyTorch version's marker (export.VERSION_MARKERS): written last, as saved_model.pb is."""
    version = tmp_path / "export" / "1700000000"
    (version / "openvino").mkdir(parents=True)
    for name in ("model.pt", "state_dict.pt", "model.json", "openvino/model.xml", "openvino/model.bin"):
        (version / name).write_bytes(b"x")
    uploads = [u.uri for u in plan_model_upload(version, "gs://b/m")]
    assert uploads[-1] == "gs://b/m/1700000000/model.pt" and len(uploads) == 5


class _ConnectionLost(Exception):
    pass


def test_an_interrupted_stage_leaves_the_previous_version_the_newest(cloud_env, gcs, two_versions, monkeypatch):
    """An upload cut off after the new version's variables: models still resolve to the old version."""
    from google.cloud import storage

    from mnistkit.pipeline.inference.savedmodel import resolve_model

    export, old, new = two_versions
    config = load_config()
    stage(config, old, progress=False)
    assert resolve_model(config.model_uri) == f"{config.model_uri}/{old.name}"

    upload_from_file = storage.Blob.upload_from_file

    def cut_off_at_the_new_graph(blob, *args, **kwargs):
        if blob.name == f"mnist/{new.name}/saved_model.pb":
            raise _ConnectionLost(blob.name)
        return upload_from_file(blob, *args, **kwargs)

    monkeypatch.setattr(storage.Blob, "upload_from_file", cut_off_at_the_new_graph)
    with pytest.raises(_ConnectionLost):
        stage(config, export, progress=False)
    uploaded = set(_objects(storage.Client(project=PROJECT), MODEL_BUCKET))
    assert {f"mnist/{new.name}/variables/variables.index", f"mnist/{new.name}/model.json"} <= uploaded
    assert f"mnist/{new.name}/saved_model.pb" not in uploaded
    assert resolve_model(config.model_uri) == f"{config.model_uri}/{old.name}"

    monkeypatch.setattr(storage.Blob, "upload_from_file", upload_from_file)
    again = stage(config, export, progress=False)
    assert again.uploaded == [f"{config.model_uri}/{new.name}/saved_model.pb"]  # the rest was already there
    assert resolve_model(config.model_uri) == f"{config.model_uri}/{new.name}"


def test_text_rows_as_json_keeps_bad_values_and_drops_keyless_lines(tmp_path):
    import io
    import json

    path = tmp_path / "x.txt"
    path.write_bytes(b"1:a,b\r\n\n:0.5\nx:1\n99999999999999999999:1\n-2:0.1\n")
    out = io.BytesIO()
    assert text_rows_as_json([path], out) == (2, 3)
    assert [json.loads(line) for line in out.getvalue().splitlines()] == [
        {"key": 1, "image": "a,b"},
        {"key": -2, "image": "0.1"},
    ]
