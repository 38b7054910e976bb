"""The service when Redis goes away or stalls, when its model is bad, and under concurrent load."""

from __future__ import annotations

import asyncio
import json
import shutil
import time
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from app.main import create_app
from app.model.bundle import BundleError
from app.redis_server import RedisProcess
from tests.helpers import before, event
from tests.live import AUTH, live_server, settings_for

STORE = Path(__file__).resolve().parents[1] / "model_store"
EVENT = event("dora", "purchase", before(days=1), "d1", amount=10.0)


def test_redis_down_gives_503_quickly_and_the_service_recovers(tmp_path: Path) -> None:
    own = RedisProcess(tmp_path / "redis")
    own.start()
    try:
        with live_server(own.url, redis_timeout_s=0.25) as server, server.client() as http:
            assert http.post("/events", json={"events": [EVENT]}).status_code == 200
            own.stop()
            for method, path, body in (
                ("POST", "/events", {"events": [EVENT]}),
                ("POST", "/score", {"user_ids": ["dora"]}),
            ):
                started = time.perf_counter()
                reply = http.request(method, path, json=body)
                assert reply.status_code == 503 and reply.headers["Retry-After"] == "1"
                assert reply.json()["error"] == "redis_unavailable"
                assert time.perf_counter() - started < 1.0
            assert http.get("/readyz").status_code == 503
            assert http.get("/healthz").status_code == 200

            own.start()  # same port, no restart of the service
            assert http.post("/events", json={"events": [EVENT]}).json()["accepted"] == 1
            assert http.post("/score", json={"user_ids": ["dora"]}).status_code == 200
            assert http.get("/readyz").status_code == 200

            own.pause()  # a stalled Redis: the socket timeout bounds the wait
            started = time.perf_counter()
            assert http.post("/score", json={"user_ids": ["dora"]}).status_code == 503
            assert time.perf_counter() - started < 1.0
            own.resume()
            assert http.post("/score", json={"user_ids": ["dora"]}).status_code == 200
    finally:
        own.stop()


def test_a_tampered_bundle_stops_start_up_with_the_failed_check(tmp_path: Path, redis_url: str) -> None:
    store = tmp_path / "store"
    shutil.copytree(STORE, store)
    version = (store / "CURRENT").read_text().strip()
    calibration = store / version / "calibration.json"
    calibration.write_text(json.dumps({"method": "platt", "slope": 2.0, "intercept": 0.0}))
    app = create_app(settings_for(redis_url, model_store=store))

    async def start() -> None:
        async with app.router.lifespan_context(app):
            pass

    with pytest.raises(BundleError, match=r"check 'sha256' failed: calibration\.json"):
        asyncio.run(start())


def batch_rows(metrics_text: str) -> tuple[float, float]:
    family = next(f for f in text_string_to_metric_families(metrics_text) if f.name == "churn_batch_rows")
    values = {s.name: s.value for s in family.samples}
    return values["churn_batch_rows_count"], values["churn_batch_rows_sum"]


def test_concurrent_requests_share_batches_and_match_scoring_alone(redis_url: str) -> None:
    users = [f"user{i}" for i in range(48)]
    events = [
        event(u, "purchase", before(days=i % 60), f"{u}-p", amount=5.0 + i) for i, u in enumerate(users)
    ]
    with live_server(redis_url, batch_max_delay_ms=2.0) as server:
        with server.client() as http:
            http.post("/events", json={"events": events})
            alone = {u: http.post("/score", json={"user_ids": [u]}).json()["results"][0] for u in users}
            count_before, rows_before = batch_rows(http.get("/metrics").text)

        async def together() -> list[dict[str, object]]:
            async with httpx.AsyncClient(base_url=server.url, timeout=30, headers=AUTH) as client:
                replies = await asyncio.gather(
                    *(client.post("/score", json={"user_ids": [u]}) for u in users)
                )
            return [r.json()["results"][0] for r in replies]

        concurrent = asyncio.run(together())
        with server.client() as http:
            count_after, rows_after = batch_rows(http.get("/metrics").text)
    assert rows_after - rows_before == len(users)
    assert count_after - count_before < len(users)  # some forward passes served several requests
    for result in concurrent:
        single = alone[result["user_id"]]  # type: ignore[index]
        assert result["churn_probability"] == pytest.approx(single["churn_probability"], abs=1e-6)
        assert result["risk_tier"] == single["risk_tier"] and result["segment"] == single["segment"]
