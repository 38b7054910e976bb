"""Two service processes (uvicorn, two ports) against one Redis, both scoring the same users: a
high-risk user is warned once per cool-down, whichever replica scored them; low and medium users never."""

from __future__ import annotations

import re
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx

from tests.live import AUTH
from tests.warning_helpers import history, messages, replica

ROUNDS = 15
USERS = ["risky", "steady", "fading"]


def warning_counts(url: str) -> dict[str, float]:
    text = httpx.get(f"{url}/metrics", headers=AUTH, timeout=5).text
    return {
        m[0]: float(m[1]) for m in re.findall(r'^churn_warnings_total\{outcome="(\w+)"\} (\S+)$', text, re.M)
    }


def test_one_warning_per_cool_down_across_two_replicas(redis_url: str, tmp_path: Path) -> None:
    with replica(redis_url, tmp_path / "a.log") as first, replica(redis_url, tmp_path / "b.log") as second:
        now = datetime.now(UTC).replace(microsecond=0)
        sent = httpx.post(f"{first}/events", json={"events": history(now)}, headers=AUTH, timeout=10)
        assert sent.status_code == 200 and sent.json()["rejected"] == [], sent.text
        tiers: dict[str, set[str]] = {}
        lock = threading.Lock()

        def score(url: str) -> None:
            with httpx.Client(base_url=url, headers=AUTH, timeout=10) as client:
                for _ in range(ROUNDS):
                    answer = client.post("/score", json={"user_ids": USERS})
                    assert answer.status_code == 200
                    with lock:
                        for user in answer.json()["results"]:
                            tiers.setdefault(user["user_id"], set()).add(user["risk_tier"])

        threads = [threading.Thread(target=score, args=(url,)) for url in (first, second)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert tiers == {"risky": {"high"}, "fading": {"medium"}, "steady": {"low"}}
        # Every high-risk scoring reaches Redis as sent or cooling down: wait for all of them.
        deadline = time.monotonic() + 20
        while True:
            counts = [warning_counts(url) for url in (first, second)]
            decided = sum(c.get("sent", 0) + c.get("cooling_down", 0) for c in counts)
            if decided >= 2 * ROUNDS or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        # Both replicas offered every high-risk scoring; one message between them.
        assert [c.get("sent", 0) + c.get("cooling_down", 0) for c in counts] == [ROUNDS, ROUNDS], counts
        assert sum(c.get("sent", 0) for c in counts) == 1
    [message] = messages(redis_url)
    assert message["user_id"] == "risky" and message["risk_tier"] == "high"
