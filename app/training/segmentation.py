"""K-Means behavioural segments on scaled features, each named after its profile."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from sklearn.cluster import KMeans

from app.features import spec
from app.model.postprocess import Segments

# (name, feature, sign): a segment takes the first name whose feature its centroid is far above (+1)
# or below (-1) the average on; these are the profiles a CRM team recognises.
PROFILE_RULES = (
    ("unhappy customers", "support_contact_count_90d", 1),
    ("unhappy customers", "refund_count_90d", 1),
    ("lapsed", "days_since_last_event", 1),
    ("loyal buyers", "lifetime_purchases", 1),
    ("window shoppers", "page_view_count_30d", 1),
    ("newcomers", "tenure_days", -1),
    ("occasional buyers", "purchase_gap_mean_days", 1),
)
FAR = 0.5


def fit_segments(scaled: npt.NDArray[np.float64], n_segments: int, seed: int) -> Segments:
    model = KMeans(n_clusters=n_segments, n_init=10, random_state=seed).fit(scaled)
    centroids = model.cluster_centers_.astype(np.float64)
    return Segments(name_profiles(centroids), centroids)


def name_profiles(centroids: npt.NDArray[np.float64]) -> tuple[str, ...]:
    """A readable, unique name per centroid (centroids are in z-units of the scaled features)."""
    names: list[str] = []
    for centroid in centroids:
        name = next(
            (
                label
                for label, feature, sign in PROFILE_RULES
                if sign * centroid[spec.FEATURE_INDEX[feature]] > FAR
            ),
            "steady customers",
        )
        if name in names:
            top = int(np.argmax(np.abs(centroid)))
            name = f"{name} ({'high' if centroid[top] > 0 else 'low'} {spec.FEATURE_NAMES[top]})"
        while name in names:
            name += "'"
        names.append(name)
    return tuple(names)
