"""Request ids: on every answer, echoed when usable, and on the JSON log lines written while serving."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator

import pytest

from app.logs import JsonFormatter
from app.redis_server import free_port
from tests.live import live_server

GENERATED = re.compile(r"^[0-9a-f]{16}$")  # a process prefix and a counter


class Lines(logging.Handler):
    """Formats each record when it is emitted, inside the request, as the service's handler does."""

    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(JsonFormatter())
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@pytest.fixture
def churn_log() -> Iterator[Lines]:
    handler, logger = Lines(), logging.getLogger("churn")
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)


@pytest.mark.parametrize("fast_routes", [True, False])
def test_every_answer_carries_a_request_id(redis_url: str, fast_routes: bool) -> None:
    with live_server(redis_url, fast_routes=fast_routes) as server, server.client() as http:
        for answer in (
            http.post("/score", json={"user_ids": ["u-1"]}),
            http.get("/healthz"),
            http.post("/score", json={"user_ids": []}),  # 422
            http.post("/score", json={"user_ids": ["u-1"]}, headers={"authorization": ""}),  # 401
        ):
            assert GENERATED.match(answer.headers["x-request-id"]), answer.status_code
        given = http.get("/healthz", headers={"x-request-id": "lb-7f3a:42"})
        assert given.headers["x-request-id"] == "lb-7f3a:42"
        for unusable in ("has spaces", "x" * 65, 'quote"d'):
            answer = http.get("/healthz", headers={"x-request-id": unusable})
            assert GENERATED.match(answer.headers["x-request-id"])


def test_a_failed_request_is_logged_as_json_with_its_request_id_and_no_user_id(churn_log: Lines) -> None:
    dead_redis = f"redis://127.0.0.1:{free_port()}/0"
    with live_server(dead_redis, redis_timeout_s=0.2) as server, server.client() as http:
        answer = http.post("/score", json={"user_ids": ["user-secret-42"]}, headers={"x-request-id": "req-1"})
    assert answer.status_code == 503
    entries = [json.loads(line) for line in churn_log.lines]
    failed = [e for e in entries if e.get("request_id") == "req-1"]
    assert failed and failed[0]["level"] == "error" and failed[0]["status"] == 503
    assert failed[0]["path"] == "/score" and failed[0]["time"].endswith("+00:00")
    assert not any("user-secret-42" in line for line in churn_log.lines)
