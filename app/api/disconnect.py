"""Wait for a queued job, unless its client goes away first or its deadline passes."""

from __future__ import annotations

import asyncio
import time
from typing import Any, TypeVar

from starlette.types import Receive

from app.model.batcher import DeadlineExceeded, Job

R = TypeVar("R")


class ClientGone(Exception):
    """The client closed the connection before its answer was ready."""


async def _disconnected(receive: Receive) -> None:
    # The body has been read, so the next ASGI message can only be the disconnect.
    while (await receive())["type"] != "http.disconnect":
        pass


async def result_unless_gone(job: Job[Any, R], receive: Receive) -> R:
    """The job's result. If the client disconnects first, the job is cancelled (the batcher then skips
    it) and ClientGone is raised; past its deadline, DeadlineExceeded.

    One watcher task and one timer per request, and callbacks rather than asyncio.wait: this runs for
    every scoring request."""
    future = job.future
    loop = asyncio.get_running_loop()
    watcher = loop.create_task(_disconnected(receive))
    watcher.add_done_callback(lambda _: future.cancel())
    timer = loop.call_later(max(0.0, job.deadline - time.perf_counter()), _expire, future)
    try:
        return await future
    except asyncio.CancelledError:
        if watcher.done() and not watcher.cancelled():
            raise ClientGone from None
        raise
    finally:
        timer.cancel()
        if not watcher.done():
            watcher.cancel()


def _expire(future: asyncio.Future[Any]) -> None:
    if not future.done():
        future.set_exception(DeadlineExceeded())
