"""A seeded simulator of an e-commerce population, writing event logs in the public schema.

Each user belongs to a behavioural segment and carries a latent engagement level. Churn is a latent
process: a daily hazard (raised by the combination of a refund *and* a support contact, and by bad
reviews) starts a decline in which engagement decays until the user stops coming. Sessions follow a
weekly rhythm. A share of events is sent twice and a share arrives late, out of order.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import numpy.typing as npt
import pandas as pd

from app.features import spec
from app.training.progress import progress


@dataclass(frozen=True)
class Segment:
    name: str
    share: float
    sessions_per_week: float
    pages_per_session: float
    carts_per_session: float
    buy_given_cart: float
    basket_mean: float
    refund_rate: float
    review_rate: float
    support_rate: float
    daily_hazard: float


SEGMENTS = (
    Segment("loyal_buyer", 0.2, 2.5, 2.5, 0.6, 0.6, 55.0, 0.08, 0.15, 0.02, 1 / 900),
    Segment("bargain_hunter", 0.25, 2.0, 3.5, 0.7, 0.35, 22.0, 0.2, 0.10, 0.04, 1 / 300),
    Segment("window_shopper", 0.3, 1.5, 4.0, 0.2, 0.15, 40.0, 0.12, 0.05, 0.03, 1 / 220),
    Segment("occasional", 0.25, 0.6, 2.5, 0.5, 0.5, 80.0, 0.12, 0.20, 0.05, 1 / 400),
)
# Sessions by weekday, Monday first: weekends are busier.
WEEKLY_RHYTHM = np.array([0.9, 0.85, 0.9, 0.95, 1.05, 1.25, 1.1])
DECAY_PER_DAY = (0.85, 0.95)  # engagement multiplier range once a user has started to leave
GONE_BELOW = 0.05


@dataclass(frozen=True)
class CouponResponse:
    """Coupons handed to some users, and how they respond: each recipient buys once more with
    probability `uptake`, at a uniform time within `within_days` of the coupon's arrival (a purchase
    past the simulated days is not made). Drawn from a generator of its own seed after the rest, so the
    simulation's other events are the same with or without coupons: the coupon's true effect is known."""

    coupons: tuple[tuple[str, datetime], ...]  # (user id, when the coupon arrived)
    uptake: float = 0.3
    within_days: float = 14.0
    seed: int = 0


@dataclass(frozen=True)
class SimulationConfig:
    n_users: int = 5_000
    start: datetime = datetime(2025, 1, 1, tzinfo=UTC)
    days: int = 300
    seed: int = 7
    duplicate_rate: float = 0.01
    late_rate: float = 0.02
    max_lateness_seconds: int = 3 * spec.DAY_SECONDS
    coupon_response: CouponResponse | None = None  # None: nobody gets a coupon


@dataclass(frozen=True)
class Simulation:
    events: pd.DataFrame  # the log in arrival order, schema columns
    users: pd.DataFrame  # user_id, segment, joined, decline_started (day index or -1), gone (day index or -1)


def simulate(config: SimulationConfig) -> Simulation:
    rng = np.random.default_rng(config.seed)
    n = config.n_users
    shares = np.array([s.share for s in SEGMENTS])
    segment = rng.choice(len(SEGMENTS), size=n, p=shares / shares.sum())
    seg = {
        field: np.array([getattr(s, field) for s in SEGMENTS])[segment]
        for field in Segment.__dataclass_fields__
    }
    joined = rng.integers(0, int(config.days * 0.7), size=n)
    activity = rng.gamma(4.0, 0.25, size=n)  # per-user intensity, mean 1
    satisfaction = rng.beta(5, 2, size=n)
    engagement = np.ones(n)
    decay = rng.uniform(*DECAY_PER_DAY, size=n)
    declining = np.full(n, -1)
    gone = np.full(n, -1)
    refund_memory = np.zeros(n)
    support_memory = np.zeros(n)
    bad_review_memory = np.zeros(n)
    start_s = spec.unix_seconds(config.start)
    chunks: list[dict[str, npt.NDArray[np.generic]]] = []

    for day in progress(range(config.days), desc="simulate", unit="day", leave=False):
        alive = (joined <= day) & (gone < 0)
        # Latent churn: a refund together with a support contact, or bad reviews, multiply the hazard.
        pain = 3.5 * ((refund_memory > 0.3) & (support_memory > 0.3)) + 1.2 * np.minimum(bad_review_memory, 2)
        hazard = seg["daily_hazard"] * np.exp(pain)
        starts = alive & (declining < 0) & (rng.random(n) < hazard)
        declining[starts] = day
        engagement[declining >= 0] *= decay[declining >= 0]
        newly_gone = alive & (engagement < GONE_BELOW)
        gone[newly_gone] = day
        alive &= ~newly_gone

        weekday = (config.start.weekday() + day) % 7
        rate = seg["sessions_per_week"] / 7 * activity * engagement * WEEKLY_RHYTHM[weekday]
        sessions = rng.poisson(np.where(alive, rate, 0.0))
        day_events = _sessions(rng, sessions, seg, satisfaction, engagement, start_s + day * spec.DAY_SECONDS)
        chunks.append(day_events)

        kinds, users = day_events["kind"], day_events["user"]
        refund_memory = refund_memory * 0.97 + np.bincount(users[kinds == spec.REFUND], minlength=n)
        support_memory = support_memory * 0.97 + np.bincount(
            users[kinds == spec.TYPE_CODE["support_contact"]], minlength=n
        )
        low = (kinds == spec.REVIEW) & (
            np.asarray(day_events["rating"], dtype=np.int64) <= spec.LOW_RATING_MAX
        )
        bad_review_memory = bad_review_memory * 0.97 + np.bincount(users[low], minlength=n)

    events = _to_log(rng, {k: np.concatenate([c[k] for c in chunks]) for k in chunks[0]}, config)
    if config.coupon_response is not None:
        events = _with_coupon_purchases(events, config.coupon_response, config)
    users = pd.DataFrame(
        {
            "user_id": _user_ids(np.arange(n)),
            "segment": [SEGMENTS[s].name for s in segment],
            "joined": joined,
            "decline_started": declining,
            "gone": gone,
        }
    )
    return Simulation(events=events, users=users)


def _sessions(
    rng: np.random.Generator,
    sessions: npt.NDArray[np.int64],
    seg: dict[str, npt.NDArray[np.float64]],
    satisfaction: npt.NDArray[np.float64],
    engagement: npt.NDArray[np.float64],
    day_start: int,
) -> dict[str, npt.NDArray[np.generic]]:
    """All events of one day's sessions, as arrays."""
    user = np.repeat(np.arange(len(sessions)), sessions)
    # Session start: evenings are busiest (a wrapped normal around 20:00 UTC).
    start = day_start + (rng.normal(20, 4, size=len(user)) % 24 * 3600).astype(np.int64)
    pages = 1 + rng.poisson(seg["pages_per_session"][user] * (0.5 + 0.5 * engagement[user]))
    carts = rng.poisson(seg["carts_per_session"][user] * engagement[user])
    bought = (carts > 0) & (rng.random(len(user)) < seg["buy_given_cart"][user])
    removed = rng.binomial(carts, 0.3)
    refunded = bought & (rng.random(len(user)) < seg["refund_rate"][user] * (1.5 - satisfaction[user]))
    reviewed = bought & (rng.random(len(user)) < seg["review_rate"][user])
    support = rng.random(len(user)) < seg["support_rate"][user] * (1 + 8 * refunded)

    parts: list[tuple[npt.NDArray[np.int64], int]] = [
        (np.ones(len(user), dtype=np.int64), spec.TYPE_CODE["session_start"]),
        (pages, spec.TYPE_CODE["page_view"]),
        (carts, spec.ADD_TO_CART),
        (removed, spec.TYPE_CODE["remove_from_cart"]),
        (bought.astype(np.int64), spec.PURCHASE),
        (refunded.astype(np.int64), spec.REFUND),
        (reviewed.astype(np.int64), spec.REVIEW),
        (support.astype(np.int64), spec.TYPE_CODE["support_contact"]),
    ]
    session = np.concatenate([np.repeat(np.arange(len(user)), count) for count, _ in parts])
    kind = np.concatenate([np.full(count.sum(), code) for count, code in parts])
    # Later steps of a session come later: offsets grow with the step's position in `parts`.
    step = np.concatenate([np.full(count.sum(), i) for i, (count, _) in enumerate(parts)])
    ts = start[session] + step * 60 + rng.integers(0, 60, size=len(session))
    ts[kind == spec.REFUND] += (
        rng.integers(1, 10, size=int((kind == spec.REFUND).sum())) * spec.DAY_SECONDS // 4
    )

    basket = seg["basket_mean"][user[session]] * rng.lognormal(0, 0.5, size=len(session))
    amount = np.where((kind == spec.PURCHASE) | (kind == spec.REFUND), np.round(basket, 2), np.nan)
    stars = np.clip(np.round(rng.normal(1 + 4 * satisfaction[user[session]], 0.9)), 1, 5)
    rating = np.where(kind == spec.REVIEW, stars, 0).astype(np.int64)
    items = np.where(kind == spec.PURCHASE, 1 + rng.poisson(1.0, size=len(session)), 0)
    return {"user": user[session], "ts": ts, "kind": kind, "amount": amount, "rating": rating, "items": items}


def _user_ids(index: npt.NDArray[np.int64]) -> list[str]:
    return [f"u{i:06d}" for i in index]


def _to_log(
    rng: np.random.Generator, ev: dict[str, npt.NDArray[np.generic]], config: SimulationConfig
) -> pd.DataFrame:
    """Arrays -> schema rows in arrival order, with duplicates and late arrivals mixed in."""
    n = len(ev["ts"])
    ids = pd.Series(rng.integers(0, 2**62, size=n)).map("{:016x}".format)
    kind = ev["kind"]
    frame = pd.DataFrame(
        {
            "event_id": ids.to_numpy(),
            "user_id": _user_ids(ev["user"]),  # type: ignore[arg-type]
            "type": np.array(spec.EVENT_TYPES)[kind],
            "ts": np.datetime_as_string(ev["ts"].astype("datetime64[s]"), unit="s"),
            "amount": ev["amount"],
            "items": pd.array(np.where(kind == spec.PURCHASE, ev["items"], 0), dtype="Int64"),
            "rating": pd.array(ev["rating"], dtype="Int64"),
        }
    )
    frame["ts"] = frame["ts"] + "Z"
    frame.loc[kind != spec.PURCHASE, "items"] = pd.NA
    frame.loc[kind != spec.REVIEW, "rating"] = pd.NA

    arrival = ev["ts"].astype(np.int64).copy()
    late = rng.random(n) < config.late_rate
    arrival[late] += rng.integers(60, config.max_lateness_seconds, size=int(late.sum()))
    duplicated = np.flatnonzero(rng.random(n) < config.duplicate_rate)
    order_key = np.concatenate([arrival, arrival[duplicated] + rng.integers(1, 3600, size=len(duplicated))])
    rows = np.concatenate([np.arange(n), duplicated])
    return frame.iloc[rows[np.argsort(order_key, kind="stable")]].reset_index(drop=True)


def _with_coupon_purchases(
    events: pd.DataFrame, response: CouponResponse, config: SimulationConfig
) -> pd.DataFrame:
    """The log with the coupon recipients' extra purchases, each placed after the last event that
    happened before it (the log is in arrival order)."""
    rng = np.random.default_rng(response.seed)
    users = np.array([user for user, _ in response.coupons], dtype=object)
    arrived = np.array([spec.unix_seconds(at) for _, at in response.coupons], dtype=np.int64)
    buys = rng.random(len(users)) < response.uptake
    ts = arrived + (rng.random(len(users)) * response.within_days * spec.DAY_SECONDS).astype(np.int64)
    end = spec.unix_seconds(config.start) + config.days * spec.DAY_SECONDS
    made = buys & (ts < end)
    count = int(made.sum())
    extra = pd.DataFrame(
        {
            "event_id": pd.Series(rng.integers(0, 2**62, size=count)).map("coupon-{:016x}".format).to_numpy(),
            "user_id": users[made],
            "type": "purchase",
            "ts": np.datetime_as_string(ts[made].astype("datetime64[s]"), unit="s"),
            "amount": np.round(rng.lognormal(np.log(30.0), 0.5, size=count), 2),
            "items": pd.array(np.ones(count, dtype=np.int64), dtype="Int64"),
            "rating": pd.array([pd.NA] * count, dtype="Int64"),
        }
    )
    extra["ts"] = extra["ts"] + "Z"
    logged = (pd.to_datetime(events["ts"], utc=True) - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(seconds=1)
    seen = np.maximum.accumulate(logged.to_numpy(np.int64))
    position = np.searchsorted(seen, ts[made], side="right")
    order = np.argsort(np.concatenate([np.arange(len(events)) + 0.5, position]), kind="stable")
    return pd.concat([events, extra], ignore_index=True).iloc[order].reset_index(drop=True)
