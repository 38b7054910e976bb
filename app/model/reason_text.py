"""How each feature reads to a person: the sentence a reason carries, from the feature's value and the
value typical of customers who stay.

Count and amount features are worded by their name's pattern (`{type}_count_{days}d`,
`{kind}_amount_{days}d`); every other feature has one entry in EXPLICIT. A new feature of either family
needs at most a noun in EVENT_NOUNS or AMOUNT_VERBS; any other new feature needs one line in EXPLICIT.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt

from app.features import spec


@dataclass(frozen=True)
class Number:
    """How a feature's values are written: `decimals` places, trailing zeros dropped when `trim`, or as
    a percentage of 1 when `percent`."""

    decimals: int
    trim: bool = False
    percent: bool = False

    def __call__(self, value: float) -> str:
        if self.percent:
            return f"{value * 100:.{max(self.decimals - 2, 0)}f}%"
        text = f"{value:.{self.decimals}f}"
        if self.trim and "." in text:
            text = text.rstrip("0").rstrip(".")
        return "0" if text == "-0" else text


COUNT: Final = Number(1, trim=True)  # counts are whole; a median of counts may end in .5
DAYS: Final = Number(0)
MONEY: Final = Number(2)
RATING: Final = Number(1)
SHARE: Final = Number(2, percent=True)


@dataclass(frozen=True)
class Wording:
    """`text` with `{value}` in it, and `{s}` where a plural takes an "s" (none when the value is written
    "1"); `special` is a value with a meaning of its own (a default that stands for "none") and its text."""

    text: str
    number: Number = COUNT
    special: tuple[float, str] | None = None

    def is_special(self, value: float) -> bool:
        # The exact value, not as written: a mean gap of 0.3 days is written 0 but is not "no gap".
        return self.special is not None and value == self.special[0]

    def phrase(self, value: float, special: bool) -> str:
        if special and self.special is not None:
            return self.special[1]
        written = self.number(value)
        return self.text.format(value=written, s="" if written == "1" else "s")


_CAP = spec.RECENCY_CAP_DAYS
_LOW = spec.LOW_RATING_MAX
# One entry per feature outside the count and amount families.
EXPLICIT: Final[dict[str, Wording]] = {
    "days_since_last_purchase": Wording(
        "last purchase {value} day{s} ago", DAYS, (_CAP, f"no purchase in the last {_CAP:g} days")
    ),
    "days_since_last_event": Wording(
        "last activity {value} day{s} ago", DAYS, (_CAP, f"no activity in the last {_CAP:g} days")
    ),
    "tenure_days": Wording("a customer for {value} day{s}", DAYS),
    "lifetime_purchases": Wording("{value} purchase{s} in all"),
    "lifetime_spend": Wording("spent {value} in all", MONEY),
    "purchase_gap_mean_days": Wording(
        "{value} day{s} between purchases on average", DAYS, (0.0, "fewer than 2 purchases so far")
    ),
    "purchase_gap_std_days": Wording("time between purchases varies by {value} day{s}", DAYS),
    "cart_conversion_30d": Wording("bought {value} of what was put in the cart in the last 30 days", SHARE),
    "review_rating_mean_90d": Wording(
        "average review rating {value} in the last 90 days", RATING, (0.0, "no review in the last 90 days")
    ),
    "low_rating_count_90d": Wording(f"{{value}} review{{s}} rated {_LOW} or lower in the last 90 days"),
    "purchase_period_share_12": Wording(
        f"bought in {{value}} of the last {spec.MAX_PERIODS} months (periods of {spec.PERIOD_DAYS} days)",
        SHARE,
    ),
    "purchase_days_lifetime": Wording("bought on {value} different day{s} in all"),
    "purchase_overdue_ratio": Wording(
        "{value} times the usual time between purchases since the last one",
        Number(1, trim=True),
        (spec.OVERDUE_CAP, "fewer than 2 purchases, or long overdue"),
    ),
    f"spend_decayed_{spec.SPEND_HALF_LIFE_DAYS}d_half_life": Wording(
        f"recent spending {{value}} (each purchase counted half after {spec.SPEND_HALF_LIFE_DAYS} days)",
        MONEY,
    ),
    "trend_activity_30d_vs_90d": Wording(
        "activity trend {value} over the last 30 days (-1: stopped, 0: steady, +1: new)", Number(2)
    ),
    "trend_spend_30d_vs_90d": Wording(
        "spending trend {value} over the last 30 days (-1: stopped, 0: steady, +1: new)", Number(2)
    ),
}

# Per event type, its noun in `{type}_count_{days}d`.
EVENT_NOUNS: Final[dict[str, str]] = {
    "session_start": "visit{s}",
    "page_view": "page view{s}",
    "add_to_cart": "item{s} put in the cart",
    "remove_from_cart": "item{s} taken out of the cart",
    "purchase": "purchase{s}",
    "refund": "refund{s}",
    "review": "review{s}",
    "support_contact": "support contact{s}",
}
# Per kind of amount, its verb in `{kind}_amount_{days}d`.
AMOUNT_VERBS: Final[dict[str, str]] = {"purchase": "spent", "refund": "refunded"}

_COUNT_NAME = re.compile(r"(?P<kind>[a-z_]+)_count_(?P<days>\d+)d")
_AMOUNT_NAME = re.compile(r"(?P<kind>[a-z_]+)_amount_(?P<days>\d+)d")


def _window(days: str) -> str:
    return "in the last day" if days == "1" else f"in the last {days} days"


def wording_of(name: str) -> Wording | None:
    """The feature's wording, or None for a feature nobody has worded yet."""
    if name in EXPLICIT:
        return EXPLICIT[name]
    if (count := _COUNT_NAME.fullmatch(name)) and count["kind"] in EVENT_NOUNS:
        return Wording(f"{{value}} {EVENT_NOUNS[count['kind']]} {_window(count['days'])}")
    if (amount := _AMOUNT_NAME.fullmatch(name)) and amount["kind"] in AMOUNT_VERBS:
        return Wording(f"{AMOUNT_VERBS[amount['kind']]} {{value}} {_window(amount['days'])}", MONEY)
    return None


def _fallback(name: str) -> Wording:
    # Serving never fails for want of words: a feature without wording reads as its name and value.
    return Wording(f"{name.replace('_', ' ')}: {{value}}")


NO_HISTORY_TEXT: Final = "no history: a new customer, scored by the prior for new customers"


class ReasonTexts:
    """One bundle's sentences: per feature its wording and the typical value among customers who stay
    (NaN where the bundle has none)."""

    def __init__(self, names: Sequence[str], typical: npt.NDArray[np.float64] | None) -> None:
        self._wordings = [wording_of(name) or _fallback(name) for name in names]
        self.typical = np.full(len(names), np.nan) if typical is None else typical
        # Values are rounded as they are written, and a sentence is made once per distinct (feature,
        # written value) and kept for later batches: batches repeat a few thousand of them at most, and
        # formatting each reason anew cost more than the rest of building the reasons.
        self._scale = np.array([10.0**w.number.decimals for w in self._wordings])
        self._special = np.array([np.nan if w.special is None else w.special[0] for w in self._wordings])
        self._cache: dict[int, str] = {}
        self._suffixes = [
            "" if np.isnan(t) else f" (customers who stay: typically {w.number(float(t))})"
            for w, t in zip(self._wordings, self.typical.tolist(), strict=True)
        ]

    def sentence(self, feature: int, value: float) -> str:
        wording = self._wordings[feature]
        return self._sentence(feature, value, wording.is_special(value))

    def _made(self, key: int) -> str:
        """The sentence of one key of `sentences`, made and kept for the batches that follow."""
        n = len(self._wordings)
        feature, rest = key % n, key // n
        written = (rest // 2) / float(self._scale[feature])
        text = self._cache[key] = self._sentence(feature, written, bool(rest % 2))
        return text

    def _sentence(self, feature: int, value: float, special: bool) -> str:
        return self._wordings[feature].phrase(value, special) + self._suffixes[feature]

    def sentences(self, features: npt.NDArray[np.intp], values: npt.NDArray[np.float64]) -> list[str]:
        """The sentence of each (feature, value) pair, in order."""
        if not len(features):
            return []
        scale = self._scale[features]
        # One int64 key per pair, ((written value in its last decimal) x 2 + special) x features + feature:
        # a 1-D unique, several times cheaper than a unique over rows of triples. Clipped far beyond any
        # real value.
        steps = np.rint(np.clip(values * scale, -_STEPS_MAX, _STEPS_MAX)).astype(np.int64)
        special = values == self._special[features]
        n = len(self._wordings)
        distinct, inverse = np.unique((steps * 2 + special) * n + features, return_inverse=True)
        keys = distinct.tolist()
        cache = self._cache
        if len(cache) > _CACHE_MAX:  # bounded: continuous values (days, amounts) keep adding sentences
            cache.clear()
        texts = [cache.get(key) or self._made(key) for key in keys]
        result: list[str] = np.array(texts, dtype=object)[inverse.reshape(-1)].tolist()
        return result


_STEPS_MAX: Final = 2.0**52 / 2048  # keys stay exact in int64 for up to 1024 features
_CACHE_MAX: Final = 100_000  # sentences kept across batches (~15 MB at most)
