"""The intervention report end to end on a simulated shop: simulate, warn (real Redis), hand the
treated users coupons in the simulation, report; the measured effect's interval covers the simulated
one. And the parts: the control group's share and stability, the intervals against published values."""

from __future__ import annotations

import asyncio
import json
import math
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from app.actions.policy import ControlGroup, control_draw
from app.actions.report import ALL_SEGMENTS
from app.actions.uplift import newcombe, wilson
from app.actions.warnings import candidates, stream_key
from app.cli import main
from app.features import offline, spec
from app.model.bundle import load_bundle
from app.model.scorer import ChurnModel
from app.training.simulate import CouponResponse, SimulationConfig, simulate
from tests.warning_helpers import emitter, messages, policy

ROOT = Path(__file__).resolve().parents[1]
SIM = SimulationConfig(n_users=3_000, days=200, seed=11)
WARNED_AT = SIM.start + timedelta(days=150)
HORIZON_DAYS = 30
UPTAKE = 0.5
COUPON_POLICY = policy(
    {"coupon_10": {"kind": "coupon", "params": {"value": 10}, "daily_budget": 100_000}},
    [{"action": "coupon_10"}],
)


def warn_everyone_at_risk(redis_url: str, events: pd.DataFrame) -> None:
    """Score every simulated user as of WARNED_AT and hand the answers to the emitter."""
    users, raw = offline.features(events, spec.unix_seconds(WARNED_AT))
    model = ChurnModel(load_bundle(ROOT / "model_store"), "cpu")
    scored = model.score(raw, np.ones(len(users), dtype=bool), explain=True, top_k=3)
    found = candidates(list(users), scored, model.version, WARNED_AT, frozenset({"medium", "high"}))

    async def send() -> None:
        async with emitter(
            redis_url, policy=COUPON_POLICY, control=ControlGroup(0.2, "sim"), stream_max_len=100_000
        ) as warner:
            for start in range(0, len(found), 256):
                await warner.send(found[start : start + 256])

    asyncio.run(send())


def bought_within_horizon(events: pd.DataFrame, users: set[str]) -> set[str]:
    start = spec.unix_seconds(WARNED_AT)
    purchases = events[(events["kind"] == spec.PURCHASE) & (events["ts_s"] > start)]
    purchases = purchases[purchases["ts_s"] <= start + HORIZON_DAYS * spec.DAY_SECONDS]
    return set(purchases["user_id"]) & users


def test_the_report_measures_the_simulated_coupon_effect(redis_url: str, tmp_path: Path) -> None:
    untreated = offline.validate_events(simulate(SIM).events)
    warn_everyone_at_risk(redis_url, untreated)
    warned = messages(redis_url)
    coupons = tuple((m["user_id"], WARNED_AT) for m in warned if m["action"] == "coupon_10")
    control = [m for m in warned if m["group"] == "control"]
    assert len(coupons) > 300 and len(control) > 50

    response = CouponResponse(coupons, uptake=UPTAKE, within_days=14, seed=3)
    treated_log = tmp_path / "events.csv"
    offline.write_event_log(simulate(replace(SIM, coupon_response=response)).events, treated_log)
    out = tmp_path / "report"
    main(
        [
            "report",
            "interventions",
            "--warnings",
            f"{redis_url}#{stream_key('test', 'stream')}",
            "--events",
            str(treated_log),
            "--horizon-days",
            str(HORIZON_DAYS),
            "--out",
            str(out),
        ]
    )
    result = pd.read_csv(out / "interventions.csv")
    overall = result[(result["action"] == "coupon_10") & (result["segment"] == ALL_SEGMENTS)].iloc[0]
    assert overall["treated"] == len(coupons) and overall["control"] == len(control)

    # The simulated effect: a coupon makes a user who would not have bought buy with probability
    # UPTAKE, within the horizon; so the effect on the buy-again rate is UPTAKE x (1 - the rate without).
    everyone = {m["user_id"] for m in warned}
    base_rate = len(bought_within_horizon(untreated, everyone)) / len(everyone)
    simulated = UPTAKE * (1 - base_rate)
    assert overall["ci95_low"] <= simulated <= overall["ci95_high"], (overall.to_dict(), simulated)
    assert overall["ci95_low"] > 0  # and the effect is found, not just an interval wide enough for anything
    assert (out / "interventions.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "coupon_10" in (out / "interventions.txt").read_text()


def test_the_report_reads_what_the_consumer_wrote(redis_url: str, tmp_path: Path) -> None:
    events = pd.DataFrame(
        [
            {
                "event_id": "1",
                "user_id": "a",
                "type": "purchase",
                "ts": "2026-01-10T00:00:00Z",
                "amount": 5.0,
                "items": 1,
            },
            {
                "event_id": "2",
                "user_id": "c",
                "type": "purchase",
                "ts": "2026-01-20T00:00:00Z",
                "amount": 5.0,
                "items": 1,
            },
            {"event_id": "3", "user_id": "z", "type": "page_view", "ts": "2026-03-01T00:00:00Z"},
        ]
    )
    log = tmp_path / "events.jsonl"
    offline.write_event_log(events, log)
    base = {"segment": "lapsed", "scored_at": "2026-01-05T00:00:00.000Z", "action_reason": "policy"}
    lines = [
        base | {"user_id": "a", "group": "treatment", "action": "coupon_10", "intended_action": "coupon_10"},
        base | {"user_id": "b", "group": "treatment", "action": "coupon_10", "intended_action": "coupon_10"},
        base | {"user_id": "c", "group": "control", "action": "none", "intended_action": "coupon_10"},
        base | {"user_id": "d", "group": "treatment", "action": "none", "intended_action": "coupon_10"},
    ]
    warnings = tmp_path / "warnings.jsonl"
    warnings.write_text("".join(json.dumps(line) + "\n" for line in lines))
    main(
        [
            "report",
            "interventions",
            "--warnings",
            str(warnings),
            "--events",
            str(log),
            "--horizon-days",
            "30",
            "--out",
            str(tmp_path / "r"),
        ]
    )
    row = pd.read_csv(tmp_path / "r" / "interventions.csv").iloc[0]
    assert (row["treated"], row["treated_bought"], row["control"], row["control_bought"]) == (2, 1, 1, 1)
    assert row["difference"] == pytest.approx(-0.5)
    assert (
        "no action and not control (budget, no rule): 1" in (tmp_path / "r" / "interventions.txt").read_text()
    )


def test_a_bad_warnings_file_is_refused_with_its_line(tmp_path: Path) -> None:
    bad = tmp_path / "warnings.jsonl"
    bad.write_text('{"user_id": "a"}\nnot json\n')
    log = tmp_path / "events.jsonl"
    offline.write_event_log(
        pd.DataFrame([{"event_id": "1", "user_id": "a", "type": "page_view", "ts": "2026-01-01T00:00:00Z"}]),
        log,
    )
    with pytest.raises(SystemExit, match="line 2: not JSON"):
        main(
            [
                "report",
                "interventions",
                "--warnings",
                str(bad),
                "--events",
                str(log),
                "--out",
                str(tmp_path / "r"),
            ]
        )


def test_the_control_share_is_within_its_binomial_interval() -> None:
    n, share = 200_000, 0.1
    held = sum(ControlGroup(share, "seed-7").holds(f"user-{i}") for i in range(n))
    low, high = wilson(held, n, confidence=0.999)
    assert low <= share <= high, (held / n, low, high)


def test_the_control_group_is_stable_for_a_seed_and_changes_with_it() -> None:
    users = [f"user-{i}" for i in range(2_000)]
    first = [ControlGroup(0.1, "a").holds(u) for u in users]
    assert first == [ControlGroup(0.1, "a").holds(u) for u in users]
    other = [ControlGroup(0.1, "b").holds(u) for u in users]
    assert first != other
    # A larger share keeps everyone the smaller one held: raising it only adds users to control.
    assert all(ControlGroup(0.2, "a").holds(u) for u, held in zip(users, first, strict=True) if held)
    assert 0 <= control_draw("a", "x") < 1


def test_the_intervals_match_published_values() -> None:
    # Newcombe (1998), Statistics in Medicine 17: 873-890: 56/70 vs 48/80, method 10 gives 0.0524 to 0.3339;
    # Wilson's interval for 81/263 is 0.2553 to 0.3662 (same paper, table I).
    difference, low, high = newcombe(56, 70, 48, 80)
    assert difference == pytest.approx(0.2)
    assert (round(low, 4), round(high, 4)) == (0.0524, 0.3339)
    assert tuple(round(v, 4) for v in wilson(81, 263)) == (0.2553, 0.3662)
    assert all(math.isnan(v) for v in newcombe(1, 2, 0, 0))


def test_coupons_add_purchases_and_change_nothing_else() -> None:
    config = SimulationConfig(n_users=300, days=60, seed=5)
    base = simulate(config).events
    at = config.start + timedelta(days=40)
    recipients = [f"u{i:06d}" for i in range(0, 300, 2)]
    response = CouponResponse(tuple((u, at) for u in recipients), uptake=0.6, within_days=10, seed=1)
    treated = simulate(replace(config, coupon_response=response)).events
    extra = treated["event_id"].str.startswith("coupon-")
    pd.testing.assert_frame_equal(treated[~extra].reset_index(drop=True), base)
    bought = treated[extra]
    assert set(bought["user_id"]) <= set(recipients) and (bought["type"] == "purchase").all()
    times = pd.to_datetime(bought["ts"], utc=True)
    assert (times >= at).all() and (times < at + timedelta(days=10)).all()
    low, high = wilson(len(bought), len(recipients), confidence=0.999)
    assert low <= 0.6 <= high
    offline.validate_events(treated)  # the added rows follow the event schema
