"""Wait for a queued job, unless its client goes away first."""

from __future__ import annotations

import asyncio
from typing import Any, TypeVar

from starlette.types import Receive

from app.model.batcher import Job

R = TypeVar("R")
WATCH_AFTER_S = 0.02  # longer than most jobs wait under load (single-user p99 is a few milliseconds)


class ClientGone(Exception):
    """The client closed the connection before its answer was ready."""


async def _disconnected(receive: Receive) -> None:
    # The body has been read, so the next ASGI message can only be the disconnect.
    while (await receive())["type"] != "http.disconnect":
        pass


async def result_unless_gone(job: Job[Any, R], receive: Receive) -> R:
    """The job's result (or the batcher's DeadlineExceeded). If the client disconnects first, the job is
    cancelled (the batcher then skips it) and ClientGone is raised.

    The watcher task starts only once the job has waited WATCH_AFTER_S: most jobs are answered sooner,
    and a task per request costs more than a timer (a client gone within that time costs one user's share
    of a batch)."""
    future = job.future
    loop = asyncio.get_running_loop()
    watcher: asyncio.Task[None] | None = None

    def watch() -> None:
        nonlocal watcher
        watcher = loop.create_task(_disconnected(receive))
        watcher.add_done_callback(lambda _: future.cancel())

    timer = loop.call_later(WATCH_AFTER_S, watch)
    try:
        return await future
    except asyncio.CancelledError:
        if watcher is not None and watcher.done() and not watcher.cancelled():
            raise ClientGone from None
        raise
    finally:
        timer.cancel()
        if watcher is not None and not watcher.done():
            watcher.cancel()
