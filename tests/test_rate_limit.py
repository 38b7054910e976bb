"""Per-key rate limits: a token bucket in Redis, shared by every replica, answered as 429 + Retry-After."""

from __future__ import annotations

import time

import pytest

from app.api.auth import new_key
from tests.live import TEST_KEY_ENTRY, live_server

BODY = {"user_ids": ["u-1"]}


@pytest.mark.parametrize("fast_routes", [True, False])
def test_a_key_over_its_rate_gets_429_with_retry_after_then_tokens_come_back(
    redis_url: str, fast_routes: bool
) -> None:
    key, entry = new_key(f"limited-{fast_routes}".lower(), ["score"], rate_per_s=5, burst=5)
    free_key, free_entry = new_key(f"unlimited-{fast_routes}".lower(), ["score"])
    keys = [TEST_KEY_ENTRY, entry, free_entry]
    with live_server(redis_url, api_keys=keys, fast_routes=fast_routes) as server, server.client() as http:
        limited = {"authorization": f"Bearer {key}"}
        statuses = [http.post("/score", json=BODY, headers=limited).status_code for _ in range(8)]
        assert statuses[:5] == [200] * 5 and 429 in statuses[5:]
        refused = http.post("/score", json=BODY, headers=limited)
        assert refused.status_code == 429
        assert (
            refused.json()["error"] == "rate_limited" and "over its rate limit" in refused.json()["message"]
        )
        assert int(refused.headers["retry-after"]) >= 1
        time.sleep(0.5)  # 5 tokens a second: two are back
        assert http.post("/score", json=BODY, headers=limited).status_code == 200
        unlimited = {"authorization": f"Bearer {free_key}"}
        assert {http.post("/score", json=BODY, headers=unlimited).status_code for _ in range(20)} == {200}


def test_replicas_share_one_bucket(redis_url: str) -> None:
    key, entry = new_key("shared", ["score"], rate_per_s=0.5, burst=6)
    headers = {"authorization": f"Bearer {key}"}
    with (
        live_server(redis_url, api_keys=[entry]) as first,
        live_server(redis_url, api_keys=[entry]) as second,
        first.client(headers=headers) as one,
        second.client(headers=headers) as two,
    ):
        statuses = [client.post("/score", json=BODY).status_code for _ in range(5) for client in (one, two)]
    assert statuses.count(200) == 6 and statuses.count(429) == 4  # the burst of 6, across both
