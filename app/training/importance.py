"""Two rankings of the features: what the MLP relies on, and what each feature tells about the label.

Permutation importance (test split) measures the trained network; mutual information (training rows
only, before any model) measures the data. A feature high on the second and low on the first is signal
the network does not use; the reverse usually means it stands in for correlated features.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import numpy.typing as npt
from sklearn.feature_selection import mutual_info_classif
from sklearn.metrics import roc_auc_score

from app.training.evaluate import Labels, Vector, require_both_outcomes


def permutation_importance(
    predict: Callable[[npt.NDArray[np.float64]], Vector],
    X: npt.NDArray[np.float64],
    y: Labels,
    seed: int,
    repeats: int = 3,
) -> Vector:
    """Mean drop in ROC AUC when one column is shuffled (on the test split)."""
    require_both_outcomes(y, "test")
    rng = np.random.default_rng(seed)
    base = roc_auc_score(y, predict(X))
    drops = np.zeros(X.shape[1])
    for column in range(X.shape[1]):
        shuffled = X.copy()
        for _ in range(repeats):
            shuffled[:, column] = rng.permutation(X[:, column])
            drops[column] += base - roc_auc_score(y, predict(shuffled))
    return drops / repeats


def information_gain(X_train: npt.NDArray[np.float64], y_train: Labels, seed: int) -> Vector:
    """Mutual information (nats) between each raw feature and the churn label, on training rows.

    The k-nearest-neighbour estimator adds a little seeded noise to break ties (counts tie a lot), so
    the seed makes the ranking repeatable.
    """
    require_both_outcomes(y_train, "training")
    gain: Vector = mutual_info_classif(X_train, y_train, random_state=seed).astype(np.float64)
    return gain
