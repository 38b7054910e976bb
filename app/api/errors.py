"""Every error the API answers, as one JSON shape: {"error", "message", "detail": [{"field", "message"}]}.

`reply_for` maps an exception to its answer; the FastAPI exception handlers and the raw fast routes
both use it, so an error reads the same whichever path served the request.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from redis.exceptions import MaxConnectionsError, RedisClusterException, RedisError
from starlette.exceptions import HTTPException
from starlette.responses import Response
from starlette.types import Send

from app import metrics
from app.api.auth import Forbidden, Unauthenticated
from app.api.disconnect import ClientGone
from app.api.event_parsing import InvalidEvents
from app.api.ratelimit import RateLimited
from app.api.strict_json import DuplicateKey, MalformedJSON
from app.features.cluster import PartialWrite
from app.features.online import NotDurable
from app.model.batcher import BatcherStopped, DeadlineExceeded, QueueFull
from app.redis_client import PoolExhausted

RETRY_AFTER_S = b"1"
JSON = (b"content-type", b"application/json")


@dataclass(frozen=True)
class Reply:
    """A finished HTTP answer: what both the fast routes and FastAPI responses are made from."""

    status: int
    body: bytes
    headers: list[tuple[bytes, bytes]] = field(default_factory=lambda: [JSON])

    def response(self) -> Response:
        return Response(self.body, self.status, {k.decode(): v.decode() for k, v in self.headers})

    async def send(self, send: Send) -> None:
        """As raw ASGI messages, for the middleware and fast routes in front of FastAPI."""
        headers = [*self.headers, (b"content-length", str(len(self.body)).encode())]
        await send({"type": "http.response.start", "status": self.status, "headers": headers})
        await send({"type": "http.response.body", "body": self.body})


def field_path(loc: Sequence[Any]) -> str:
    """("body", "events", 3, "rating") -> "events[3].rating"."""
    parts = [p for p in loc if p not in ("body", "path", "query")]
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "body"


def error(
    status: int, code: str, message: str, detail: list[dict[str, str]] | None = None, retry: bool = False
) -> Reply:
    body = orjson.dumps({"error": code, "message": message, "detail": detail or []})
    headers = [JSON, (b"retry-after", RETRY_AFTER_S)] if retry else [JSON]
    return Reply(status, body, headers)


def invalid(errors: Sequence[Any]) -> Reply:
    detail = [{"field": field_path(e["loc"]), "message": e["msg"]} for e in errors]
    summary = "; ".join(f"{d['field']}: {d['message']}" for d in detail[:3])
    return error(422, "invalid_request", summary, detail)


def too_large(max_bytes: int) -> Reply:
    detail = [{"field": "body", "message": f"at most {max_bytes} bytes"}]
    return error(413, "payload_too_large", f"request body over {max_bytes} bytes", detail)


def malformed_json(message: str) -> Reply:
    return error(400, "malformed_json", message, [{"field": "body", "message": message}])


def repeated_key(exc: DuplicateKey) -> Reply:
    message = f"duplicate key: {exc.key!r} is given more than once in this object"
    return invalid([{"loc": exc.loc, "msg": message}])


def fastapi_json_error(exc: RequestValidationError) -> Reply | None:
    """FastAPI's own body parsing reports bad JSON at a character offset ("body", 57), which reads as
    a list index; this answers it as malformed JSON at a line and column instead."""
    for detail in exc.errors():
        if detail["type"] == "json_invalid" and isinstance(exc.body, str):
            text, offset = exc.body, int(detail["loc"][-1])
            line = text.count("\n", 0, offset) + 1
            column = offset - text.rfind("\n", 0, offset)
            reason = detail.get("ctx", {}).get("error", "invalid")
            return malformed_json(f"the body is not valid JSON: {reason} at line {line} column {column}")
    return None


# Statuses the API already has a code for; any other is named after its reason phrase ("not_found").
STATUS_CODES = {401: "unauthenticated", 403: "forbidden", 413: "payload_too_large", 422: "invalid_request"}


def status_code_name(status: int) -> str:
    if status in STATUS_CODES:
        return STATUS_CODES[status]
    try:
        return re.sub(r"[^a-z0-9]+", "_", HTTPStatus(status).phrase.lower()).strip("_")
    except ValueError:
        return f"http_{status}"


def http_error(exc: HTTPException) -> Reply:
    """Starlette's and FastAPI's HTTP errors (unknown path, method not allowed, ...), headers kept."""
    headers = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in (exc.headers or {}).items()]
    if exc.status_code in (204, 304):  # no body allowed
        return Reply(exc.status_code, b"", headers)
    reply = error(exc.status_code, status_code_name(exc.status_code), str(exc.detail))
    return Reply(reply.status, reply.body, [*reply.headers, *headers])


OVERLOADED = error(429, "overloaded", "the service is at capacity; retry shortly", retry=True)


def reply_for(exc: Exception) -> Reply | None:
    """The answer to an exception a request can end with; None for a bug (a 500). Refusals (429, 503)
    are counted by error code: the alerts on overload and on Redis read them."""
    refusal = _refusal(exc)
    if refusal is not None:
        code, reply = refusal
        metrics.REFUSALS.labels(code).inc()
        return reply
    match exc:
        case ValidationError():
            return invalid(exc.errors(include_url=False))
        case RequestValidationError():
            return fastapi_json_error(exc) or invalid(exc.errors())
        case InvalidEvents():
            return invalid(exc.errors)
        case MalformedJSON():
            return malformed_json(str(exc))
        case DuplicateKey():
            return repeated_key(exc)
        case HTTPException():
            return http_error(exc)
        case Unauthenticated():
            reply = error(401, "unauthenticated", str(exc))
            return Reply(reply.status, reply.body, [*reply.headers, (b"www-authenticate", b"Bearer")])
        case Forbidden():
            return error(403, "forbidden", str(exc))
        case ClientGone():
            # Nobody reads this answer; 499 marks the case in the latency metrics (nginx's convention).
            return error(499, "client_closed_request", "the client disconnected before its answer was ready")
    return None


def _refusal(exc: Exception) -> tuple[str, Reply] | None:
    """Requests the service could not serve for want of capacity or of Redis: (error code, answer)."""
    match exc:
        case QueueFull() | PoolExhausted() | MaxConnectionsError():
            # MaxConnectionsError: a cluster node's pool is exhausted (it does not wait): overload too.
            return "overloaded", OVERLOADED
        case NotDurable():
            return "not_durable", error(
                503, "not_durable", f"the events are not yet durable: {exc}", retry=True
            )
        case PartialWrite():
            return "partial_write", error(503, "partial_write", str(exc), retry=True)
        case RedisError() | RedisClusterException() | ConnectionError():
            message = f"the feature store is unavailable ({type(exc).__name__})"
            return "redis_unavailable", error(503, "redis_unavailable", message, retry=True)
        case DeadlineExceeded():
            message = "scoring did not finish before the request deadline"
            return "deadline_exceeded", error(503, "deadline_exceeded", message, retry=True)
        case BatcherStopped():
            return "shutting_down", error(503, "shutting_down", "the service is shutting down", retry=True)
        case RateLimited():
            reply = error(429, "rate_limited", str(exc))
            retry_after = str(max(1, math.ceil(exc.retry_after_s))).encode()
            return "rate_limited", Reply(
                reply.status, reply.body, [*reply.headers, (b"retry-after", retry_after)]
            )
    return None


def allowed_methods(request: Request) -> str:
    """Every documented method of the request's path, from the OpenAPI document. FastAPI's 405 names only
    those of the first route that matched the path, and a path with one route per method (POST and
    DELETE) has several."""
    path = request.url.path
    methods: set[str] = set()
    for template, item in request.app.openapi()["paths"].items():
        if re.fullmatch(re.sub(r"\\\{[^/]+?\\\}", "[^/]+", re.escape(template)), path):
            methods |= {method.upper() for method in item}
    return ", ".join(sorted(methods))


async def _handle(request: Request, exc: Exception) -> Response:
    if isinstance(exc, HTTPException) and exc.status_code == 405:
        headers = {**(exc.headers or {}), "Allow": allowed_methods(request)}
        exc = HTTPException(405, exc.detail, headers=headers)
    reply = reply_for(exc)
    if reply is None:
        raise exc
    return reply.response()


def install(app: FastAPI) -> None:
    for kind in (
        ValidationError,
        RequestValidationError,
        InvalidEvents,
        MalformedJSON,
        DuplicateKey,
        HTTPException,
        QueueFull,
        PoolExhausted,
        NotDurable,
        RedisError,
        RedisClusterException,
        ConnectionError,
        DeadlineExceeded,
        Unauthenticated,
        Forbidden,
        RateLimited,
        BatcherStopped,
        ClientGone,
    ):
        app.add_exception_handler(kind, _handle)
