"""Compiled fast paths (numba) that a process loads only once it has parsed enough rows without them.

`import numba` and loading a cached kernel cost ~0.3–0.5 s, more than a small run spends
parsing; so each fast path (textparse.py, exampleparse.py) starts out absent and is loaded on
the batch that takes the process past its threshold, or at once by a run that knows its input is
big (parsing.load_fast_path). Without numba installed, parsing keeps the per-record paths, which
decide every row the same way.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

import numpy as np

__all__ = ["LazyKernel", "packed"]

_LOGGER = logging.getLogger(__name__)
K = TypeVar("K")


class LazyKernel(Generic[K]):
    """One process's kernel: `get` returns None until `after_rows` rows were counted, then the kernel."""

    def __init__(self, load: Callable[[], K], what: str) -> None:
        self.kernel: K | None = None
        self.rows_before = 0
        self.unavailable = False
        self._load = load
        self._what = what
        self._lock = threading.Lock()

    def get(self, rows: int, after_rows: int) -> K | None:
        if self.kernel is not None or self.unavailable:
            return self.kernel
        with self._lock:
            self.rows_before += rows  # racy counts only move the switch by a batch
            if self.rows_before > after_rows:
                self._load_once()
        return None

    def load_now(self) -> None:
        """Load the kernel now (a run that knows it is big); without numba, keep the per-record path."""
        with self._lock:
            self._load_once()

    def _load_once(self) -> None:
        if self.kernel is not None or self.unavailable:
            return
        try:
            self.kernel = self._load()
        except ImportError:
            _LOGGER.info("numba is not installed; %s rows keep the per-record parser", self._what)
            self.unavailable = True


def packed(records: Sequence[bytes], separator: bytes = b"") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`records` as one uint8 buffer (each followed by `separator`), with each one's start and length."""
    n = len(records)
    lengths = np.fromiter(map(len, records), np.int64, n)
    starts = np.zeros(n, np.int64)
    np.cumsum(lengths[:-1] + len(separator), out=starts[1:])
    buf = np.frombuffer(separator.join(records) + (separator if records else b""), np.uint8)
    return buf, starts, lengths
