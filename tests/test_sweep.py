"""The sweep: with the user directory on, replicas take turns scoring every known user, so a user who
went quiet is warned about without anyone asking for them, once per cool-down across replicas."""

from __future__ import annotations

import asyncio
import re
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
import redis.asyncio as aredis

from app.actions.sweep import Sweep, SweepSettings
from app.features.directory import IdSealer
from tests.live import AUTH
from tests.test_warnings_replicas import history, replica
from tests.warning_helpers import SECRET, messages

SWEEP = {"CHURN_USER_DIRECTORY": "true", "CHURN_SWEEP_INTERVAL_S": "0.5"}


def sweep_counts(url: str) -> tuple[float, float]:
    """(sweeps completed, users scored by sweeps) as the replica's /metrics says."""
    text = httpx.get(f"{url}/metrics", headers=AUTH, timeout=5).text
    done = re.search(r'^churn_sweeps_total\{outcome="completed"\} (\S+)$', text, re.M)
    users = re.search(r"^churn_sweep_users_total (\S+)$", text, re.M)
    return (float(done[1]) if done else 0.0), (float(users[1]) if users else 0.0)


def test_a_quiet_user_is_warned_once_without_being_asked_for(redis_url: str, tmp_path: Path) -> None:
    with (
        replica(redis_url, tmp_path / "a.log", **SWEEP) as first,
        replica(redis_url, tmp_path / "b.log", **SWEEP) as second,
    ):
        now = datetime.now(UTC).replace(microsecond=0)
        sent = httpx.post(f"{first}/events", json={"events": history(now)}, headers=AUTH, timeout=10)
        assert sent.status_code == 200 and sent.json()["rejected"] == [], sent.text
        # Nobody calls /score: the sweep finds "risky" (high) in the directory and warns.
        deadline = time.monotonic() + 30
        while not messages(redis_url) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert [m["user_id"] for m in messages(redis_url)] == ["risky"]
        # More turns pass, each scoring the three users in one page; still one message: the cool-down
        # holds across sweeps and replicas.
        while sum(sweep_counts(url)[1] for url in (first, second)) < 9 and time.monotonic() < deadline:
            time.sleep(0.1)
        swept = sum(sweep_counts(url)[1] for url in (first, second))
        assert swept >= 9 and swept % 3 == 0
    [message] = messages(redis_url)
    assert message["risk_tier"] == "high" and message["model_version"]


def test_one_replica_takes_each_turn(redis_url: str) -> None:
    async def turns() -> list[bool]:
        client = aredis.Redis.from_url(redis_url)
        settings = SweepSettings("test", interval_s=0.3, page_users=10, max_users_per_s=1e6)
        replicas = [Sweep(client, IdSealer(SECRET), None, settings) for _ in range(2)]  # type: ignore[arg-type]
        try:
            taken = [await r._take_turn() for r in replicas]  # the turn lasts the interval
            await asyncio.sleep(0.4)
            return [*taken, await replicas[1]._take_turn(), await replicas[0]._take_turn()]
        finally:
            await client.aclose()

    assert asyncio.run(turns()) == [True, False, True, False]
