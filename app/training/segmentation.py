"""K-Means behavioural segments on scaled features, each named after its profile, with their sizes."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
from sklearn.cluster import KMeans

from app.features import spec
from app.model.postprocess import Segments

Matrix = npt.NDArray[np.float64]

# (name, feature, sign): profiles a CRM team recognises; a centroid far above (+1) or below (-1) the
# average on the feature earns the name. Purchase-only logs (CDNOW) separate mostly by how recently and
# how often people bought, hence several purchase-timing profiles.
PROFILES = (
    ("unhappy customers", "support_contact_count_90d", 1),
    ("unhappy customers", "refund_count_90d", 1),
    ("lapsed", "days_since_last_event", 1),
    ("bought in the last week", "purchase_count_7d", 1),
    ("bought in the last month", "purchase_count_30d", 1),
    ("bought in the last quarter", "purchase_count_90d", 1),
    ("loyal buyers", "lifetime_purchases", 1),
    ("big spenders", "lifetime_spend", 1),
    ("window shoppers", "page_view_count_30d", 1),
    ("newcomers", "tenure_days", -1),
    ("occasional buyers", "purchase_gap_mean_days", 1),
    ("irregular buyers", "purchase_gap_std_days", 1),
)
FAR = 0.5  # z-units
PLAIN = "steady customers"


def fit_segments(scaled: Matrix, n_segments: int, seed: int) -> Segments:
    # A tiny log may have fewer distinct users than segments; K-Means cannot make more clusters than that.
    clusters = max(1, min(n_segments, len(np.unique(scaled, axis=0))))
    model = KMeans(n_clusters=clusters, n_init=10, random_state=seed).fit(scaled)
    centroids = model.cluster_centers_.astype(np.float64)
    return Segments(name_profiles(centroids), centroids)


def name_profiles(centroids: Matrix) -> tuple[str, ...]:
    """A readable, distinct name per centroid (centroids are in z-units of the scaled features).

    Names go to the strongest matches first, one centroid per name: on CDNOW four clusters are far above
    average on lifetime purchases, and the one most extreme on last week's purchases should be called
    that rather than a fourth variant of "loyal buyers".
    """
    matches = sorted(
        (
            (-sign * centroid[spec.FEATURE_INDEX[feature]], c, name)
            for c, centroid in enumerate(centroids)
            for name, feature, sign in PROFILES
            if sign * centroid[spec.FEATURE_INDEX[feature]] > FAR
        ),
        key=lambda match: (match[0], match[1]),
    )
    names: dict[int, str] = {}
    for _, c, name in matches:
        if c not in names and name not in names.values():
            names[c] = name
    for c, centroid in enumerate(centroids):
        if c not in names:
            names[c] = _fallback(centroid, set(names.values()))
    return tuple(names[c] for c in range(len(centroids)))


def _fallback(centroid: npt.NDArray[np.float64], taken: set[str]) -> str:
    if PLAIN not in taken:
        return PLAIN
    top = int(np.argmax(np.abs(centroid)))
    name = f"{'high' if centroid[top] > 0 else 'low'} {spec.FEATURE_NAMES[top]}"
    while name in taken:
        name += "'"
    return name


def profile(segments: Segments, scaled_train: Matrix, y_train: npt.NDArray[np.int64]) -> list[dict[str, Any]]:
    """Each segment's training users, their share and churn rate: a name is only read with its size."""
    which = segments.assign(scaled_train)
    rows = []
    for s, name in enumerate(segments.names):
        inside = which == s
        users = int(inside.sum())
        rows.append(
            {
                "name": name,
                "users": users,
                "share": users / max(len(which), 1),
                "churn_rate": float(y_train[inside].mean()) if users else None,
            }
        )
    return rows
