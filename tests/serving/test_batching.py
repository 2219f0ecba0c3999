"""The server-side micro-batcher on its own: joins concurrent requests, splits results back, bounds its queue."""

from __future__ import annotations

import asyncio
import threading

import numpy as np
import pytest

from mnistkit.pipeline.serving.batching import MicroBatcher, Overloaded


def _rows(first_key: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    keys = np.arange(first_key, first_key + n, dtype=np.int64)
    return keys, np.repeat(keys[:, None].astype(np.float32), 784, axis=1)


class _Model:
    """A model whose answer is a function of its inputs (class = key % 10), recording its calls."""

    def __init__(self, gate: threading.Event | None = None, fail_key: int | None = None) -> None:
        self.calls: list[int] = []
        self._gate = gate
        self._fail_key = fail_key

    def __call__(self, keys, images):
        if self._gate is not None:
            self._gate.wait(10)
        self.calls.append(len(keys))
        assert (images[:, 0] == keys).all()  # rows stay with their keys
        probabilities = np.zeros((len(keys), 10), np.float32)
        probabilities[np.arange(len(keys)), keys % 10] = 1
        errors = {int(i): "poisoned" for i in np.flatnonzero(keys == self._fail_key)}
        return probabilities, keys % 10, errors, "v1"


def test_concurrent_requests_share_model_calls_and_get_their_own_rows_back():
    model = _Model()

    async def main():
        batcher = MicroBatcher(model, max_batch=64, max_wait_s=0.05)
        batcher.start()
        results = await asyncio.gather(*(batcher.submit(*_rows(10 * i, 3)) for i in range(20)))
        await batcher.stop()
        return results

    results = asyncio.run(main())
    for i, result in enumerate(results):
        assert result.classes.tolist() == [(10 * i + j) % 10 for j in range(3)]
        assert result.errors == {} and result.model_version == "v1"
    assert sum(model.calls) == 60 and len(model.calls) < 20 and max(model.calls) <= 64


def test_a_request_over_max_batch_goes_alone_and_row_errors_stay_with_their_request():
    model = _Model(fail_key=101)

    async def main():
        batcher = MicroBatcher(model, max_batch=8, max_wait_s=0.05)
        batcher.start()
        big, small = await asyncio.gather(batcher.submit(*_rows(0, 20)), batcher.submit(*_rows(100, 4)))
        await batcher.stop()
        return big, small

    big, small = asyncio.run(main())
    assert model.calls == [20, 4]
    assert big.errors == {} and small.errors == {1: "poisoned"}


def test_a_full_queue_refuses_at_once_and_recovers():
    gate = threading.Event()
    model = _Model(gate)

    async def main():
        batcher = MicroBatcher(model, max_batch=4, max_wait_s=0, max_queued_rows=8)
        batcher.start()
        running = asyncio.ensure_future(batcher.submit(*_rows(0, 4)))
        await asyncio.sleep(0.05)  # the first call now blocks in the model; the queue is empty
        waiting = [asyncio.ensure_future(batcher.submit(*_rows(10 * i, 4))) for i in (1, 2)]
        await asyncio.sleep(0.01)
        with pytest.raises(Overloaded):
            await batcher.submit(*_rows(50, 1))
        gate.set()
        done = await asyncio.gather(running, *waiting)
        after = await batcher.submit(*_rows(60, 2))
        await batcher.stop()
        return done, after, batcher.queued_rows

    done, after, queued = asyncio.run(main())
    assert [len(r.classes) for r in done] == [4, 4, 4] and after.classes.tolist() == [0, 1] and queued == 0


def test_a_client_that_gives_up_costs_nobody_else():
    gate = threading.Event()
    model = _Model(gate)

    async def main():
        batcher = MicroBatcher(model, max_batch=4, max_wait_s=0)
        batcher.start()
        first = asyncio.ensure_future(batcher.submit(*_rows(0, 4)))
        await asyncio.sleep(0.05)
        abandoned = asyncio.ensure_future(batcher.submit(*_rows(10, 4)))
        kept = asyncio.ensure_future(batcher.submit(*_rows(20, 4)))
        await asyncio.sleep(0.01)
        abandoned.cancel()
        gate.set()
        results = await asyncio.gather(first, kept)
        await batcher.stop()
        return results

    first, kept = asyncio.run(main())
    assert kept.classes.tolist() == [0, 1, 2, 3] and model.calls == [4, 4]


def test_a_broken_model_fails_the_waiting_requests_not_the_batcher():
    calls = []

    def broken(keys, images):
        calls.append(len(keys))
        if len(calls) == 1:
            raise RuntimeError("no model")
        return _Model()(keys, images)

    async def main():
        batcher = MicroBatcher(broken, max_batch=4, max_wait_s=0)
        batcher.start()
        with pytest.raises(RuntimeError, match="no model"):
            await batcher.submit(*_rows(0, 2))
        result = await batcher.submit(*_rows(7, 1))
        await batcher.stop()
        return result

    assert asyncio.run(main()).classes.tolist() == [7]
