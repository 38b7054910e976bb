"""Overload is refused before any work, never mistaken for Redis being down; both routings agree."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from app.redis_server import RedisProcess
from tests.helpers import before, event
from tests.live import AUTH, LiveServer, live_server

EVENTS = [event(f"a{i}", "purchase", before(days=i % 40 + 1), f"a{i}-p", amount=3.0 + i) for i in range(30)]


def lookups(url: str) -> tuple[int, int]:
    """(keys looked up, MGET calls) so far, from Redis's own counters."""
    with redis.Redis.from_url(url) as client:
        stats: dict[str, Any] = client.info("stats")
        commands: dict[str, Any] = client.info("commandstats")
    mget = commands.get("cmdstat_mget", {}).get("calls", 0)
    return stats["keyspace_hits"] + stats["keyspace_misses"], mget


def test_a_full_queue_answers_429_without_touching_redis(tmp_path: Path) -> None:
    own = RedisProcess(tmp_path / "redis")
    own.start()
    users = [f"u{i}" for i in range(1000)]
    try:
        # 1,000 users being scored and 1,000 queued fill the queue. A refusal waits out the pause first.
        settings = {
            "redis_timeout_s": 5.0,
            "batch_max_rows": 1000,
            "queue_max_rows": 2000,
            "overload_pause_ms": 100,
        }
        with live_server(own.url, **settings) as server:

            async def main() -> tuple[list[int], httpx.Response, float]:
                async with httpx.AsyncClient(base_url=server.url, timeout=30, headers=AUTH) as client:
                    own.pause()  # the first batch's MGET now waits inside Redis
                    try:
                        first = asyncio.ensure_future(client.post("/score", json={"user_ids": users}))
                        await asyncio.sleep(0.2)
                        queued = asyncio.ensure_future(client.post("/score", json={"user_ids": users}))
                        await asyncio.sleep(0.2)  # 1,000 users now wait: the queue is full
                        started = time.perf_counter()
                        refused = await client.post("/score", json={"user_ids": ["late"]})
                        elapsed = time.perf_counter() - started
                    finally:
                        own.resume()
                    return [(await first).status_code, (await queued).status_code], refused, elapsed

            keys_before, mgets_before = lookups(own.url)
            statuses, refused, elapsed = asyncio.run(main())
            keys_after, mgets_after = lookups(own.url)
    finally:
        own.stop()
    assert statuses == [200, 200]
    assert refused.status_code == 429 and refused.json()["error"] == "overloaded"
    assert refused.headers["retry-after"] == "1"
    assert 0.1 <= elapsed < 0.5  # after the pause, while Redis was still paused: it never waited on Redis
    assert (keys_after - keys_before, mgets_after - mgets_before) == (2000, 2)  # only the admitted two


def test_pool_exhaustion_is_429_and_leaves_readyz_ready(redis_url: str) -> None:
    settings = {"redis_max_connections": 1, "redis_pool_timeout_s": 0.05, "redis_timeout_s": 5.0}
    with live_server(redis_url, **settings) as server:

        async def main() -> tuple[httpx.Response, httpx.Response, httpx.Response]:
            async with httpx.AsyncClient(base_url=server.url, timeout=30, headers=AUTH) as client:
                with redis.Redis.from_url(redis_url) as admin:
                    admin.execute_command("CLIENT", "PAUSE", "600", "WRITE")  # scripts wait; PING does not
                holding = asyncio.ensure_future(client.post("/events", json={"events": EVENTS[:1]}))
                await asyncio.sleep(0.1)  # it now holds the only connection
                refused = await client.post("/events", json={"events": EVENTS[1:2]})
                ready = await client.get("/readyz")
                return await holding, refused, ready

        holding, refused, ready = asyncio.run(main())
    assert holding.status_code == 200 and holding.json()["accepted"] == 1
    assert refused.status_code == 429 and refused.json()["error"] == "overloaded"
    assert ready.status_code == 200 and ready.json()["checks"]["redis"] is True
    with redis.Redis.from_url(redis_url) as client:
        stored = [k.decode() for k in client.keys("*")]
    # The refused request wrote nothing: one key, the held request's user's.
    assert len(stored) == 1 and stored[0].endswith(":ev:v2")


def answers(server: LiveServer) -> dict[str, Any]:
    with server.client() as http:
        applied = http.post("/events", json={"events": EVENTS})
        again = http.post("/events", json={"events": EVENTS})
        scored = http.post("/score", json={"user_ids": ["a1", "a7", "nobody"]})
        plain = http.post("/score", json={"user_ids": ["a3"], "explain": False})
        bad = http.post("/score", json={"user_ids": [5], "limit": 1})
        broken = http.post("/events", content=b'{"events": [')
    replies = {
        "applied": applied,
        "again": again,
        "scored": scored,
        "plain": plain,
        "bad": bad,
        "broken": broken,
    }
    return {name: (r.status_code, r.headers["content-type"], r.json()) for name, r in replies.items()}


def test_fast_routes_and_fastapi_routes_give_the_same_answers(redis_url: str) -> None:
    with live_server(redis_url, fast_routes=True) as server:
        fast = answers(server)
    with redis.Redis.from_url(redis_url) as client:
        client.flushall()
    with live_server(redis_url, fast_routes=False) as server:
        routed = answers(server)
        with server.client() as http:
            document = http.get("/openapi.json").json()
    assert fast == routed
    assert fast["applied"][2]["accepted"] == len(EVENTS) and fast["again"][2]["duplicates"] == len(EVENTS)
    assert fast["bad"][0] == 422 and {d["field"] for d in fast["bad"][2]["detail"]} == {
        "user_ids[0]",
        "limit",
    }
    for path, request, response in (
        ("/score", "ScoreRequest", "ScoreResponse"),
        ("/events", "EventBatch", "EventsAccepted"),
    ):
        operation = document["paths"][path]["post"]
        body = operation["requestBody"]["content"]["application/json"]["schema"]
        answer = operation["responses"]["200"]["content"]["application/json"]["schema"]
        assert body == {"$ref": f"#/components/schemas/{request}"}
        assert answer == {"$ref": f"#/components/schemas/{response}"}
        assert (
            request in document["components"]["schemas"]
            and {"422", "429", "503"} <= operation["responses"].keys()
        )
    assert "Event" in document["components"]["schemas"]


@pytest.mark.parametrize("fast_routes", [True, False])
def test_score_answers_validate_against_the_documented_schema(redis_url: str, fast_routes: bool) -> None:
    from app.schemas import EventsAccepted, ScoreResponse

    with live_server(redis_url, fast_routes=fast_routes) as server:
        result = answers(server)
    ScoreResponse.model_validate(result["scored"][2], strict=False)
    ScoreResponse.model_validate(result["plain"][2], strict=False)
    EventsAccepted.model_validate(result["applied"][2])
    assert result["scored"][2]["scored_at"].endswith("Z")
