"""Wait for a queued job, unless its client goes away first."""

from __future__ import annotations

import asyncio
from typing import Any, TypeVar

from starlette.types import Receive

from app.model.batcher import Job

R = TypeVar("R")


class ClientGone(Exception):
    """The client closed the connection before its answer was ready."""


async def _disconnected(receive: Receive) -> None:
    # The body has been read, so the next ASGI message can only be the disconnect.
    while (await receive())["type"] != "http.disconnect":
        pass


async def result_unless_gone(job: Job[Any, R], receive: Receive) -> R:
    """The job's result (or the batcher's DeadlineExceeded). If the client disconnects first, the job is
    cancelled (the batcher then skips it) and ClientGone is raised.

    One watcher task per request and a callback rather than asyncio.wait: this runs for every scoring
    request."""
    future = job.future
    watcher = asyncio.get_running_loop().create_task(_disconnected(receive))
    watcher.add_done_callback(lambda _: future.cancel())
    try:
        return await future
    except asyncio.CancelledError:
        if watcher.done() and not watcher.cancelled():
            raise ClientGone from None
        raise
    finally:
        if not watcher.done():
            watcher.cancel()
