"""`mnistkit stage`: the model export and input files into the buckets, text inputs into BigQuery.

Uploads are idempotent: a file whose CRC32C (MD5 where the object has no CRC) already matches the
object at its destination is skipped, so re-running stage after adding one file uploads that file
only. A model version becomes visible only once whole: resolve_model (and a running stream's hot
swap) takes a directory as a version once it holds its marker (saved_model.pb, or a PyTorch
export's model.pt: export.VERSION_MARKERS), so every marker is uploaded after all the other files;
an upload stopped half-way leaves the previous version the newest. Text inputs are loaded into the
input table with one load job. The job takes JSON lines converted here rather than the text file
itself: BigQuery's CSV reader would need ':' as a delimiter and no quoting, and a key that is not
an integer would fail the whole job instead of being reported.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import google_crc32c

from mnistkit.model_export.export import VERSION_MARKERS
from mnistkit.pipeline.cloud.config import CloudConfig
from mnistkit.pipeline.io.bigquery import INPUT_SCHEMA, TableRef, parse_table
from mnistkit.pipeline.io.formats import FormatError, detect_format

__all__ = [
    "StageReport",
    "Upload",
    "is_text_input",
    "load_text_inputs",
    "plan_input_upload",
    "plan_model_upload",
    "split_gcs",
    "stage",
    "text_rows_as_json",
    "upload",
]

_MARKERS = frozenset(VERSION_MARKERS.values())
_CHUNK = 4 << 20
_INT64_MAX = 2**63 - 1


@dataclass(frozen=True)
class Upload:
    local: Path
    uri: str

    @property
    def size(self) -> int:
        return self.local.stat().st_size


@dataclass
class StageReport:
    """What stage did; `model_uri` and `input_uris` are what predict takes next."""

    model_uri: str | None = None
    input_uris: list[str] = field(default_factory=list)
    uploaded: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    bytes_uploaded: int = 0
    table: str | None = None
    rows_loaded: int = 0
    lines_rejected: int = 0


def split_gcs(uri: str) -> tuple[str, str]:
    """gs://bucket/some/path → ("bucket", "some/path")."""
    if not uri.startswith("gs://"):
        raise ValueError(f"not a gs:// URI: {uri}")
    bucket, _, path = uri[len("gs://") :].partition("/")
    return bucket, path.strip("/")


def plan_model_upload(model_dir: Path, model_uri: str) -> list[Upload]:
    """Every file of an export dir (or of one version dir, kept as `<model_uri>/<version>/`).

    In upload order: each version's marker (saved_model.pb, model.pt) after every other file, its sign of completeness.
    """
    if not model_dir.is_dir():
        raise FileNotFoundError(f"no model export directory at {model_dir}")
    root = model_dir.parent if any((model_dir / marker).is_file() for marker in _MARKERS) else model_dir
    files = sorted((p for p in model_dir.rglob("*") if p.is_file()), key=lambda p: (p.name in _MARKERS, p))
    return [Upload(path, f"{model_uri.rstrip('/')}/{path.relative_to(root).as_posix()}") for path in files]


def plan_input_upload(inputs: Sequence[Path], input_location: str) -> list[Upload]:
    """Input files (folders recursively) → `<input_location>/<name>`."""
    base = input_location.rstrip("/")
    uploads = []
    for path in inputs:
        if path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.is_file())
            uploads += [Upload(p, f"{base}/{path.name}/{p.relative_to(path).as_posix()}") for p in files]
        elif path.is_file():
            uploads.append(Upload(path, f"{base}/{path.name}"))
        else:
            raise FileNotFoundError(f"no input file or folder at {path}")
    return uploads


def _checksums(path: Path) -> tuple[str, str]:
    """(crc32c, md5) of a file, base64-encoded as GCS reports them."""
    crc = google_crc32c.Checksum()
    md5 = hashlib.md5()
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            crc.update(chunk)
            md5.update(chunk)
    return base64.b64encode(crc.digest()).decode(), base64.b64encode(md5.digest()).decode()


def _unchanged(path: Path, blob: Any) -> bool:
    if blob is None or blob.size != path.stat().st_size:
        return False
    crc, md5 = _checksums(path)
    # Composite objects have no MD5; every object has a CRC32C, but compare what is there.
    return blob.crc32c == crc if blob.crc32c else blob.md5_hash == md5


def upload(uploads: Sequence[Upload], client: Any, progress: bool = True) -> tuple[list[str], list[str], int]:
    """Upload what differs from the bucket, one file after the other in the given order.

    Returns (uploaded URIs, skipped URIs, bytes sent).
    """
    from tqdm import tqdm
    from tqdm.utils import CallbackIOWrapper

    existing = _existing_blobs(uploads, client)
    todo = [u for u in uploads if not _unchanged(u.local, existing.get(u.uri))]
    skipped = [u.uri for u in uploads if u not in todo]
    sent = 0
    with tqdm(total=sum(u.size for u in todo), unit="B", unit_scale=True, disable=not progress) as bar:
        for item in todo:
            bucket, name = split_gcs(item.uri)
            bar.set_description(item.local.name[:30])
            with item.local.open("rb") as f:
                blob = client.bucket(bucket).blob(name)
                blob.upload_from_file(CallbackIOWrapper(bar.update, f, "read"), size=item.size, checksum="crc32c")
            sent += item.size
    return [u.uri for u in todo], skipped, sent


def _existing_blobs(uploads: Iterable[Upload], client: Any) -> dict[str, Any]:
    """The objects already at the destinations, one listing per destination folder."""
    prefixes = {split_gcs(u.uri.rsplit("/", 1)[0] + "/") for u in uploads}
    found = {}
    for bucket, prefix in prefixes:
        for blob in client.list_blobs(bucket, prefix=f"{prefix}/" if prefix else None):
            found[f"gs://{bucket}/{blob.name}"] = blob
    return found


def is_text_input(path: Path) -> bool:
    try:
        return detect_format(str(path)) == "text"
    except FormatError:
        return False


def _open_text(path: Path) -> IO[bytes]:
    return gzip.open(path, "rb") if path.suffix == ".gz" else path.open("rb")


def text_rows_as_json(paths: Sequence[Path], out: IO[bytes]) -> tuple[int, int]:
    """Write `key:image` lines as `{"key", "image"}` JSON lines: (rows written, lines rejected).

    The image text is kept verbatim, bad values included: the pipeline rejects those with a
    reason. Only lines with no integer key are dropped, because the key column is REQUIRED.
    """
    rows = rejected = 0
    for path in paths:
        with _open_text(path) as f:
            for line in _lines(f):
                key_text, sep, image = line.partition(b":")
                key = _int64(key_text) if sep else None
                if key is None:
                    rejected += 1
                    continue
                out.write(json.dumps({"key": key, "image": image.decode("utf-8", "replace")}).encode() + b"\n")
                rows += 1
    return rows, rejected


def _lines(f: IO[bytes]) -> Iterator[bytes]:
    for line in f:
        line = line.rstrip(b"\r\n")
        if line.strip():
            yield line


def _int64(text: bytes) -> int | None:
    try:
        value = int(text)
    except ValueError:
        return None
    return value if -_INT64_MAX - 1 <= value <= _INT64_MAX else None


def load_text_inputs(paths: Sequence[Path], table: TableRef, client: Any, write: str = "append") -> tuple[int, int]:
    """One load job of every text input into `table` (created if needed): (rows, lines rejected)."""
    from google.cloud import bigquery

    schema = [bigquery.SchemaField(f["name"], f["type"], mode=f["mode"]) for f in INPUT_SCHEMA["fields"]]
    job_config = bigquery.LoadJobConfig(
        source_format=bigquery.SourceFormat.NEWLINE_DELIMITED_JSON,
        schema=schema,
        create_disposition=bigquery.CreateDisposition.CREATE_IF_NEEDED,
        write_disposition=(
            bigquery.WriteDisposition.WRITE_TRUNCATE if write == "truncate" else bigquery.WriteDisposition.WRITE_APPEND
        ),
    )
    # BigQuery refuses streams whose mode is not a read mode (w+b is what a temp file defaults to).
    with tempfile.SpooledTemporaryFile(max_size=64 << 20, mode="r+b") as data:
        rows, rejected = text_rows_as_json(paths, data)
        if rows:
            data.seek(0)
            client.load_table_from_file(data, table.dotted, job_config=job_config).result()
    return rows, rejected


def stage(
    config: CloudConfig,
    model_dir: Path | None = None,
    inputs: Sequence[Path] = (),
    *,
    load_bigquery: bool = True,
    write: str = "append",
    progress: bool = True,
) -> StageReport:
    """Upload `model_dir` to config.model_uri and `inputs` to config.input_location; load text inputs."""
    from google.cloud import storage

    config.require("project_id")
    report = StageReport()
    uploads: list[Upload] = []
    if model_dir is not None:
        config.require("model_uri")
        uploads += plan_model_upload(model_dir, config.model_uri)
        report.model_uri = config.model_uri
    if inputs:
        config.require("input_location")
        input_uploads = plan_input_upload(inputs, config.input_location)
        uploads += input_uploads
        report.input_uris = [u.uri for u in input_uploads]
    client = storage.Client(project=config.project_id)
    report.uploaded, report.skipped, report.bytes_uploaded = upload(uploads, client, progress)
    text_inputs = [u.local for u in uploads if u.uri in report.input_uris and is_text_input(u.local)]
    if load_bigquery and text_inputs:
        from google.cloud import bigquery

        config.require("input_table")
        table = parse_table(config.input_table, config.project_id)
        bq_client = bigquery.Client(project=config.project_id)
        report.rows_loaded, report.lines_rejected = load_text_inputs(text_inputs, table, bq_client, write)
        report.table = table.uri
    return report
