"""Vectorised computation of the feature specification from per-event arrays.

The offline pipeline and the online store both call `compute_features`; its input is a batch of
users' events as parallel arrays, so one call serves a million-event log or a 1,000-user request.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from app.features import spec

IntArray = npt.NDArray[np.int64]
FloatMatrix = npt.NDArray[np.float64]

_I = spec.FEATURE_INDEX
_N_TYPES = len(spec.EVENT_TYPES)


@dataclass(frozen=True)
class EventArrays:
    """Events of `n_users` users: user index (0..n_users-1), Unix seconds, type code, cents, rating."""

    n_users: int
    user: IntArray
    ts: IntArray
    kind: IntArray
    cents: IntArray
    rating: IntArray

    def select(self, mask: npt.NDArray[np.bool_]) -> EventArrays:
        return EventArrays(
            self.n_users, self.user[mask], self.ts[mask], self.kind[mask], self.cents[mask], self.rating[mask]
        )

    def in_user_time_order(self) -> EventArrays:
        """The same events sorted by (user, ts); stable, so equal times keep their order."""
        key = self.user * (1 << 33) + self.ts  # ts < 2**32: one int64 key orders (user, ts)
        if len(key) < 2 or bool((key[1:] >= key[:-1]).all()):
            return self  # the online store's records arrive sorted already
        order = np.lexsort((self.ts, self.user))
        return EventArrays(
            self.n_users,
            self.user[order],
            self.ts[order],
            self.kind[order],
            self.cents[order],
            self.rating[order],
        )


def compute_features(events: EventArrays, as_of: int) -> tuple[FloatMatrix, npt.NDArray[np.bool_]]:
    """The (n_users, N_FEATURES) matrix as of Unix second `as_of`, and which users have any event <= as_of."""
    n = events.n_users
    ev = events.select(events.ts <= as_of).in_user_time_order()
    out = np.empty((n, spec.N_FEATURES), dtype=np.float64)
    for feature, column in zip(spec.FEATURES, out.T, strict=True):
        column[:] = feature.default
    age = as_of - ev.ts
    is_purchase = ev.kind == spec.PURCHASE

    for days in spec.WINDOWS_DAYS:
        inside = age < days * spec.DAY_SECONDS
        counts = np.bincount(ev.user[inside] * _N_TYPES + ev.kind[inside], minlength=n * _N_TYPES)
        counts = counts.reshape(n, _N_TYPES)
        for code, kind in enumerate(spec.EVENT_TYPES):
            out[:, _I[f"{kind}_count_{days}d"]] = counts[:, code]
        if days in (30, 90):
            for code, kind in ((spec.PURCHASE, "purchase"), (spec.REFUND, "refund")):
                sel = inside & (ev.kind == code)
                cents = np.bincount(ev.user[sel], weights=ev.cents[sel], minlength=n)
                out[:, _I[f"{kind}_amount_{days}d"]] = cents / 100.0

    _recency(out, ev, is_purchase, as_of)
    _purchase_history(out, ev, is_purchase)
    _ratios(out, ev, age)
    return out, np.bincount(ev.user, minlength=n) > 0


def _recency(out: FloatMatrix, ev: EventArrays, is_purchase: npt.NDArray[np.bool_], as_of: int) -> None:
    n = ev.n_users
    last_event = np.full(n, np.iinfo(np.int64).min)
    np.maximum.at(last_event, ev.user, ev.ts)
    first_event = np.full(n, np.iinfo(np.int64).max)
    np.minimum.at(first_event, ev.user, ev.ts)
    last_purchase = np.full(n, np.iinfo(np.int64).min)
    np.maximum.at(last_purchase, ev.user[is_purchase], ev.ts[is_purchase])

    seen = last_event > np.iinfo(np.int64).min
    bought = last_purchase > np.iinfo(np.int64).min
    cap = spec.RECENCY_CAP_DAYS
    out[seen, _I["days_since_last_event"]] = np.minimum((as_of - last_event[seen]) / spec.DAY_SECONDS, cap)
    out[bought, _I["days_since_last_purchase"]] = np.minimum(
        (as_of - last_purchase[bought]) / spec.DAY_SECONDS, cap
    )
    out[seen, _I["tenure_days"]] = (as_of - first_event[seen]) / spec.DAY_SECONDS


def _purchase_history(out: FloatMatrix, ev: EventArrays, is_purchase: npt.NDArray[np.bool_]) -> None:
    n = ev.n_users
    user, ts = ev.user[is_purchase], ev.ts[is_purchase]  # already in (user, ts) order
    out[:, _I["lifetime_purchases"]] = np.bincount(user, minlength=n)
    out[:, _I["lifetime_spend"]] = np.bincount(user, weights=ev.cents[is_purchase], minlength=n) / 100.0

    same_user = user[1:] == user[:-1]
    gap_user = user[1:][same_user]
    gaps = (ts[1:] - ts[:-1])[same_user] / spec.DAY_SECONDS
    n_gaps = np.bincount(gap_user, minlength=n)
    has_gaps = n_gaps > 0
    mean = np.zeros(n)
    mean[has_gaps] = np.bincount(gap_user, weights=gaps, minlength=n)[has_gaps] / n_gaps[has_gaps]
    # Two passes rather than E[g^2] - E[g]^2, which cancels badly for regular buyers.
    deviation = gaps - mean[gap_user]
    variance = np.zeros(n)
    variance[has_gaps] = (
        np.bincount(gap_user, weights=deviation * deviation, minlength=n)[has_gaps] / n_gaps[has_gaps]
    )
    out[:, _I["purchase_gap_mean_days"]] = mean
    out[:, _I["purchase_gap_std_days"]] = np.sqrt(variance)


def _ratios(out: FloatMatrix, ev: EventArrays, age: IntArray) -> None:
    n = ev.n_users
    carts = out[:, _I["add_to_cart_count_30d"]]
    purchases = out[:, _I["purchase_count_30d"]]
    with_carts = carts > 0
    out[with_carts, _I["cart_conversion_30d"]] = np.minimum(1.0, purchases[with_carts] / carts[with_carts])

    reviews = (ev.kind == spec.REVIEW) & (age < 90 * spec.DAY_SECONDS)
    n_reviews = np.bincount(ev.user[reviews], minlength=n)
    rating_sum = np.bincount(ev.user[reviews], weights=ev.rating[reviews], minlength=n)
    reviewed = n_reviews > 0
    out[reviewed, _I["review_rating_mean_90d"]] = rating_sum[reviewed] / n_reviews[reviewed]
    low = reviews & (ev.rating <= spec.LOW_RATING_MAX)
    out[:, _I["low_rating_count_90d"]] = np.bincount(ev.user[low], minlength=n)
