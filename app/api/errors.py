"""Every error the API answers, as one JSON shape: {"error", "message", "detail": [{"field", "message"}]}."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from redis.exceptions import RedisError

from app.api.disconnect import ClientGone
from app.model.batcher import BatcherStopped, DeadlineExceeded, QueueFull

RETRY_AFTER_S = "1"


def field_path(loc: tuple[Any, ...]) -> str:
    """("body", "events", 3, "rating") -> "events[3].rating"."""
    parts = [p for p in loc if p not in ("body", "path", "query")]
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "body"


def error(
    status: int, code: str, message: str, detail: list[dict[str, str]] | None = None, retry: bool = False
) -> JSONResponse:
    headers = {"Retry-After": RETRY_AFTER_S} if retry else None
    body = {"error": code, "message": message, "detail": detail or []}
    return JSONResponse(body, status_code=status, headers=headers)


async def _validation(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    detail = [{"field": field_path(tuple(e["loc"])), "message": e["msg"]} for e in exc.errors()]
    summary = "; ".join(f"{d['field']}: {d['message']}" for d in detail[:3])
    return error(422, "invalid_request", summary, detail)


async def _redis_down(_: Request, exc: Exception) -> JSONResponse:
    return error(
        503, "redis_unavailable", f"the feature store is unavailable ({type(exc).__name__})", retry=True
    )


async def _queue_full(_: Request, __: Exception) -> JSONResponse:
    return error(429, "overloaded", "the scoring queue is full; retry shortly", retry=True)


async def _deadline(_: Request, __: Exception) -> JSONResponse:
    return error(503, "deadline_exceeded", "scoring did not finish before the request deadline", retry=True)


async def _stopping(_: Request, __: Exception) -> JSONResponse:
    return error(503, "shutting_down", "the service is shutting down", retry=True)


async def _client_gone(_: Request, __: Exception) -> JSONResponse:
    # Nobody reads this answer; 499 marks the case in the latency metrics (nginx's convention).
    return error(499, "client_closed_request", "the client disconnected before its scores were ready")


def install(app: FastAPI) -> None:
    app.add_exception_handler(ClientGone, _client_gone)
    app.add_exception_handler(RequestValidationError, _validation)
    app.add_exception_handler(RedisError, _redis_down)
    app.add_exception_handler(ConnectionError, _redis_down)
    app.add_exception_handler(QueueFull, _queue_full)
    app.add_exception_handler(DeadlineExceeded, _deadline)
    app.add_exception_handler(BatcherStopped, _stopping)
