"""Model copy from gs:// (on the GCS emulator) under hostile names and a full disk."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from cloudtest import MODEL_BUCKET, PROJECT


def upload(names: dict[str, bytes]) -> None:
    from google.cloud import storage

    bucket = storage.Client(project=PROJECT).bucket(MODEL_BUCKET)
    for name, data in names.items():
        bucket.blob(name).upload_from_string(data)


@pytest.fixture
def private_cache(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path / "cache" / "mnistkit" / "models"


def test_an_object_name_leaving_the_copy_folder_is_refused(gcs, private_cache, tmp_path, monkeypatch):
    """Real GCS stores `1/../../x` as a name; the emulator refuses to, so the listing it returns
    is extended with that object (the copy refuses before it opens any object)."""
    from apache_beam.io.filesystem import FileMetadata

    import mnistkit.pipeline.inference.savedmodel as savedmodel

    upload({"m/1/saved_model.pb": b"pb"})
    listed = savedmodel._match
    escaping = [f"gs://{MODEL_BUCKET}/m/1/../../escaped.txt", f"gs://{MODEL_BUCKET}/m/1//etc/passwd"]
    for name in escaping:
        monkeypatch.setattr(savedmodel, "_match", lambda p, n=name: [*listed(p), FileMetadata(n, 7, 0.0)])
        with pytest.raises(savedmodel.ModelError, match="leads outside"):
            savedmodel.local_copy(f"gs://{MODEL_BUCKET}/m/1")
    assert not list(tmp_path.rglob("escaped.txt"))
    assert [p.name for p in private_cache.iterdir()] == []  # no half copy left behind


def test_a_copy_is_private_checked_against_its_manifest_and_redone_when_tampered(gcs, private_cache):
    from mnistkit.pipeline.inference.savedmodel import local_copy

    upload({"m/1/saved_model.pb": b"pb", "m/1/variables/variables.index": b"index"})
    copy = Path(local_copy(f"gs://{MODEL_BUCKET}/m/1"))
    assert copy.parent == private_cache and (private_cache.stat().st_mode & 0o777) == 0o700
    assert (copy / "variables" / "variables.index").read_bytes() == b"index"
    (copy / "saved_model.pb").write_bytes(b"tampered")
    assert Path(local_copy(f"gs://{MODEL_BUCKET}/m/1")) == copy
    assert (copy / "saved_model.pb").read_bytes() == b"pb"
    # The same name re-uploaded with other content is another copy.
    upload({"m/1/saved_model.pb": b"a new pb"})
    again = Path(local_copy(f"gs://{MODEL_BUCKET}/m/1"))
    assert again != copy and (again / "saved_model.pb").read_bytes() == b"a new pb"


_FULL_DISK_CHILD = """
import resource, signal, sys
from mnistkit.pipeline.inference.savedmodel import ModelError, local_copy
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit then fails with EFBIG
resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 16, 1 << 16))
try:
    local_copy(sys.argv[1])
except ModelError as exc:
    print("ModelError:", exc)
"""


def test_a_full_disk_during_the_copy_is_a_clear_error_and_leaves_no_copy(gcs, private_cache):
    upload({"m/1/saved_model.pb": b"pb", "m/1/variables/variables.data-00000-of-00001": b"x" * (1 << 18)})
    child = subprocess.run(
        [sys.executable, "-c", _FULL_DISK_CHILD, f"gs://{MODEL_BUCKET}/m/1"],
        capture_output=True,
        text=True,
        env=os.environ,
        timeout=120,
    )
    assert child.returncode == 0, child.stderr[-2000:]
    assert "ModelError: Cannot copy model" in child.stdout and "File too large" in child.stdout
    assert [p.name for p in private_cache.iterdir()] == []
