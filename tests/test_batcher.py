"""The micro-batcher around the real engine of the committed model."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import numpy as np
import pytest

from app.model.batcher import BatcherStopped, DeadlineExceeded, MicroBatcher, QueueFull, Rows
from app.model.bundle import load_bundle
from app.model.engine import InferenceEngine

STORE = Path(__file__).resolve().parents[1] / "model_store"


@pytest.fixture(scope="module")
def engine() -> InferenceEngine:
    return InferenceEngine(load_bundle(STORE), "cpu")


def rows(n: int, seed: int = 0) -> Rows:
    return np.random.default_rng(seed).normal(size=(n, 46)).astype(np.float32)


class Recording:
    """The real engine, noting the size of every batch it is given (and optionally slowed down)."""

    def __init__(self, engine: InferenceEngine, delay_s: float = 0.0) -> None:
        self.engine, self.delay_s, self.sizes = engine, delay_s, list[int]()

    def __call__(self, batch: Rows, explain: bool) -> tuple[Rows, Rows | None]:
        self.sizes.append(len(batch))
        time.sleep(self.delay_s)
        return self.engine.forward(batch, explain)


def test_concurrent_jobs_share_batches_and_get_their_own_rows(engine: InferenceEngine) -> None:
    recording = Recording(engine)
    inputs = [rows(3, seed) for seed in range(20)]

    async def main() -> list[tuple[Rows, Rows | None]]:
        batcher = MicroBatcher(recording, max_rows=64, max_delay_s=0.002, queue_max_rows=1000)
        await batcher.start()
        outputs = await asyncio.gather(*(batcher.submit(x, True, 5.0) for x in inputs))
        await batcher.stop()
        return outputs

    outputs = asyncio.run(main())
    assert len(recording.sizes) < len(inputs) and sum(recording.sizes) == 60
    for x, (logits, gradients) in zip(inputs, outputs, strict=True):
        alone_logits, alone_gradients = engine.forward(x, True)
        np.testing.assert_allclose(logits, alone_logits, rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(gradients, alone_gradients, rtol=1e-6, atol=1e-6)  # type: ignore[arg-type]


def test_large_requests_are_split_into_bounded_batches(engine: InferenceEngine) -> None:
    recording = Recording(engine)
    x = rows(1000)

    async def main() -> Rows:
        batcher = MicroBatcher(recording, max_rows=256, max_delay_s=0.001, queue_max_rows=4096)
        await batcher.start()
        logits, _ = await batcher.submit(x, False, 5.0)
        await batcher.stop()
        return logits

    logits = asyncio.run(main())
    assert max(recording.sizes) <= 256 and sum(recording.sizes) == 1000
    np.testing.assert_allclose(logits, engine.forward(x, False)[0], rtol=1e-6, atol=1e-6)


def test_a_full_queue_refuses_and_a_slow_device_misses_deadlines(engine: InferenceEngine) -> None:
    async def main() -> None:
        batcher = MicroBatcher(Recording(engine, delay_s=0.3), max_rows=8, max_delay_s=0, queue_max_rows=16)
        await batcher.start()
        with pytest.raises(QueueFull):
            await batcher.submit(rows(17), False, 5.0)
        with pytest.raises(DeadlineExceeded):
            await batcher.submit(rows(4), False, 0.05)
        await batcher.stop()

    asyncio.run(main())


def test_stop_finishes_queued_work_then_refuses_more(engine: InferenceEngine) -> None:
    async def main() -> None:
        batcher = MicroBatcher(Recording(engine, delay_s=0.02), max_rows=4, max_delay_s=0, queue_max_rows=100)
        await batcher.start()
        pending = [asyncio.create_task(batcher.submit(rows(4, s), False, 5.0)) for s in range(5)]
        await asyncio.sleep(0)
        await batcher.stop()
        results = [await task for task in pending]
        assert [len(logits) for logits, _ in results] == [4] * 5
        with pytest.raises(BatcherStopped):
            await batcher.submit(rows(1), False, 1.0)

    asyncio.run(main())


def test_jobs_whose_request_gave_up_are_skipped(engine: InferenceEngine) -> None:
    recording = Recording(engine, delay_s=0.2)

    async def main() -> None:
        batcher = MicroBatcher(recording, max_rows=4, max_delay_s=0, queue_max_rows=100)
        await batcher.start()
        busy = asyncio.create_task(batcher.submit(rows(4), False, 5.0))
        await asyncio.sleep(0.05)  # the first batch now occupies the device
        gone = asyncio.create_task(batcher.submit(rows(3), False, 5.0))
        await asyncio.sleep(0.01)
        gone.cancel()
        await busy
        await batcher.stop()

    asyncio.run(main())
    assert recording.sizes == [4]  # the 3 rows of the cancelled request never reached the model


def test_a_disconnecting_client_cancels_its_work() -> None:
    from starlette.requests import Request

    from app.api.disconnect import ClientGone, unless_disconnected

    async def main() -> bool:
        async def receive() -> dict[str, str]:
            await asyncio.sleep(0.01)
            return {"type": "http.disconnect"}

        work = asyncio.ensure_future(asyncio.sleep(10))
        with pytest.raises(ClientGone):
            await unless_disconnected(Request({"type": "http", "method": "POST"}, receive), work)
        await asyncio.sleep(0)
        return work.cancelled()

    assert asyncio.run(main())
