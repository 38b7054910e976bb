"""The feature specification as whole-array numpy passes: what the compiled kernel must equal bit for bit.

This was the served and trained implementation before the kernel (app/features/_kernel.c); it stays here
as the kernel's reference, an independent second computation of every feature.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from app.features import spec
from app.features.compute import EventArrays, FloatMatrix, IntArray
from app.features.records import RECORD, RECORD_DTYPE

_I = spec.FEATURE_INDEX
_N_TYPES = len(spec.EVENT_TYPES)


# Column of `{kind}_count_{days}d` for every (kind, window), and of the windowed amounts.
_COUNT_COLUMNS = np.array([[_I[f"{k}_count_{d}d"] for d in spec.WINDOWS_DAYS] for k in spec.EVENT_TYPES])
# The specification lists them type by type, window by window, side by side: one block of columns
# that the running sums over the window bins fill with one assignment.
_COUNT_BLOCK = slice(int(_COUNT_COLUMNS[0, 0]), int(_COUNT_COLUMNS[-1, -1]) + 1)
assert (_COUNT_COLUMNS.ravel() == np.arange(_COUNT_BLOCK.start, _COUNT_BLOCK.stop)).all()
_AMOUNT_WINDOWS = (30, 90)
_PAID_KINDS = [spec.PURCHASE, spec.REFUND]
# Window index -> the amount columns of (purchase, refund) for that window.
_AMOUNT_COLUMNS = {
    spec.WINDOWS_DAYS.index(days): [_I[f"{kind}_amount_{days}d"] for kind in ("purchase", "refund")]
    for days in _AMOUNT_WINDOWS
}
_WINDOW_EDGES = np.array(spec.WINDOWS_DAYS, dtype=np.int64) * spec.DAY_SECONDS
_N_SLOTS = len(spec.WINDOWS_DAYS) + 1  # each window, plus "older than every window"
assert _N_TYPES * _N_SLOTS <= 127  # a (type, slot) pair fits an int8 (see compute_features)
_DEFAULTS = np.array([f.default for f in spec.FEATURES])


def reference_features(events: EventArrays, as_of: int) -> tuple[FloatMatrix, npt.NDArray[np.bool_]]:
    """The (n_users, N_FEATURES) matrix as of Unix second `as_of`, and which users have any event <= as_of."""
    n = events.n_users
    ev = events.up_to(as_of).in_user_time_order()
    out = np.empty((n, len(_DEFAULTS)))
    out[:] = _DEFAULTS
    age = as_of - ev.ts

    # One pass for all windows: bin each event by the narrowest window holding it (an event exactly
    # w days old is outside the w-day window), then running sums over the bins give every window's total.
    # (Comparisons, not searchsorted, and index arrays, not boolean masks: this runs on every served
    # batch, and both are several times faster on arrays of this size.)
    narrowest = (age >= _WINDOW_EDGES[0]).view(np.int8)
    for edge in _WINDOW_EDGES[1:]:
        narrowest += (age >= edge).view(np.int8)
    # The cell's low part (type, slot) fits a byte: one int64 pass for the user's part, not three.
    low = ev.kind.astype(np.int8, copy=False) * np.int8(_N_SLOTS) + narrowest
    cell = ev.user * (_N_TYPES * _N_SLOTS) + low
    shape = (n, _N_TYPES, _N_SLOTS)
    bins = np.bincount(cell, minlength=n * _N_TYPES * _N_SLOTS).reshape(shape)
    # Running sums over the window bins, one long strided add per window (a cumsum along the short
    # window axis loops in C per (user, type) pair and took longer).
    by_pair = bins.reshape(n * _N_TYPES, _N_SLOTS)
    counts = np.empty((n * _N_TYPES, len(spec.WINDOWS_DAYS)))
    counts[:, 0] = by_pair[:, 0]
    for window in range(1, len(spec.WINDOWS_DAYS)):
        np.add(counts[:, window - 1], by_pair[:, window], out=counts[:, window])
    out[:, _COUNT_BLOCK] = counts.reshape(n, -1)

    # Purchases and refunds are a few percent of the events: find them in one pass over the types,
    # and everything after works on their indices.
    paid = np.flatnonzero((ev.kind == spec.PURCHASE) | (ev.kind == spec.REFUND))
    purchases = paid[ev.kind.take(paid) == spec.PURCHASE]
    runs = _runs(ev.user)
    _amounts(out, ev, cell, paid)
    _recency(out, ev, runs, purchases, as_of)
    _purchase_history(out, ev, purchases)
    _ratios(out, ev, age)
    _regularity(out, ev, runs, age, purchases)
    _decayed_spend_and_trends(out, ev, age, purchases)
    known = np.zeros(n, dtype=bool)
    known[ev.user.take(runs[0])] = True
    return out, known


def _amounts(out: FloatMatrix, ev: EventArrays, cell: IntArray, paid: IntArray) -> None:
    """Windowed purchase and refund amounts, from the events that carry an amount."""
    n = ev.n_users
    shape = (n, _N_TYPES, _N_SLOTS)
    bins = np.bincount(cell[paid], weights=ev.cents[paid], minlength=n * _N_TYPES * _N_SLOTS).reshape(shape)
    running = np.zeros((n, len(_PAID_KINDS)))  # (users, kinds): cents inside the window reached so far
    for window in range(len(spec.WINDOWS_DAYS)):
        running += bins[:, _PAID_KINDS, window]
        for kind, column in enumerate(_AMOUNT_COLUMNS.get(window, [])):
            out[:, column] = running[:, kind] / 100.0


def _runs(user: IntArray) -> tuple[IntArray, IntArray]:
    """First and last index of each user's run in user-sorted arrays."""
    if len(user) == 0:
        return user, user
    first = np.empty(len(user), dtype=bool)
    first[0] = True
    np.not_equal(user[1:], user[:-1], out=first[1:])
    starts = np.flatnonzero(first)
    ends = np.empty_like(starts)
    ends[:-1] = starts[1:] - 1
    ends[-1] = len(user) - 1
    return starts, ends


def _recency(
    out: FloatMatrix, ev: EventArrays, runs: tuple[IntArray, IntArray], purchases: IntArray, as_of: int
) -> None:
    # Events are in (user, ts) order: a run's first event is the user's earliest, its last the latest.
    cap = spec.RECENCY_CAP_DAYS
    first, last = runs
    seen = ev.user[first]
    out[seen, _I["days_since_last_event"]] = np.minimum((as_of - ev.ts[last]) / spec.DAY_SECONDS, cap)
    out[seen, _I["tenure_days"]] = (as_of - ev.ts[first]) / spec.DAY_SECONDS
    user, ts = ev.user.take(purchases), ev.ts.take(purchases)
    _, last = _runs(user)
    out[user[last], _I["days_since_last_purchase"]] = np.minimum((as_of - ts[last]) / spec.DAY_SECONDS, cap)


def _purchase_history(out: FloatMatrix, ev: EventArrays, purchases: IntArray) -> None:
    n = ev.n_users
    user, ts = ev.user.take(purchases), ev.ts.take(purchases)  # already in (user, ts) order
    out[:, _I["lifetime_purchases"]] = np.bincount(user, minlength=n)
    out[:, _I["lifetime_spend"]] = np.bincount(user, weights=ev.cents.take(purchases), minlength=n) / 100.0

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

    reviews = np.flatnonzero(ev.kind == spec.REVIEW)
    reviews = reviews[age.take(reviews) < 90 * spec.DAY_SECONDS]
    n_reviews = out[:, _I["review_count_90d"]]
    user, rating = ev.user.take(reviews), ev.rating.take(reviews)
    rating_sum = np.bincount(user, weights=rating, minlength=n)
    reviewed = n_reviews > 0
    out[reviewed, _I["review_rating_mean_90d"]] = rating_sum[reviewed] / n_reviews[reviewed]
    out[:, _I["low_rating_count_90d"]] = np.bincount(user[rating <= spec.LOW_RATING_MAX], minlength=n)


def _distinct_per_user(user: IntArray, step: IntArray, n: int) -> IntArray:
    """Distinct (user, step) pairs per user, for arrays in (user, ts) order: within a user, a step
    counted back from T ((T - ts) // length) never increases, so each new pair starts where it changes."""
    new = np.ones(len(user), dtype=bool)
    new[1:] = (user[1:] != user[:-1]) | (step[1:] != step[:-1])
    return np.bincount(user[new], minlength=n)


def _regularity(
    out: FloatMatrix, ev: EventArrays, runs: tuple[IntArray, IntArray], age: IntArray, purchases: IntArray
) -> None:
    n = ev.n_users
    user, purchase_age = ev.user.take(purchases), age.take(purchases)
    out[:, _I["purchase_days_lifetime"]] = _distinct_per_user(user, purchase_age // spec.DAY_SECONDS, n)

    period_seconds = spec.PERIOD_DAYS * spec.DAY_SECONDS
    first, _ = runs
    periods = np.zeros(n, dtype=np.int64)  # P: the periods a user's history reaches, at most a year's
    periods[ev.user[first]] = np.minimum(spec.MAX_PERIODS, 1 + age[first] // period_seconds)
    period = purchase_age // period_seconds
    counted = period < periods[user]
    bought = _distinct_per_user(user[counted], period[counted], n)
    seen = periods > 0
    out[seen, _I["purchase_period_share_12"]] = bought[seen] / periods[seen]

    repeat = out[:, _I["lifetime_purchases"]] >= 2
    rhythm = np.maximum(1.0, out[repeat, _I["purchase_gap_mean_days"]])
    out[repeat, _I["purchase_overdue_ratio"]] = np.minimum(
        spec.OVERDUE_CAP, out[repeat, _I["days_since_last_purchase"]] / rhythm
    )


def _trend(recent: FloatMatrix, ninety: FloatMatrix) -> FloatMatrix:
    earlier = (ninety - recent) / 2.0  # per 30 days, over the 60 days before the 30-day window
    result: FloatMatrix = (recent - earlier) / (recent + earlier + 1.0)
    return result


def _decayed_spend_and_trends(out: FloatMatrix, ev: EventArrays, age: IntArray, purchases: IntArray) -> None:
    n = ev.n_users
    half_life = spec.SPEND_HALF_LIFE_DAYS * spec.DAY_SECONDS
    weights = ev.cents.take(purchases) * np.exp2(-age.take(purchases) / half_life)
    spend = np.bincount(ev.user.take(purchases), weights=weights, minlength=n) / 100.0
    out[:, _I[f"spend_decayed_{spec.SPEND_HALF_LIFE_DAYS}d_half_life"]] = spend

    thirty, ninety = spec.WINDOWS_DAYS.index(30), spec.WINDOWS_DAYS.index(90)
    events_30d = out[:, _COUNT_COLUMNS[:, thirty]].sum(axis=1)
    events_90d = out[:, _COUNT_COLUMNS[:, ninety]].sum(axis=1)
    out[:, _I["trend_activity_30d_vs_90d"]] = _trend(events_30d, events_90d)
    out[:, _I["trend_spend_30d_vs_90d"]] = _trend(
        out[:, _I["purchase_amount_30d"]], out[:, _I["purchase_amount_90d"]]
    )


def decode(blobs: Sequence[bytes | None]) -> EventArrays:
    """MGET replies (one per user, None for unknown users) -> event arrays, with numpy alone: the
    reference for the kernel's own reading of the records."""
    # map/filter keep the per-user loop in C: a Python-level generator over thousands of replies cost
    # more than all the decoding after it.
    present = [b or b"" for b in blobs]
    counts = np.fromiter(map(len, present), dtype=np.int64, count=len(present)) // RECORD.size
    records = np.frombuffer(b"".join(present), dtype=RECORD_DTYPE)
    return EventArrays(
        n_users=len(blobs),
        user=np.repeat(np.arange(len(blobs), dtype=np.int64), counts),
        ts=records["ts"].astype(np.int64),
        # As narrow as stored: less memory traffic than int64 for the same values.
        kind=np.ascontiguousarray(records["kind"]),
        cents=records["cents"].astype(np.int64),
        rating=np.ascontiguousarray(records["rating"]),
        time_ordered=True,  # each user's records are kept sorted, and users follow request order
    )
