"""End-to-end through a real uvicorn and a real Redis: the public API's contract."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families

from app.features import spec
from tests.helpers import before, event
from tests.live import LiveServer, live_server

EVENTS = [
    event("alice", "session_start", before(days=3), "a1"),
    event("alice", "purchase", before(days=3), "a2", amount=42.0, items=2),
    event("alice", "review", before(days=2), "a3", rating=1),
    event("bob", "page_view", before(days=40), "b1"),
]


@pytest.fixture
def server(redis_url: str) -> Iterator[LiveServer]:
    with live_server(redis_url) as live:
        yield live


def state(redis_url: str) -> dict[bytes, bytes | None]:
    with redis.Redis.from_url(redis_url) as client:
        return {key: client.get(key) for key in sorted(client.keys("*"))}


def test_events_then_score_in_request_order(server: LiveServer) -> None:
    with server.client() as http:
        reply = http.post("/events", json={"events": EVENTS})
        assert reply.status_code == 200
        assert reply.json() == {"accepted": 4, "duplicates": 0, "rejected": []}
        scored = http.post("/score", json={"user_ids": ["bob", "stranger", "alice"]}).json()
    assert scored["model_version"] == (server.settings.model_store / "CURRENT").read_text().strip()
    results = scored["results"]
    assert [r["user_id"] for r in results] == ["bob", "stranger", "alice"]
    assert [r["known_user"] for r in results] == [True, False, True]
    # A user with no history gets the bundle's cold-start prior and the one reason "no history".
    bundle = server.settings.model_store / scored["model_version"]
    prior = json.loads((bundle / "cold_start.json").read_text())["probability"]
    assert results[1]["churn_probability"] == prior
    assert results[1]["reasons"] == [
        {
            "feature": "no history",
            "value": 0.0,
            "contribution": 0.0,
            "typical_value": None,
            "text": "no history: a new customer, scored by the prior for new customers",
        }
    ]
    for r in results:
        assert 0.0 <= r["churn_probability"] <= 1.0
        assert r["risk_tier"] in ("low", "medium", "high")
        assert r["segment"]
        assert not r["known_user"] or all(
            reason["contribution"] > 0 and reason["feature"] in spec.FEATURE_NAMES for reason in r["reasons"]
        )
        # Each reason of a known user compares them with the customers who stay, in plain words.
        assert not r["known_user"] or all(
            reason["typical_value"] is not None and "customers who stay: typically" in reason["text"]
            for reason in r["reasons"]
        )
        assert len(r["reasons"]) <= server.settings.explain_top_k


def test_explain_false_skips_reasons_and_changes_no_probability(server: LiveServer) -> None:
    with server.client() as http:
        http.post("/events", json={"events": EVENTS})
        explained = http.post("/score", json={"user_ids": ["alice"]}).json()["results"][0]
        plain = http.post("/score", json={"user_ids": ["alice"], "explain": False}).json()["results"][0]
    assert plain["reasons"] is None
    assert plain["churn_probability"] == explained["churn_probability"]


def test_same_batch_twice_reports_duplicates_and_leaves_redis_byte_identical(
    server: LiveServer, redis_url: str
) -> None:
    with server.client() as http:
        http.post("/events", json={"events": EVENTS})
        first = state(redis_url)
        again = http.post("/events", json={"events": EVENTS}).json()
    assert again == {"accepted": 0, "duplicates": 4, "rejected": []}
    assert state(redis_url) == first


def test_late_and_future_events_are_rejected_with_their_reason(redis_url: str) -> None:
    with (
        live_server(redis_url, allowed_lateness_s=86_400, max_future_skew_s=60) as live,
        live.client() as http,
    ):
        future = event("carol", "page_view", before(seconds=-61), "f")
        body = http.post("/events", json={"events": [EVENTS[0], EVENTS[3], future]}).json()
    assert body["accepted"] == 0
    assert body["rejected"] == [
        {"index": 0, "event_id": "a1", "reason": "too_late"},
        {"index": 1, "event_id": "b1", "reason": "too_late"},
        {"index": 2, "event_id": "f", "reason": "in_future"},
    ]


def test_user_features_by_name(server: LiveServer) -> None:
    with server.client() as http:
        http.post("/events", json={"events": EVENTS})
        body = http.get("/users/alice/features").json()
        unknown = http.get("/users/nobody/features").json()
    assert body["known_user"] and body["features"]["lifetime_spend"] == 42.0
    assert body["features"]["low_rating_count_90d"] == 1.0
    assert list(body["features"]) == list(spec.FEATURE_NAMES)
    assert not unknown["known_user"]
    assert unknown["features"] == {f.name: f.default for f in spec.FEATURES}


def test_model_health_and_readiness(server: LiveServer) -> None:
    with server.client() as http:
        model = http.get("/model").json()
        assert http.get("/healthz").status_code == 200
        ready = http.get("/readyz")
    assert model["feature_names"] == list(spec.FEATURE_NAMES) and model["horizon_days"] > 0
    assert {"medium", "high", "decision"} <= set(model["risk_tiers"])
    assert model["device"] == "cpu"
    assert ready.status_code == 200 and ready.json()["checks"] == {
        "model": True,
        "redis": True,
        "not_draining": True,
    }


def test_metrics_parse_and_hold_every_service_metric(server: LiveServer) -> None:
    with server.client() as http:
        http.post("/events", json={"events": EVENTS})
        http.post("/events", json={"events": EVENTS})
        http.post("/score", json={"user_ids": ["alice", "bob"]})
        text = http.get("/metrics").text
    families = {f.name: f for f in text_string_to_metric_families(text)}
    expected = {
        "churn_http_request_duration_seconds",
        "churn_batch_rows",
        "churn_queue_wait_seconds",
        "churn_feature_seconds",
        "churn_inference_seconds",
        "churn_redis_roundtrip_seconds",
        "churn_events",
        "churn_scores",
        "churn_score_probability",
        "churn_model_info",
    }
    assert expected <= set(families)
    buckets = {
        s.labels["le"]
        for s in families["churn_http_request_duration_seconds"].samples
        if s.name.endswith("_bucket") and s.labels["route"] == "/score"
    }
    assert {"0.0005", "0.01", "1.0"} <= buckets
    outcomes = {s.labels["outcome"] for s in families["churn_events"].samples if s.value > 0}
    assert {"accepted", "duplicate"} <= outcomes


BAD_EVENTS: list[tuple[str, Any, str]] = [
    ("wrong type", {"events": [EVENTS[0] | {"user_id": 7}]}, "events[0].user_id"),
    ("negative amount", {"events": [EVENTS[1] | {"amount": -1}]}, "events[0].amount"),
    ("naive time", {"events": [EVENTS[0] | {"ts": "2026-03-01T00:00:00"}]}, "events[0].ts"),
    ("rating 6", {"events": [EVENTS[2] | {"rating": 6}]}, "events[0].rating"),
    ("field of another type", {"events": [EVENTS[0] | {"rating": 3}]}, "events[0].rating"),
    ("unknown field", {"events": [EVENTS[0] | {"colour": "red"}]}, "events[0].colour"),
    ("1,001 events", {"events": [EVENTS[0]] * 1001}, "events"),
    ("no events", {"events": []}, "events"),
    ("not a list", {"events": "many"}, "events"),
    ("one bad among good", {"events": [EVENTS[0], EVENTS[1] | {"amount": None}]}, "events[1].amount"),
]


@pytest.mark.parametrize(("case", "body", "field"), BAD_EVENTS, ids=[c[0] for c in BAD_EVENTS])
def test_bad_events_are_422_naming_the_field_and_apply_nothing(
    server: LiveServer, redis_url: str, case: str, body: Any, field: str
) -> None:
    with server.client() as http:
        reply = http.post("/events", json=body)
    assert reply.status_code == 422, case
    assert field in [d["field"] for d in reply.json()["detail"]], reply.json()
    assert state(redis_url) == {}


@pytest.mark.parametrize("token", ["NaN", "Infinity", "-Infinity", "1e999"])
def test_non_finite_amounts_are_refused(server: LiveServer, redis_url: str, token: str) -> None:
    raw = json.dumps({"events": [EVENTS[1]]}).replace("42.0", token)
    with server.client() as http:
        reply = http.post("/events", content=raw, headers={"content-type": "application/json"})
    assert reply.status_code == 422 and reply.json()["detail"][0]["field"] == "events[0].amount"
    assert state(redis_url) == {}


def test_malformed_json_and_oversized_bodies(server: LiveServer, redis_url: str) -> None:
    with server.client() as http:
        broken = http.post("/events", content=b'{"events": [', headers={"content-type": "application/json"})
        huge = http.post("/events", content=b" " * (server.settings.max_body_bytes + 1))

        def chunks() -> Iterator[bytes]:
            for _ in range(server.settings.max_body_bytes // 65_536 + 2):
                yield b" " * 65_536

        streamed = http.post("/events", content=chunks(), headers={"content-type": "application/json"})
    assert broken.status_code == 400 and broken.json()["error"] == "malformed_json"
    assert huge.status_code == 413 and streamed.status_code == 413
    assert state(redis_url) == {}


BAD_SCORES: list[tuple[str, Any, str]] = [
    ("no ids", {"user_ids": []}, "user_ids"),
    ("1,001 ids", {"user_ids": [f"u{i}" for i in range(1001)]}, "user_ids"),
    ("id not a string", {"user_ids": [5]}, "user_ids[0]"),
    ("id too long", {"user_ids": ["x" * 129]}, "user_ids[0]"),
    ("explain not a bool", {"user_ids": ["a"], "explain": "yes"}, "explain"),
    ("unknown field", {"user_ids": ["a"], "limit": 3}, "limit"),
]


@pytest.mark.parametrize(("case", "body", "field"), BAD_SCORES, ids=[c[0] for c in BAD_SCORES])
def test_bad_score_requests_are_422_naming_the_field(
    server: LiveServer, case: str, body: Any, field: str
) -> None:
    with server.client() as http:
        reply = http.post("/score", json=body)
    assert reply.status_code == 422, case
    assert field in [d["field"] for d in reply.json()["detail"]]


def test_bad_user_id_in_path(server: LiveServer) -> None:
    with server.client() as http:
        reply = http.get("/users/" + "x" * 129 + "/features")
    assert reply.status_code == 422 and reply.json()["detail"][0]["field"] == "user_id"
