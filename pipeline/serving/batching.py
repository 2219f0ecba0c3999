"""Server-side micro-batching: concurrent requests share one model call.

Requests queue their rows; one worker takes the first waiting request, adds whatever else
arrives within `max_wait_s` up to `max_batch` rows, and runs the model once, in a thread of its
own so the event loop keeps accepting requests meanwhile. While a call runs the next batch
fills, so under load batches grow by themselves and an idle server answers after one call.

Memory stays bounded: a request whose rows would lift the queue above `max_queued_rows` is
refused at once (`Overloaded`, which the server answers with 503), never parked.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

__all__ = ["BatchResult", "MicroBatcher", "Overloaded", "PredictFn"]

# (keys, images) → (probabilities, classes, errors by row index, model version), for one call.
PredictFn = Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray, dict[int, str], str]]


class Overloaded(Exception):
    """The queue is full; the client should retry later."""


@dataclass(frozen=True)
class BatchResult:
    """The outputs for one request's rows; `errors` maps a row index (in the request) to why it failed."""

    probabilities: np.ndarray
    classes: np.ndarray
    errors: dict[int, str]
    model_version: str
    batch_rows: int


@dataclass
class _Pending:
    keys: np.ndarray
    images: np.ndarray
    future: asyncio.Future


class MicroBatcher:
    """Joins the rows of concurrent `submit` calls into model calls of at most `max_batch` rows.

    A request larger than `max_batch` goes alone (the predict function splits it as it must).
    `on_batch(rows, seconds)` is told about every model call (the server's metrics).
    """

    def __init__(
        self,
        predict: PredictFn,
        *,
        max_batch: int = 64,
        max_wait_s: float = 0.005,
        max_queued_rows: int = 4096,
        on_batch: Callable[[int, float], None] | None = None,
    ) -> None:
        if max_batch < 1 or max_wait_s < 0 or max_queued_rows < max_batch:
            raise ValueError("need max_batch >= 1, max_wait_s >= 0 and max_queued_rows >= max_batch")
        self._predict = predict
        self._max_batch = max_batch
        self._max_wait_s = max_wait_s
        self._max_queued_rows = max_queued_rows
        self._on_batch = on_batch
        self._queue: asyncio.Queue[_Pending] = asyncio.Queue()
        self._queued_rows = 0
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="mnistkit-model")
        self._worker: asyncio.Task | None = None

    @property
    def queued_rows(self) -> int:
        return self._queued_rows

    def start(self) -> None:
        self._worker = asyncio.get_running_loop().create_task(self._run(), name="mnistkit-batcher")

    async def stop(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            try:
                await self._worker
            except asyncio.CancelledError:
                pass
        self._executor.shutdown(wait=True)

    async def submit(self, keys: np.ndarray, images: np.ndarray) -> BatchResult:
        """The model's outputs for these rows, once the batch they joined has run."""
        n = len(keys)
        if self._queued_rows and self._queued_rows + n > self._max_queued_rows:
            raise Overloaded(f"{self._queued_rows} rows are waiting; retry shortly")
        future = asyncio.get_running_loop().create_future()
        self._queued_rows += n
        self._queue.put_nowait(_Pending(keys, images, future))
        return await future

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        carried: _Pending | None = None  # a request too big to join the last call leads the next one
        while True:
            batch = [carried or await self._queue.get()]
            carried = None
            rows = len(batch[0].keys)
            deadline = loop.time() + self._max_wait_s
            while rows < self._max_batch:
                try:
                    if self._queue.empty():
                        remaining = deadline - loop.time()
                        if remaining <= 0:
                            break
                        item = await asyncio.wait_for(self._queue.get(), remaining)
                    else:
                        item = self._queue.get_nowait()
                except TimeoutError:
                    break
                if rows + len(item.keys) > self._max_batch:
                    carried = item
                    break
                batch.append(item)
                rows += len(item.keys)
            await self._call(loop, batch, rows)

    async def _call(self, loop: asyncio.AbstractEventLoop, batch: list[_Pending], rows: int) -> None:
        live = [p for p in batch if not p.future.done()]  # a client that gave up leaves a cancelled future
        self._queued_rows -= rows
        if not live:
            return
        keys = np.concatenate([p.keys for p in live])
        images = np.concatenate([p.images for p in live])
        started = time.perf_counter()
        try:
            probabilities, classes, errors, version = await loop.run_in_executor(
                self._executor, self._predict, keys, images
            )
        except Exception as exc:  # the model itself is broken: every waiting request learns why
            for p in live:
                if not p.future.done():
                    p.future.set_exception(exc)
            return
        if self._on_batch is not None:
            self._on_batch(len(keys), time.perf_counter() - started)
        start = 0
        for p in live:
            stop = start + len(p.keys)
            own = {i - start: why for i, why in errors.items() if start <= i < stop}
            if not p.future.done():
                result = BatchResult(probabilities[start:stop], classes[start:stop], own, version, len(keys))
                p.future.set_result(result)
            start = stop
