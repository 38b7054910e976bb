"""Pure ASGI middleware: request latency metrics and a cap on request body size.

The hot routes (app/api/fast.py) sit in front of these and do the same two jobs inline, with the
helpers below, so that a scoring request does not pay for two wrappers and a wrapped `send`."""

from __future__ import annotations

import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app import metrics
from app.api.errors import too_large


class LatencyMetrics:
    """Observes every HTTP request by route template (not raw path: bounded label values)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            template = getattr(scope.get("route"), "path", "unmatched")
            metrics.request_seconds(template, scope["method"], status).observe(time.perf_counter() - started)


def declared_length_ok(scope: Scope, max_bytes: int) -> bool | None:
    """Whether the Content-Length header is a number within `max_bytes`; None when there is none."""
    for name, value in scope["headers"]:
        if name == b"content-length":
            return value.isdigit() and int(value) <= max_bytes
    return None


async def read_bounded(receive: Receive, max_bytes: int) -> bytes | None:
    """The whole request body, or None as soon as it grows past `max_bytes`."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > max_bytes:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


class BodyLimit:
    """Answers 413 to bodies over `max_bytes`, by Content-Length or while reading a chunked body."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = declared_length_ok(scope, self.max_bytes)
        if declared is False:
            await too_large(self.max_bytes).send(send)
            return
        if declared:  # the server stops at the declared length: the app may read as it likes
            await self.app(scope, receive, send)
            return
        # No length given: read the body here, bounded, and replay it to the app.
        body = await read_bounded(receive, self.max_bytes)
        if body is None:
            await too_large(self.max_bytes).send(send)
            return
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if sent:
                return await receive()
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)
