"""Run-specific output places, and the commit that makes a finished run's outputs the current ones.

A batch run writes each of its file outputs under a folder of its own, `<prefix>-run-<id>/`, so
a run that fails or is killed leaves the previous outputs as they were. Only once every sink
has finished does the commit step replace them: delete the previous outputs, rename the run's
files into place, remove the run's folder. The summary, written after the commit, is the mark of
a finished run: outputs without it are not a finished run's.

What is atomic: a local rename (os.rename, one file at a time). On GCS a rename is a copy then a
delete, so for a moment an object can exist under both names; and no store renames a set of
files at once, so a commit that dies half-way leaves part of the old and part of the new files,
no summary, and the run folder with the files not yet moved; a rerun with `--overwrite` cleans
it all and writes the outputs again.
"""

from __future__ import annotations

import glob
import os
import secrets
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from apache_beam.io.filesystems import FileSystems

__all__ = ["RUN_MARK", "StagedPrefix", "commit", "new_run_id", "remove_folders", "run_folders"]

# Between an output prefix and a run id. `preds-run-…/` matches no output pattern
# (`preds-[0-9]*-of-…`, `preds-errors-*.jsonl`: a `*` stops at `/`), and stays beside the outputs,
# under whatever prefix the outputs may be written to.
RUN_MARK = "-run-"


def new_run_id() -> str:
    """A run id that sorts by start time and does not collide between concurrent runs."""
    return f"{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}-{secrets.token_hex(4)}"


@dataclass(frozen=True)
class StagedPrefix:
    """An output prefix (`final`: files `final-…`) and where one run writes it first."""

    final: str
    run_id: str

    @property
    def folder(self) -> str:
        return f"{self.final}{RUN_MARK}{self.run_id}"

    @property
    def staged(self) -> str:
        """The prefix the run's sink writes to: `folder/<basename of final>`."""
        return FileSystems.join(self.folder, _basename(self.final))

    def final_name(self, staged_path: str) -> str:
        """Where a file written under `staged` goes on commit."""
        name = _basename(staged_path)
        return self.final[: len(self.final) - len(_basename(self.final))] + name


def _basename(path: str) -> str:
    return path.rsplit("/", 1)[-1]


def run_folders(final: str) -> list[str]:
    """The run folders of `final` that exist: runs in progress elsewhere, or left by killed ones."""
    pattern = f"{final}{RUN_MARK}*"
    if "://" not in final:
        return sorted(path for path in glob.glob(glob.escape(final) + RUN_MARK + "*") if os.path.isdir(path))
    # Object stores have no folders: a run folder is the common prefix of the objects under it.
    start = len(final) + len(RUN_MARK)
    matched = [m.path for result in FileSystems.match([pattern + "/**"]) for m in result.metadata_list]
    return sorted({path[: path.index("/", start)] for path in matched})


def remove_folders(folders: Iterable[str]) -> None:
    """Delete run folders and all they hold (a trailing `/` makes GCS delete recursively)."""
    paths = [folder.rstrip("/") + "/" if "://" in folder else folder for folder in folders]
    paths = [path for path in paths if "://" in path or os.path.isdir(path)]
    if paths:
        FileSystems.delete(paths)


def commit(
    staged_files: Sequence[str], prefixes: Sequence[StagedPrefix], previous_patterns: Sequence[str]
) -> list[str]:
    """Replace the files matching `previous_patterns` with `staged_files`; returns the final names.

    Every staged file lies under one of `prefixes`' folders, which are removed afterwards. The
    previous files are deleted before any is replaced, so a previous summary among them never
    vouches for a half-done commit.
    """
    previous = [m.path for result in FileSystems.match(list(previous_patterns)) for m in result.metadata_list]
    moves = []
    for path in sorted(staged_files):
        (prefix,) = [p for p in prefixes if path.startswith(p.folder + "/")]
        moves.append((path, prefix.final_name(path)))
    kept = {final for _, final in moves}
    stale = [path for path in previous if path not in kept]
    if stale:
        FileSystems.delete(stale)
    if moves:
        # A local rename replaces an existing file; so does a GCS copy over an object.
        FileSystems.rename([source for source, _ in moves], [final for _, final in moves])
    remove_folders(sorted({p.folder for p in prefixes}))
    return [final for _, final in moves]
