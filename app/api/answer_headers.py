"""The headers every answer gets, in one wrapper of `send` per request (it runs for every request):

- `X-Request-ID`: the client's when it sends a usable one, else a new one; it is also put on every log
  line written while the request is served, and every 5xx answer is logged with it;
- `Connection: close` once a shutdown is draining (app/api/drain.py), so that no client keeps a
  connection to a replica that is about to stop.
"""

from __future__ import annotations

import itertools
import logging
import re
import secrets

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.api.auth import header
from app.api.drain import Drain
from app.logs import REQUEST_ID

log = logging.getLogger("churn")
USABLE = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")  # safe in logs and headers as it is
# A random prefix per process and a counter: unique across replicas without a random draw per request.
_PREFIX = secrets.token_hex(4)
_COUNTER = itertools.count(1)
CLOSE = (b"connection", b"close")


def new_request_id() -> str:
    return f"{_PREFIX}{next(_COUNTER):08x}"


class AnswerHeaders:
    def __init__(self, app: ASGIApp, drain: Drain) -> None:
        self.app = app
        self.drain = drain

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = header(scope["headers"], b"x-request-id")
        request_id = given if given is not None and USABLE.match(given) else new_request_id()
        token = REQUEST_ID.set(request_id)
        stamp = (b"x-request-id", request_id.encode())

        async def stamped(message: Message) -> None:
            if message["type"] == "http.response.start":
                status = message["status"]
                extra = [stamp, CLOSE] if self.drain.draining else [stamp]
                message = {**message, "headers": [*message.get("headers", []), *extra]}
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
