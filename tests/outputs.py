"""Reading back what a run wrote, for the tests of every area (local paths and gs:// alike)."""

from __future__ import annotations

import json
from collections.abc import Iterator


def read_json_lines(pattern: str) -> Iterator[dict]:
    """Every JSON object in the files matching `pattern` (predictions or dead letters)."""
    from apache_beam.io.filesystems import FileSystems

    from mnistkit.pipeline.io.files import match_files

    for path, _ in match_files(pattern):
        with FileSystems.open(path) as f:
            for line in f:
                if line.strip():
                    yield json.loads(line)
