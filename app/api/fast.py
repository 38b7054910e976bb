"""Raw ASGI handlers for the two hot routes, in front of the FastAPI router.

FastAPI's routing, dependency solving and request/response objects cost more per request than the
scoring itself once scoring is batched (see the README's benchmarks). These handlers call the very
same `answer` functions as the FastAPI routes, which stay mounted and documented in the OpenAPI
schema; only the dispatch differs. Every other path goes to FastAPI.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from starlette.datastructures import State
from starlette.types import ASGIApp, Receive, Scope, Send

from app.api import events, score
from app.api.errors import Reply, reply_for

Handler = Callable[[State, bytes, Receive], Awaitable[Reply]]

HANDLERS: dict[str, Handler] = {
    "/score": lambda state, body, receive: score.answer(state.scoring, body, receive),
    "/events": lambda state, body, _: events.answer(state.store, state.clock, body),
}
ROUTE_KEY = "churn.route"  # the route template, for the latency metrics


class FastRoutes:
    def __init__(self, app: ASGIApp, state: State) -> None:
        self.app = app
        self.state = state  # the app's state, where the lifespan puts the store and the scoring service

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        handler = HANDLERS.get(scope["path"]) if scope["type"] == "http" else None
        if handler is None or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        scope[ROUTE_KEY] = scope["path"]
        try:
            reply = await handler(self.state, await read_body(receive), receive)
        except Exception as exc:
            answer = reply_for(exc)
            if answer is None:
                raise
            reply = answer
        await reply.send(send)


async def read_body(receive: Receive) -> bytes:
    """The whole request body (BodyLimit, outside this middleware, has already bounded its size)."""
    message = await receive()
    if not message.get("more_body", False):
        return bytes(message.get("body", b""))
    chunks = [message.get("body", b"")]
    while message.get("more_body", False):
        message = await receive()
        chunks.append(message.get("body", b""))
    return b"".join(chunks)
