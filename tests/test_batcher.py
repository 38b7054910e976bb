"""The micro-batcher: gathering, bounds, deadlines, cancellation, shutdown."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from app.model.batcher import BatcherStopped, DeadlineExceeded, Job, MicroBatcher, QueueFull

Batch = list[Job[list[int], list[int]]]


class Recording:
    """A process step that doubles each job's numbers, notes every batch it gets, and can be slow."""

    def __init__(self, delay_s: float = 0.0) -> None:
        self.delay_s, self.batches = delay_s, list[list[list[int]]]()

    async def __call__(self, jobs: Batch) -> list[list[int]]:
        self.batches.append([job.payload for job in jobs])
        await asyncio.sleep(self.delay_s)
        return [[2 * x for x in job.payload] for job in jobs]


def run(
    recording: Recording, main: Callable[[MicroBatcher[list[int], list[int]]], Awaitable[None]], **kw: float
) -> None:
    options = {"max_rows": 64, "max_delay_s": 0.002, "queue_max_rows": 1000} | kw

    async def wrapper() -> None:
        batcher = MicroBatcher(
            recording, int(options["max_rows"]), options["max_delay_s"], int(options["queue_max_rows"])
        )
        await batcher.start()
        await main(batcher)
        await batcher.stop()

    asyncio.run(wrapper())


async def result(
    batcher: MicroBatcher[list[int], list[int]], payload: list[int], timeout: float = 5.0
) -> list[int]:
    return await batcher.submit(payload, len(payload), timeout).future


def test_concurrent_jobs_share_batches_and_get_their_own_results() -> None:
    recording = Recording()
    payloads = [[i, i + 100, i + 200] for i in range(20)]
    outputs: list[list[int]] = []

    async def main(batcher: MicroBatcher[list[int], list[int]]) -> None:
        outputs.extend(await asyncio.gather(*(result(batcher, p) for p in payloads)))

    run(recording, main)
    assert len(recording.batches) < len(payloads)
    assert all(sum(len(p) for p in batch) <= 64 for batch in recording.batches)
    assert outputs == [[2 * x for x in p] for p in payloads]


def test_a_batch_closes_when_full_and_jobs_are_never_split() -> None:
    recording = Recording()

    async def main(batcher: MicroBatcher[list[int], list[int]]) -> None:
        await asyncio.gather(*(result(batcher, [i] * 5) for i in range(6)))

    run(recording, main, max_rows=12, max_delay_s=0.05)
    assert [len(batch) for batch in recording.batches] == [2, 2, 2]  # 10 rows fit, a third job would not


def test_a_full_queue_refuses_at_once_and_a_slow_step_misses_deadlines() -> None:
    async def main(batcher: MicroBatcher[list[int], list[int]]) -> None:
        first = asyncio.ensure_future(result(batcher, [1] * 8))  # occupies the slow step
        await asyncio.sleep(0.01)
        queued = batcher.submit([2] * 16, 16, 0.05)  # waits behind it, past its deadline
        assert not batcher.has_room(1)  # 8 rows being scored and 16 queued: the 24 the queue holds
        with pytest.raises(QueueFull):
            batcher.submit([3], 1, 5.0)
        await first
        with pytest.raises(DeadlineExceeded):
            await queued.future
        assert batcher.has_room(24)  # all scored (or given up): room again for as many

    run(Recording(delay_s=0.3), main, max_rows=16, max_delay_s=0, queue_max_rows=24)


def test_stop_finishes_queued_work_then_refuses_more() -> None:
    recording = Recording(delay_s=0.02)

    async def main() -> None:
        batcher = MicroBatcher(recording, max_rows=4, max_delay_s=0, queue_max_rows=100)
        await batcher.start()
        jobs = [batcher.submit([s] * 4, 4, 5.0) for s in range(5)]
        await batcher.stop()
        assert [len(await job.future) for job in jobs] == [4] * 5
        assert not batcher.has_room()
        with pytest.raises(BatcherStopped):
            batcher.submit([1], 1, 1.0)

    asyncio.run(main())


def test_jobs_whose_request_gave_up_are_skipped() -> None:
    recording = Recording(delay_s=0.2)

    async def main(batcher: MicroBatcher[list[int], list[int]]) -> None:
        busy = batcher.submit([1] * 4, 4, 5.0)
        await asyncio.sleep(0.05)  # the first batch is now in the slow step
        gone = batcher.submit([2] * 3, 3, 5.0)
        gone.future.cancel()
        await busy.future

    run(recording, main, max_rows=4, max_delay_s=0)
    assert recording.batches == [[[1] * 4]]  # the cancelled job never reached the step


def test_a_failed_batch_fails_its_jobs_not_the_batcher() -> None:
    calls = 0

    async def flaky(jobs: Batch) -> list[list[int]]:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("device lost")
        return [job.payload for job in jobs]

    async def main() -> None:
        batcher = MicroBatcher(flaky, max_rows=8, max_delay_s=0, queue_max_rows=100)
        await batcher.start()
        with pytest.raises(RuntimeError):
            await batcher.submit([1], 1, 5.0).future
        assert await batcher.submit([2], 1, 5.0).future == [2]
        await batcher.stop()

    asyncio.run(main())


def test_a_disconnecting_client_cancels_its_job() -> None:
    from app.api.disconnect import ClientGone, result_unless_gone

    async def main() -> bool:
        async def receive() -> dict[str, str]:
            await asyncio.sleep(0.01)
            return {"type": "http.disconnect"}

        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        job: Job[None, int] = Job(None, 1, future)
        with pytest.raises(ClientGone):
            await result_unless_gone(job, receive)
        return future.cancelled()

    assert asyncio.run(main())


def test_the_queue_is_also_bounded_by_the_time_it_takes_to_drain() -> None:
    async def main() -> None:
        batcher = MicroBatcher(
            Recording(delay_s=0.1), max_rows=64, max_delay_s=0, queue_max_rows=1000, queue_max_wait_s=0.05
        )
        await batcher.start()
        assert batcher.has_room(1000)  # no pace measured yet: only the row bound applies
        jobs = [batcher.submit([1] * 64, 64, 5.0) for _ in range(2)]  # back to back: ~1.6 ms per row
        await asyncio.gather(*(job.future for job in jobs))
        first = batcher.submit([2] * 20, 20, 5.0)  # 20 rows drain in ~31 ms: admitted
        second = batcher.submit([3] * 10, 10, 5.0)  # 30 rows, ~47 ms: admitted
        with pytest.raises(QueueFull):
            batcher.submit([4] * 10, 10, 5.0)  # 40 rows would take ~62 ms: refused
        await first.future, await second.future
        await batcher.stop()

    asyncio.run(main())


def test_an_empty_queue_always_admits_even_after_a_slow_batch() -> None:
    async def main() -> None:
        batcher = MicroBatcher(
            Recording(delay_s=0.2), max_rows=64, max_delay_s=0, queue_max_rows=1000, queue_max_wait_s=0.01
        )
        await batcher.start()
        jobs = [batcher.submit([1] * 64, 64, 5.0) for _ in range(2)]  # ~3 ms per row, back to back
        await asyncio.gather(*(job.future for job in jobs))
        assert batcher.has_room(64)  # yet nothing is queued, so there is nothing to wait behind
        waiting = batcher.submit([2] * 64, 64, 5.0)
        assert not batcher.has_room(1)  # behind 64 queued rows a request would wait ~200 ms
        await waiting.future
        await batcher.stop()

    asyncio.run(main())
