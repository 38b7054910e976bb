"""A request id for every request: the client's `X-Request-ID` when it sends a usable one, else a new
one; returned as `X-Request-ID` and put on every log line written while the request is served."""

from __future__ import annotations

import logging
import re
import secrets

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.api.auth import header
from app.logs import REQUEST_ID

log = logging.getLogger("churn")
USABLE = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")  # safe in logs and headers as it is


class RequestIds:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = header(scope["headers"], b"x-request-id")
        request_id = given if given is not None and USABLE.match(given) else secrets.token_hex(8)
        token = REQUEST_ID.set(request_id)
        stamp = (b"x-request-id", request_id.encode())

        async def stamped(message: Message) -> None:
            if message["type"] == "http.response.start":
                status = message["status"]
                message = {**message, "headers": [*message.get("headers", []), stamp]}
                if status >= 500:
                    log.error("answered %d", status, extra={"path": scope["path"], "status": status})
            await send(message)

        try:
            await self.app(scope, receive, stamped)
        except Exception:
            log.exception("unhandled error", extra={"path": scope["path"], "status": 500})
            raise
        finally:
            REQUEST_ID.reset(token)
