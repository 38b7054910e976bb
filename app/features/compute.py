"""Computation of the feature specification from per-event arrays.

The offline pipeline and the online store both call `compute_features`; its input is a batch of
users' events as parallel arrays, so one call serves a million-event log or a 1,000-user request. A
compiled pass over each user's events (app/features/_kernel.c) computes every feature but the decayed
spend, whose exp2 is numpy's, here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from app.features import _kernel, spec

IntArray = npt.NDArray[np.int64]
# Type codes and ratings may come narrower than int64 (the store's records hold bytes).
NarrowIntArray = npt.NDArray[np.integer[Any]]
FloatMatrix = npt.NDArray[np.float64]

_I = spec.FEATURE_INDEX
_N_TYPES = len(spec.EVENT_TYPES)


@dataclass(frozen=True)
class EventArrays:
    """Events of `n_users` users: user index (0..n_users-1), Unix seconds, type code, cents, rating."""

    n_users: int
    user: IntArray
    ts: IntArray
    kind: NarrowIntArray
    cents: NarrowIntArray
    rating: NarrowIntArray
    time_ordered: bool = False  # already sorted by (user, ts), as the online store's records are

    def up_to(self, as_of: int) -> EventArrays:
        """The events with ts <= as_of (the same object when that is all of them, the usual case)."""
        if len(self.ts) == 0 or self.ts.max() <= as_of:
            return self
        return self.select(self.ts <= as_of)

    def select(self, mask: npt.NDArray[np.bool_]) -> EventArrays:
        if mask.all():
            return self
        return EventArrays(
            self.n_users,
            self.user[mask],
            self.ts[mask],
            self.kind[mask],
            self.cents[mask],
            self.rating[mask],
            self.time_ordered,
        )

    def in_user_time_order(self) -> EventArrays:
        """The same events sorted by (user, ts); stable, so equal times keep their order."""
        if self.time_ordered:
            return self
        order = np.lexsort((self.ts, self.user))
        return EventArrays(
            self.n_users,
            self.user[order],
            self.ts[order],
            self.kind[order],
            self.cents[order],
            self.rating[order],
            time_ordered=True,
        )


_COUNT_COLUMNS = np.array([[_I[f"{k}_count_{d}d"] for d in spec.WINDOWS_DAYS] for k in spec.EVENT_TYPES])
_DECAYED_SPEND = _I[f"spend_decayed_{spec.SPEND_HALF_LIFE_DAYS}d_half_life"]
_DEFAULTS = np.array([f.default for f in spec.FEATURES])


def _kernel_layout() -> tuple[IntArray, FloatMatrix]:
    """The specification as the kernel reads it: named integers and reals, in the kernel's orders."""
    edges = dict.fromkeys((f"edge_{i}" for i in range(_kernel.MAX_WINDOWS)), 0)
    edges.update({f"edge_{i}": days * spec.DAY_SECONDS for i, days in enumerate(spec.WINDOWS_DAYS)})
    integers = {
        "n_types": _N_TYPES,
        "n_windows": len(spec.WINDOWS_DAYS),
        **edges,
        # The count columns, type by type and window by window, side by side from here.
        "count_start": int(_COUNT_COLUMNS[0, 0]),
        "window_30": spec.WINDOWS_DAYS.index(30),
        "window_90": spec.WINDOWS_DAYS.index(90),
        "purchase": spec.PURCHASE,
        "refund": spec.REFUND,
        "add_to_cart": spec.ADD_TO_CART,
        "review": spec.REVIEW,
        "day_seconds": spec.DAY_SECONDS,
        "period_seconds": spec.PERIOD_DAYS * spec.DAY_SECONDS,
        "max_periods": spec.MAX_PERIODS,
        "low_rating_max": spec.LOW_RATING_MAX,
        "review_window_seconds": 90 * spec.DAY_SECONDS,
        **{name: _I[name] for name in _kernel.LAYOUT if name in _I},
    }
    reals = {"recency_cap_days": spec.RECENCY_CAP_DAYS, "overdue_cap": spec.OVERDUE_CAP}
    # Every feature is the kernel's or this module's: a new one fails here, not silently at its default.
    theirs = {_I[name] for name in _kernel.LAYOUT if name in _I} | set(_COUNT_COLUMNS.ravel().tolist())
    if theirs | {_DECAYED_SPEND} != set(range(spec.N_FEATURES)):
        raise RuntimeError("a feature that neither the kernel nor compute.py computes")
    if (_COUNT_COLUMNS.ravel() != np.arange(_COUNT_COLUMNS.size) + integers["count_start"]).any():
        raise RuntimeError("the count features are not one block, type by type, window by window")
    layout = np.array([integers[name] for name in _kernel.LAYOUT], dtype=np.int64)
    return layout, np.array([reals[name] for name in _kernel.REAL_LAYOUT], dtype=np.float64)


_LAYOUT, _REALS = _kernel_layout()


def compute_features(events: EventArrays, as_of: int) -> tuple[FloatMatrix, npt.NDArray[np.bool_]]:
    """The (n_users, N_FEATURES) matrix as of Unix second `as_of`, and which users have any event <= as_of."""
    ev = events.up_to(as_of).in_user_time_order()
    out, known = _defaults(ev.n_users)
    _kernel.features(
        np.ascontiguousarray(ev.user, dtype=np.int64),
        np.ascontiguousarray(ev.ts, dtype=np.int64),
        np.ascontiguousarray(ev.kind, dtype=np.uint8),
        np.ascontiguousarray(ev.cents, dtype=np.int64),
        np.ascontiguousarray(ev.rating, dtype=np.uint8),
        as_of,
        _LAYOUT,
        _REALS,
        out,
        known,
    )
    purchases = np.flatnonzero(ev.kind == spec.PURCHASE)
    _decayed_spend(out, ev.user.take(purchases), ev.ts.take(purchases), ev.cents.take(purchases), as_of)
    return out, known


def features_of_records(
    blobs: list[bytes | None], record_format: IntArray, as_of: int
) -> tuple[FloatMatrix, npt.NDArray[np.bool_]]:
    """`compute_features` of the online store's strings (one per user, None for none), read by the kernel
    straight from the records that `record_format` describes (app/features/records.py)."""
    out, known = _defaults(len(blobs))
    purchases = _kernel.features_from_records(blobs, record_format, as_of, _LAYOUT, _REALS, out, known)
    user, ts, cents = (np.frombuffer(column, dtype=np.int64) for column in purchases)
    _decayed_spend(out, user, ts, cents, as_of)
    return out, known


def _defaults(n_users: int) -> tuple[FloatMatrix, npt.NDArray[np.bool_]]:
    """Every row at the features' defaults, and no user known: the kernel fills the users with events."""
    out = np.empty((n_users, len(_DEFAULTS)))
    out[:] = _DEFAULTS
    return out, np.zeros(n_users, dtype=bool)


def _decayed_spend(out: FloatMatrix, user: IntArray, ts: IntArray, cents: NarrowIntArray, as_of: int) -> None:
    """The decayed spend from the purchases (in (user, ts) order). Here, not in the kernel: numpy's exp2
    and the C library's differ in the last bit of some values, and the trained models saw numpy's."""
    half_life = spec.SPEND_HALF_LIFE_DAYS * spec.DAY_SECONDS
    weights = cents * np.exp2(-(as_of - ts) / half_life)
    out[:, _DECAYED_SPEND] = np.bincount(user, weights=weights, minlength=len(out)) / 100.0
