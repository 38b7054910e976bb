"""THE feature specification: names, order, windows, definitions and defaults.

Both the offline pipeline and the online store compute features with `compute_features` below, from
the same per-event arrays; they differ only in where the events come from. That is what keeps what
is served equal to what was trained on.

Conventions, chosen once and relied on by the online store:
- Times are whole Unix seconds (UTC); an event's time is its `ts` truncated to the second.
- A feature as of T uses only events with ts <= T.
- The w-day window holds the events with T - w*86400 < ts <= T (a sliding window, not calendar days):
  an event exactly w days before T is outside the w-day window; an event at T is inside.
- Amounts are counted in whole cents (rounded half to even), so sums are exact; features report units.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from app.features.events import EVENT_TYPE_CODES

# Types in code order: the order of the per-type count features and of the spec's "event_types".
EVENT_TYPES: Final[tuple[str, ...]] = tuple(sorted(EVENT_TYPE_CODES, key=EVENT_TYPE_CODES.__getitem__))
TYPE_CODE: Final = EVENT_TYPE_CODES
PURCHASE: Final = TYPE_CODE["purchase"]
REFUND: Final = TYPE_CODE["refund"]
ADD_TO_CART: Final = TYPE_CODE["add_to_cart"]
REVIEW: Final = TYPE_CODE["review"]

DAY_SECONDS: Final = 86_400
WINDOWS_DAYS: Final = (1, 7, 30, 90)
LONGEST_WINDOW_DAYS: Final = max(WINDOWS_DAYS)
# Recency features are capped, and this cap is also their value when there is nothing to measure.
RECENCY_CAP_DAYS: Final = 730.0
LOW_RATING_MAX: Final = 2
# Purchase regularity looks back over at most this many 30-day periods (a year).
PERIOD_DAYS: Final = 30
MAX_PERIODS: Final = 12
# The half-life of a purchase's weight in the decayed spend.
SPEND_HALF_LIFE_DAYS: Final = 30
# Overdue ratios beyond this say nothing more than "long overdue": capped, and the value without a rhythm.
OVERDUE_CAP: Final = 10.0


@dataclass(frozen=True)
class Feature:
    name: str
    definition: str
    default: float  # the value for a user with no events of the kind the feature looks at
    heavy_tailed: bool  # log1p-transformed before scaling


def _features() -> tuple[Feature, ...]:
    out = [
        Feature(
            f"{kind}_count_{days}d",
            f"number of {kind} events with T-{days}d < ts <= T",
            0.0,
            True,
        )
        for kind in EVENT_TYPES
        for days in WINDOWS_DAYS
    ]
    for kind in ("purchase", "refund"):
        out += [
            Feature(f"{kind}_amount_{days}d", f"sum of {kind} amounts with T-{days}d < ts <= T", 0.0, True)
            for days in (30, 90)
        ]
    out += [
        Feature(
            "days_since_last_purchase",
            f"(T - time of the last purchase) in days, capped at {RECENCY_CAP_DAYS:g}",
            RECENCY_CAP_DAYS,
            False,
        ),
        Feature(
            "days_since_last_event",
            f"(T - time of the last event of any type) in days, capped at {RECENCY_CAP_DAYS:g}",
            RECENCY_CAP_DAYS,
            False,
        ),
        Feature("tenure_days", "(T - time of the first event) in days", 0.0, False),
        Feature("lifetime_purchases", "number of purchases with ts <= T", 0.0, True),
        Feature("lifetime_spend", "sum of purchase amounts with ts <= T", 0.0, True),
        Feature(
            "purchase_gap_mean_days",
            "mean gap in days between consecutive purchases (time order); 0 with fewer than 2",
            0.0,
            True,
        ),
        Feature(
            "purchase_gap_std_days",
            "population standard deviation of those gaps; 0 with fewer than 2 purchases",
            0.0,
            True,
        ),
        Feature(
            "cart_conversion_30d",
            "min(1, purchases / add_to_cart events) over the 30-day window; 0 without carts",
            0.0,
            False,
        ),
        Feature(
            "review_rating_mean_90d",
            "mean rating of reviews in the 90-day window; 0 without reviews",
            0.0,
            False,
        ),
        Feature(
            "low_rating_count_90d",
            f"number of reviews rated <= {LOW_RATING_MAX} in the 90-day window",
            0.0,
            True,
        ),
    ]
    out += _regularity() + _decayed_spend_and_trends()
    return tuple(out)


def _regularity() -> list[Feature]:
    # "Days" and "periods" count back from T: an event's day is (T - ts) // 86400, its period
    # (T - ts) // (PERIOD_DAYS * 86400), so day 0 is the 24 hours ending at T, as in the window rule.
    return [
        Feature(
            "purchase_period_share_12",
            f"share of the last P {PERIOD_DAYS}-day periods ending at T (period k holds "
            f"T-(k+1)*{PERIOD_DAYS}d < ts <= T-k*{PERIOD_DAYS}d) that hold a purchase, where "
            f"P = min({MAX_PERIODS}, 1 + the period of the first event); 0 without events",
            0.0,
            False,
        ),
        Feature(
            "purchase_days_lifetime",
            "number of distinct days (T - ts) // 86400 with a purchase, ts <= T",
            0.0,
            True,
        ),
        Feature(
            "purchase_overdue_ratio",
            "days_since_last_purchase / max(1, purchase_gap_mean_days), capped at "
            f"{OVERDUE_CAP:g}; {OVERDUE_CAP:g} with fewer than 2 purchases",
            OVERDUE_CAP,
            True,
        ),
    ]


def _decayed_spend_and_trends() -> list[Feature]:
    return [
        Feature(
            f"spend_decayed_{SPEND_HALF_LIFE_DAYS}d_half_life",
            f"sum over purchases with ts <= T of amount * 2^(-(T - ts) / {SPEND_HALF_LIFE_DAYS}d)",
            0.0,
            True,
        ),
        # Recent against earlier, per 30 days: r = the 30-day window's total, e = half the total of
        # T-90d < ts <= T-30d. (r - e) / (r + e + 1) lies in (-1, 1); the +1 keeps a user with one
        # event from swinging to +-1.
        Feature(
            "trend_activity_30d_vs_90d",
            "(r - e) / (r + e + 1), r = events of any type in the 30-day window, e = half the events "
            "with T-90d < ts <= T-30d",
            0.0,
            False,
        ),
        Feature(
            "trend_spend_30d_vs_90d",
            "(r - e) / (r + e + 1), r = purchase amounts in the 30-day window, e = half the purchase "
            "amounts with T-90d < ts <= T-30d",
            0.0,
            False,
        ),
    ]


FEATURES: Final = _features()
FEATURE_NAMES: Final = tuple(f.name for f in FEATURES)
FEATURE_INDEX: Final = {name: i for i, name in enumerate(FEATURE_NAMES)}
N_FEATURES: Final = len(FEATURES)


def spec_document() -> dict[str, object]:
    """The specification as data: what the model bundle's hash is taken over."""
    return {
        "time_unit": "unix seconds, ts truncated",
        "window_rule": "T - w*86400 < ts <= T",
        "amount_unit": "cents, rounded half to even",
        "event_types": list(EVENT_TYPES),
        "features": [
            {"name": f.name, "definition": f.definition, "default": f.default, "heavy_tailed": f.heavy_tailed}
            for f in FEATURES
        ],
    }


def spec_hash() -> str:
    canonical = json.dumps(spec_document(), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def unix_seconds(ts: datetime) -> int:
    """An aware time as whole Unix seconds, floored.

    Exact, though `timestamp()` is a float: it is the time's whole microseconds divided by 10^6, correctly
    rounded, and below 2^32 s (2106) doubles are 2^-20 s apart, under half the 10^-6 s between a time with
    .999999 and the next second, so the floor never crosses a second (tested against integer arithmetic).
    Cheaper than `(ts - epoch) // timedelta(seconds=1)`, and this runs on every event written."""
    if ts.tzinfo is None:  # timestamp() would take it as local time
        raise ValueError(f"a naive time has no Unix second: {ts!r}")
    return math.floor(ts.timestamp())


def to_cents(amount: float) -> int:
    """Currency units to whole cents, half to even: the same rounding as numpy.rint offline."""
    return round(amount * 100)
