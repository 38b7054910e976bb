"""The warning emitter against a real Redis: one message per user per cool-down, the policy's action
within its daily budget, the control group, the stream's caps, and what a full queue drops."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import redis

from app import metrics
from app.actions.policy import ControlGroup
from app.actions.service import load_policy
from app.actions.warnings import Candidate, Outcome, candidates, stream_key
from app.config import Settings
from tests.warning_helpers import AT, emitter, messages, policy, reason_of, rows

COUPON = {"coupon_5": {"kind": "coupon", "params": {"value": 5, "currency": "EUR"}, "daily_budget": 2}}


def send(redis_url: str, found: list[Candidate], **kwargs: Any) -> list[Outcome]:
    """Write through a new emitter (they hold no state of their own: Redis decides)."""

    async def run() -> list[Outcome]:
        async with emitter(redis_url, **kwargs) as warner:
            return await warner.send(found)

    return asyncio.run(run())


def high(users: list[str], **kwargs: Any) -> list[Candidate]:
    return candidates(users, rows(["high"] * len(users), **kwargs), "v1", AT, frozenset({"high"}))


def test_a_high_risk_user_gets_one_message_with_every_field(redis_url: str) -> None:
    found = high(["shop-42"], segment="big spenders", reason="purchase_count_90d")
    [outcome] = send(redis_url, found)
    assert outcome.sent and outcome.action == "coupon_20"
    [message] = messages(redis_url)
    assert message["id"] == outcome.entry_id
    assert message["user_id"] == "shop-42"
    assert float(message["churn_probability"]) == pytest.approx(0.99)
    assert (message["risk_tier"], message["segment"], message["model_version"]) == (
        "high",
        "big spenders",
        "v1",
    )
    assert json.loads(message["reasons"]) == [reason_of("purchase_count_90d")]
    assert (message["action"], message["action_kind"], message["action_reason"]) == (
        "coupon_20",
        "coupon",
        "policy",
    )
    assert json.loads(message["action_params"]) == {"currency": "EUR", "value": 20}
    assert (message["group"], message["intended_action"], message["policy_rule"]) == (
        "treatment",
        "coupon_20",
        "3",
    )
    assert message["scored_at"] == "2026-03-01T12:00:00.000Z"
    assert len(message["warning_id"]) == 24


def test_no_raw_id_in_key_names(redis_url: str) -> None:
    send(redis_url, high(["shop-42"]))
    with redis.Redis.from_url(redis_url, decode_responses=True) as client:
        names = list(client.scan_iter("*"))
    assert names and not any("shop-42" in name for name in names)


def test_reasons_are_null_when_the_batch_computed_none_and_rules_on_reasons_do_not_match(
    redis_url: str,
) -> None:
    send(redis_url, high(["a"], segment="unhappy customers", reason=None))
    send(redis_url, high(["b"], segment="unhappy customers", reason="refund_count_90d"))
    by_user = {m["user_id"]: m for m in messages(redis_url)}
    assert by_user["a"]["reasons"] == "null" and by_user["a"]["action"] == "coupon_10"
    assert by_user["b"]["action"] == "service_call"


def test_one_warning_per_cool_down(redis_url: str) -> None:
    warner = {"cooldown_s": 1}
    assert [o.sent for o in send(redis_url, high(["u1", "u1", "u2"]), **warner)] == [True, False, True]
    assert [o.sent for o in send(redis_url, high(["u1", "u2"]), **warner)] == [False, False]
    time.sleep(1.1)
    assert [o.sent for o in send(redis_url, high(["u1"]), **warner)] == [True]
    assert [m["user_id"] for m in messages(redis_url)] == ["u1", "u2", "u1"]


def test_over_budget_the_warning_says_none_for_reason_budget(redis_url: str) -> None:
    warner = {"policy": policy(COUPON, [{"action": "coupon_5"}])}
    outcomes = send(redis_url, high(["a", "b", "c", "d"]), **warner)
    assert [o.action for o in outcomes] == ["coupon_5", "coupon_5", "none", "none"]
    refused = messages(redis_url)[2]
    assert (refused["action"], refused["action_reason"], refused["intended_action"]) == (
        "none",
        "budget",
        "coupon_5",
    )
    assert refused["action_params"] == "{}" and refused["group"] == "treatment"
    # The budget is per day (UTC, of the scoring time): the next day has its own.
    later = candidates(["e"], rows(["high"]), "v1", AT + timedelta(days=1), frozenset({"high"}))
    assert [o.action for o in send(redis_url, later, **warner)] == ["coupon_5"]


def test_the_control_group_gets_no_action_and_uses_no_budget(redis_url: str) -> None:
    control = ControlGroup(0.5, "seed-1")
    users = [f"user-{i}" for i in range(40)]
    held = {u for u in users if control.holds(u)}
    assert 0 < len(held) < len(users)
    coupon = policy(COUPON, [{"action": "coupon_5"}])
    send(redis_url, high(users), policy=coupon, control=control)
    by_user = {m["user_id"]: m for m in messages(redis_url)}
    for user in held:
        assert (by_user[user]["group"], by_user[user]["action"], by_user[user]["action_reason"]) == (
            "control",
            "none",
            "control",
        )
        assert by_user[user]["intended_action"] == "coupon_5"
    granted = [m for m in by_user.values() if m["action"] == "coupon_5"]
    assert len(granted) == 2 and all(m["group"] == "treatment" for m in granted)


def test_low_medium_and_unknown_users_are_not_candidates() -> None:
    scored = rows(["low", "medium", "high", "high"])
    found = candidates(["a", "b", "c", "d"], scored, "v1", AT, frozenset({"high"}))
    assert [c.user_id for c in found] == ["c", "d"]
    assert candidates(["x"], rows(["high"], known=False), "v1", AT, frozenset({"high"})) == []
    assert [
        c.user_id
        for c in candidates(["a", "b"], rows(["low", "medium"]), "v1", AT, frozenset({"medium", "high"}))
    ] == ["b"]


def test_the_stream_keeps_its_length_cap(redis_url: str) -> None:
    warner = {"stream_max_len": 100}
    users = [f"u{i}" for i in range(1_000)]
    for start in range(0, len(users), 250):
        send(redis_url, high(users[start : start + 250]), **warner)
    with redis.Redis.from_url(redis_url) as client:
        node = int(client.config_get("stream-node-max-entries")["stream-node-max-entries"])
        length = client.xlen(stream_key("test", "stream"))
    # MAXLEN ~ trims whole radix-tree nodes: at most one node's entries past the cap remain.
    assert 100 <= length <= 100 + node


def test_the_stream_keeps_its_age_cap(redis_url: str) -> None:
    warner = {"stream_max_age_s": 1.0}
    send(redis_url, high([f"old{i}" for i in range(300)]), **warner)
    time.sleep(1.2)
    send(redis_url, high(["new"]), **warner)
    users = [m["user_id"] for m in messages(redis_url)]
    # MINID ~ also trims whole nodes (100 entries here): the full ones that are all too old are gone.
    assert "new" in users and len(users) <= 101


def test_a_full_queue_drops_and_counts() -> None:
    async def run() -> tuple[int, int]:
        async with emitter("redis://127.0.0.1:1/0", queue_max=2) as warner:  # never flushed
            return warner.offer(["a", "b", "c", "d", "e"], rows(["high"] * 5), "v1", AT), warner.queued

    dropped = metrics.WARNINGS.labels("queue_full")
    before = dropped._value.get()
    assert asyncio.run(run()) == (2, 2)
    assert dropped._value.get() - before == 3


def test_the_flusher_writes_what_the_observer_queued(redis_url: str) -> None:
    async def run() -> None:
        async with emitter(redis_url) as warner:
            warner.start()
            warner.offer(["a", "b", "c"], rows(["high", "low", "high"]), "v1", AT)
            await warner.stop()

    asyncio.run(run())
    assert [m["user_id"] for m in messages(redis_url)] == ["a", "c"]


def test_a_policy_naming_an_unknown_action_is_refused_naming_the_rule() -> None:
    bad = {"actions": COUPON, "rules": [{"action": "coupon_5"}, {"segment": "lapsed", "action": "coupon_50"}]}
    with pytest.raises(ValueError, match=r"rules\[1\].action: 'coupon_50' is not in actions"):
        Settings(warnings_policy=bad)
    with pytest.raises(ValueError, match="not 'none'"):
        Settings(warnings_policy={"actions": {"none": COUPON["coupon_5"]}, "rules": []})


def test_the_policy_comes_from_the_environment_or_a_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    table = {"actions": COUPON, "rules": [{"tier": "high", "reason": "refund_*", "action": "coupon_5"}]}
    monkeypatch.setenv("CHURN_WARNINGS_POLICY", json.dumps(table))
    assert load_policy(Settings()).choose("high", "lapsed", "refund_count_7d") == ("coupon_5", 0)
    assert load_policy(Settings()).choose("high", "lapsed", None) == ("none", -1)
    file = tmp_path / "policy.json"
    file.write_text(json.dumps(table | {"rules": [{"action": "none"}]}))
    assert load_policy(Settings(warnings_policy_file=file)).choose("high", "lapsed", "x") == ("none", 0)
    file.write_text("{")
    with pytest.raises(RuntimeError, match=r"policy\.json"):
        load_policy(Settings(warnings_policy_file=file))
