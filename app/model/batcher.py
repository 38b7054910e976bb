"""Dynamic micro-batching: rows from concurrent requests share one forward pass.

A bounded queue of jobs; a batch closes when it is full (max rows) or when the first queued job has
waited max_delay. One batch is in flight at a time, in one worker thread, off the event loop.
Jobs whose request has gone (cancelled future) or whose deadline has passed are skipped.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from app import metrics

Rows = npt.NDArray[np.float32]
Output = tuple[Rows, Rows | None]  # logits, input gradients (when explained)
RunBatch = Callable[[Rows, bool], Output]


class QueueFull(Exception):
    """More rows are waiting than the queue holds: the caller should back off."""


class DeadlineExceeded(Exception):
    """The rows were not scored before the request's deadline."""


class BatcherStopped(Exception):
    """The service is shutting down and takes no new work."""


@dataclass
class _Job:
    rows: Rows
    explain: bool
    deadline: float
    future: asyncio.Future[Output]
    enqueued: float = field(default_factory=time.perf_counter)


_STOP = object()


class MicroBatcher:
    def __init__(self, run_batch: RunBatch, max_rows: int, max_delay_s: float, queue_max_rows: int) -> None:
        self._run_batch = run_batch
        self.max_rows = max_rows
        self.max_delay_s = max_delay_s
        self.queue_max_rows = queue_max_rows
        self._queue: asyncio.Queue[_Job | object] = asyncio.Queue()
        self._queued_rows = 0
        self._carry: _Job | object | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="inference")
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    async def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="micro-batcher")

    async def stop(self) -> None:
        """Take no new work, finish what is queued and in flight."""
        self._stopping = True
        self._queue.put_nowait(_STOP)
        if self._task:
            await self._task
        self._executor.shutdown(wait=True)

    async def submit(self, rows: Rows, explain: bool, timeout_s: float) -> Output:
        """Score `rows` (split into chunks of at most max_rows); raise QueueFull or DeadlineExceeded."""
        if self._stopping:
            raise BatcherStopped
        if self._queued_rows + len(rows) > self.queue_max_rows:
            raise QueueFull
        loop = asyncio.get_running_loop()
        deadline = time.perf_counter() + timeout_s
        jobs = [
            _Job(rows[start : start + self.max_rows], explain, deadline, loop.create_future())
            for start in range(0, len(rows), self.max_rows)
        ]
        for job in jobs:
            self._queue.put_nowait(job)
        self._queued_rows += len(rows)
        metrics.QUEUE_ROWS.set(self._queued_rows)
        try:
            outputs = await asyncio.wait_for(asyncio.gather(*(j.future for j in jobs)), timeout_s)
        except TimeoutError as error:
            raise DeadlineExceeded from error
        finally:
            for job in jobs:  # on timeout or cancellation, the loop must skip what is still queued
                job.future.cancel()
        logits = np.concatenate([o[0] for o in outputs])
        gradients = [o[1] for o in outputs]
        return logits, (np.concatenate(gradients) if explain else None)  # type: ignore[arg-type]

    async def _loop(self) -> None:
        while True:
            first = self._carry if self._carry is not None else await self._queue.get()
            self._carry = None
            if first is _STOP:
                return
            assert isinstance(first, _Job)
            batch, rows = [first], len(first.rows)
            flush_at = first.enqueued + self.max_delay_s
            while rows < self.max_rows:
                try:
                    wait = flush_at - time.perf_counter()
                    more = (
                        self._queue.get_nowait()
                        if wait <= 0
                        else await asyncio.wait_for(self._queue.get(), wait)
                    )
                except (asyncio.QueueEmpty, TimeoutError):
                    break
                if not isinstance(more, _Job) or rows + len(more.rows) > self.max_rows:
                    self._carry = more  # the stop marker, or a job for the next batch
                    break
                batch.append(more)
                rows += len(more.rows)
            self._queued_rows -= rows
            metrics.QUEUE_ROWS.set(self._queued_rows)
            await self._run(batch)

    async def _run(self, batch: list[_Job]) -> None:
        now = time.perf_counter()
        live = []
        for job in batch:
            if job.future.done():  # cancelled: the request gave up or its client went away
                metrics.JOBS_SKIPPED.labels("cancelled").inc()
                continue
            if job.deadline < now:
                job.future.set_exception(DeadlineExceeded())
                metrics.JOBS_SKIPPED.labels("deadline").inc()
                continue
            metrics.QUEUE_WAIT_SECONDS.observe(now - job.enqueued)
            live.append(job)
        if not live:
            return
        rows = np.concatenate([job.rows for job in live]) if len(live) > 1 else live[0].rows
        explain = any(job.explain for job in live)
        metrics.BATCH_ROWS.observe(len(rows))
        started = time.perf_counter()
        try:
            logits, gradients = await asyncio.get_running_loop().run_in_executor(
                self._executor, self._run_batch, rows, explain
            )
        except Exception as error:  # a failed batch fails its requests, not the batcher
            for job in live:
                if not job.future.done():
                    job.future.set_exception(error)
            return
        metrics.INFERENCE_SECONDS.observe(time.perf_counter() - started)
        offset = 0
        for job in live:
            end = offset + len(job.rows)
            if not job.future.done():
                job.future.set_result(
                    (logits[offset:end], None if gradients is None else gradients[offset:end])
                )
            offset = end
