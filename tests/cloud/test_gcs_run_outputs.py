"""A run's output folder and its commit on GCS (gcp-storage-emulator): folders found by their
objects, the previous outputs replaced, nothing of the run folder left."""

from __future__ import annotations

from apache_beam.io.filesystems import FileSystems
from cloudtest import DATA_BUCKET

from mnistkit.pipeline.io.run_outputs import StagedPrefix, commit, remove_folders, run_folders


def _write(path: str, data: bytes) -> None:
    with FileSystems.create(path) as f:
        f.write(data)


def _objects(prefix: str) -> list[str]:
    return sorted(m.path for m in FileSystems.match([prefix + "**"])[0].metadata_list)


def test_a_commit_on_gcs_replaces_the_previous_objects_and_leaves_no_run_folder(gcs):
    base = f"gs://{DATA_BUCKET}/outputs/"
    final = base + "p"
    for name in ("p-00000-of-00002.jsonl", "p-00001-of-00002.jsonl", "p-summary.json"):
        _write(base + name, b"old\n")
    killed = StagedPrefix(final, "20000101T000000-dead")
    _write(f"{killed.folder}/beam-temp-x/part", b"half\n")
    run = StagedPrefix(final, "r1")
    _write(f"{run.staged}-00000-of-00001.jsonl", b"new\n")
    assert run_folders(final) == sorted([killed.folder, run.folder])

    remove_folders([killed.folder])
    assert run_folders(final) == [run.folder]
    done = commit(
        [f"{run.staged}-00000-of-00001.jsonl"], [run], [final + "-[0-9]*-of-*.jsonl", final + "-summary.json"]
    )
    assert done == [final + "-00000-of-00001.jsonl"]
    assert _objects(base) == [final + "-00000-of-00001.jsonl"]
    with FileSystems.open(done[0]) as f:
        assert f.read() == b"new\n"
    assert run_folders(final) == []
