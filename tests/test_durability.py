"""Acknowledgement after replication: with CHURN_ACK_REPLICAS=1 an event batch is answered 200 only once
a replica has it; without a live replica it is 503 not_durable, and the retry counts it once."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from pydantic import ValidationError

from app.redis_server import RedisProcess
from tests.helpers import T, event
from tests.live import live_server, settings_for

EVENTS = [event("d-1", "page_view", T, "d-e1"), event("d-1", "purchase", T, "d-e2", amount=20.0)]
LATER = [event("d-1", "page_view", T, "d-e3")]


@pytest.fixture
def primary_and_replica(tmp_path: Path) -> Iterator[tuple[RedisProcess, RedisProcess]]:
    primary = RedisProcess(tmp_path / "primary")
    primary.start()
    replica = RedisProcess(tmp_path / "replica", extra=["--replicaof", "127.0.0.1", str(primary.port)])
    replica.start()
    try:
        with redis.Redis.from_url(replica.url) as client:
            deadline = time.monotonic() + 10
            while client.info("replication").get("master_link_status") != "up":
                assert time.monotonic() < deadline, "the replica did not connect"
                time.sleep(0.05)
        yield primary, replica
    finally:
        replica.stop()
        primary.stop()


def test_a_write_is_acknowledged_once_a_replica_has_it(
    primary_and_replica: tuple[RedisProcess, RedisProcess],
) -> None:
    primary, replica = primary_and_replica
    settings = {"ack_replicas": 1, "ack_timeout_ms": 500, "redis_timeout_s": 2.0}
    with live_server(primary.url, **settings) as server, server.client() as http:
        answer = http.post("/events", json={"events": EVENTS})
        assert answer.status_code == 200 and answer.json()["accepted"] == 2
        with redis.Redis.from_url(replica.url) as client:
            assert len(client.keys("*:ev:v2")) == 1  # already on the replica when the answer came

        replica.pause()  # no replica confirms now
        try:
            started = time.monotonic()
            refused = http.post("/events", json={"events": LATER})
            waited = time.monotonic() - started
        finally:
            replica.resume()
        assert refused.status_code == 503 and refused.json()["error"] == "not_durable"
        assert refused.headers["retry-after"] == "1" and waited >= 0.5
        # The retry, once the replica is back: applied on the first attempt, so counted once.
        retried = http.post("/events", json={"events": LATER})
        assert retried.status_code == 200 and retried.json() == {
            "accepted": 0,
            "duplicates": 1,
            "rejected": [],
        }
        features = http.get("/users/d-1/features").json()["features"]
        assert features["page_view_count_7d"] == 2 and features["lifetime_purchases"] == 1


def test_the_wait_must_fit_inside_the_socket_timeout(redis_url: str) -> None:
    with pytest.raises(ValidationError, match="ack_timeout_ms must be shorter than redis_timeout_s"):
        settings_for(redis_url, ack_replicas=1, ack_timeout_ms=500, redis_timeout_s=0.25)


def test_without_a_replica_nothing_is_acknowledged(redis_url: str) -> None:
    with live_server(redis_url, ack_replicas=1, ack_timeout_ms=100) as server, server.client() as http:
        answer = http.post("/events", json={"events": EVENTS})
    assert answer.status_code == 503 and answer.json()["error"] == "not_durable"
    assert "0 of 1 replicas" in answer.json()["message"]
