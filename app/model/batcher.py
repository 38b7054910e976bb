"""Dynamic micro-batching: jobs of concurrent requests share one pass of the expensive steps.

A bounded queue of jobs, measured in rows (users); a batch closes when it is full (max rows) or when
its first job has waited max_delay. One batch is processed at a time. Jobs whose request has gone
(cancelled future) or whose deadline has passed are dropped before processing. A job is never split:
max_rows is at least the largest job a request can make.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import numpy as np

from app import metrics


class QueueFull(Exception):
    """More rows are waiting than the queue holds: the caller should back off."""


class DeadlineExceeded(Exception):
    """The job was not processed before its request's deadline."""


class BatcherStopped(Exception):
    """The service is shutting down and takes no new work."""


P = TypeVar("P")  # what a job asks for
R = TypeVar("R")  # what it gets back


@dataclass(eq=False)
class Job(Generic[P, R]):
    payload: P
    rows: int
    future: asyncio.Future[R]
    expiry: asyncio.TimerHandle | None = None  # fails the future with DeadlineExceeded when it fires
    enqueued: float = field(default_factory=time.perf_counter)


PACE_MIN_ROWS = 64  # smaller batches are mostly fixed cost: they would overstate the time per row
PACE_SMOOTHING = 0.2  # weight of the newest batch in the smoothed time per row
Process = Callable[[list[Job[P, R]]], Awaitable[list[R]]]


class MicroBatcher(Generic[P, R]):
    def __init__(
        self,
        process: Process[P, R],
        max_rows: int,
        max_delay_s: float,
        queue_max_rows: int,
        queue_max_wait_s: float = float("inf"),
    ) -> None:
        self._process = process
        self.max_rows = max_rows
        self.max_delay_s = max_delay_s
        self.queue_max_rows = queue_max_rows
        self.queue_max_wait_s = queue_max_wait_s
        # Measured time to process a row (smoothed), over batches big enough that their fixed cost does
        # not dominate; None until such a batch has run.
        self._seconds_per_row: float | None = None
        # A deque and one wake-up future rather than an asyncio.Queue: waiting on a queue with a
        # timeout costs a task per job, and jobs arrive by the ten thousand per second.
        self._queue: deque[Job[P, R]] = deque()
        self._queued_rows = 0
        self._running_rows = 0  # of the batch being processed: admitted, not yet scored
        self._wakeup: asyncio.Future[None] | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    async def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="micro-batcher")

    async def stop(self) -> None:
        """Take no new work, finish what is queued and in flight."""
        self._stopping = True
        self._wake()
        if self._task:
            await self._task

    def has_room(self, rows: int = 1) -> bool:
        """Whether `rows` more would be admitted now: the check a request makes before any work.

        Two bounds: rows admitted and not yet scored (queued, or in the batch being processed), and the
        time they would take to score at the measured pace, so that admitted requests keep a bounded
        latency however slow the batches are."""
        if self._stopping:
            return False
        ahead = self._queued_rows + self._running_rows  # the batch being processed is waited for too
        if ahead + rows > self.queue_max_rows:
            return False
        if ahead == 0 or self._seconds_per_row is None:
            # Nothing to wait behind: always admitted, so a pace measured on a slow batch can never
            # shut the door for good (no batch would run to measure a better one).
            return True
        return (ahead + rows) * self._seconds_per_row <= self.queue_max_wait_s

    def submit(self, payload: P, rows: int, timeout_s: float) -> Job[P, R]:
        """Queue a job; await `job.future` for its result, or DeadlineExceeded once `timeout_s` has
        passed (also while its batch is being processed). Raises QueueFull or BatcherStopped at once."""
        if self._stopping:
            raise BatcherStopped
        if rows > self.max_rows:
            raise ValueError(f"a job of {rows} rows exceeds the batch size {self.max_rows}")
        if not self.has_room(rows):
            raise QueueFull
        loop = asyncio.get_running_loop()
        future: asyncio.Future[R] = loop.create_future()
        job = Job(payload, rows, future, loop.call_later(timeout_s, _expire, future))
        self._queue.append(job)
        self._queued_rows += rows
        # The queue gauge is set as each batch is taken, not here: it is read at scrapes seconds apart,
        # and a set per request takes a lock in prometheus_client on every single-user request.
        if len(self._queue) == 1 or self._queued_rows >= self.max_rows:
            self._wake()  # a first job starts the delay; a full batch ends it
        return job

    def _wake(self) -> None:
        if self._wakeup is not None and not self._wakeup.done():
            self._wakeup.set_result(None)

    async def _sleep(self, until: float | None) -> None:
        """Until woken by submit/stop, or until the perf_counter time `until`."""
        loop = asyncio.get_running_loop()
        self._wakeup = loop.create_future()
        timer = None
        if until is not None:
            timer = loop.call_later(max(0.0, until - time.perf_counter()), self._wake)
        try:
            await self._wakeup
        finally:
            self._wakeup = None
            if timer is not None:
                timer.cancel()

    async def _loop(self) -> None:
        while True:
            if not self._queue:
                if self._stopping:
                    return
                await self._sleep(None)
                continue
            flush_at = self._queue[0].enqueued + self.max_delay_s
            while not self._stopping and self._queued_rows < self.max_rows and time.perf_counter() < flush_at:
                await self._sleep(flush_at)
            batch = self._take_batch()
            self._running_rows = sum(job.rows for job in batch)
            started = time.perf_counter()
            try:
                await self._run(batch)
            finally:
                self._running_rows = 0
            # The pace is the batch's own time per row. Not the whole cycle between batches: that also
            # holds the loop's work of refusing requests, which grows as more are refused, and a pace
            # fed by it would refuse more still.
            self._measure(sum(job.rows for job in batch), time.perf_counter() - started)

    def _take_batch(self) -> list[Job[P, R]]:
        """Jobs from the front of the queue, up to max_rows (a job that does not fit waits its turn)."""
        batch: list[Job[P, R]] = []
        rows = 0
        while self._queue and rows + self._queue[0].rows <= self.max_rows:
            job = self._queue.popleft()
            batch.append(job)
            rows += job.rows
        self._queued_rows -= rows
        metrics.QUEUE_ROWS.set(self._queued_rows)
        return batch

    async def _run(self, batch: list[Job[P, R]]) -> None:
        now = time.perf_counter()
        live = []
        for job in batch:
            if job.future.done():  # the request gave up (its client went away) or its deadline passed
                metrics.JOBS_SKIPPED.labels("cancelled" if job.future.cancelled() else "deadline").inc()
            else:
                live.append(job)
        if not live:
            return
        metrics.observe_many(metrics.QUEUE_WAIT_SECONDS, now - np.array([job.enqueued for job in live]))
        metrics.BATCH_ROWS.observe(sum(job.rows for job in live))
        outcome: list[R] | Exception
        try:
            outcome = await self._process(live)
        except Exception as error:  # a failed batch fails its requests, not the batcher
            outcome = error
        for index, job in enumerate(live):
            if job.expiry is not None:
                job.expiry.cancel()
            if job.future.done():  # the request gave up or timed out while its batch ran
                continue
            if isinstance(outcome, Exception):
                job.future.set_exception(outcome)
            else:
                job.future.set_result(outcome[index])

    def _measure(self, rows: int, seconds: float) -> None:
        if rows < PACE_MIN_ROWS:
            return
        pace = seconds / rows
        previous = self._seconds_per_row
        self._seconds_per_row = pace if previous is None else previous + PACE_SMOOTHING * (pace - previous)


def _expire(future: asyncio.Future[Any]) -> None:
    if not future.done():
        future.set_exception(DeadlineExceeded())
