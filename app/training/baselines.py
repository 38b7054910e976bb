"""Reference models on the same split as the MLP: what the network has to beat.

Each baseline is a function of the run's inputs returning (validation, test) churn probabilities;
the pipeline runs each on its own, so one that fails on a log is reported and the others still run.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import numpy.typing as npt
import pandas as pd
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.tree import DecisionTreeClassifier

from app.features import spec
from app.model.preprocess import Preprocessor
from app.training.datasets import Labelled, Splits

Vector = npt.NDArray[np.float64]
Matrix = npt.NDArray[np.float64]
Scores = tuple[Vector, Vector]  # (validation probabilities, test probabilities)
# A tree leaf holds at least this share of training rows: a leaf's churn rate is then an average over
# dozens of users (about 40 on the simulator, 85 on CDNOW, per snapshot), which keeps probabilities
# smooth and calibrated rather than the 0s and 1s of small leaves. With several snapshots the same users
# repeat, so a leaf sized in rows (not users) grows with them: it cannot fit one user's few rows.
LEAF_SHARE = 0.005
FOREST_MIN_LEAF = 5
TREE_MIN_LEAF = 50
# Logistic regression's inverse L2 strength is chosen from these on the validation users.
LOGISTIC_C_GRID = (0.01, 0.1, 1.0, 10.0)


@dataclass(frozen=True)
class Inputs:
    events: pd.DataFrame
    splits: Splits
    preprocessor: Preprocessor
    horizon_days: int
    seed: int

    @property
    def raw(self) -> tuple[Matrix, Matrix, Matrix]:
        """Features as computed: trees do not care about scale."""
        return self.splits.train.X, self.splits.validation.X, self.splits.test.X

    @cached_property
    def scaled(self) -> tuple[Matrix, Matrix, Matrix]:
        """Features as the MLP sees them (log1p, standardised): linear models need the scale."""
        train, validation, test = (self.preprocessor.transform(m) for m in self.raw)
        return train, validation, test

    @cached_property
    def logistic_c(self) -> float:
        """Logistic regression's C, chosen once per run on the validation users (choose_logistic_c)."""
        return choose_logistic_c(self)


def settings(data: Inputs, completed: Iterable[str]) -> dict[str, dict[str, float]]:
    """The settings a completed baseline chose on the validation users, for the report beside its scores."""
    return {"logistic_regression": {"C": data.logistic_c}} if "logistic_regression" in completed else {}


Baseline = Callable[[Inputs], Scores]


def _fit(model: object, data: Inputs, X: tuple[Matrix, Matrix, Matrix]) -> Scores:
    model.fit(X[0], data.splits.train.y)  # type: ignore[attr-defined]
    proba = model.predict_proba  # type: ignore[attr-defined]
    return proba(X[1])[:, 1], proba(X[2])[:, 1]


def choose_logistic_c(data: Inputs) -> float:
    """The inverse L2 strength of LOGISTIC_C_GRID whose fit on the training rows ranks the validation
    users best (ROC AUC); ties go to the stronger penalty. Validation holds whole users, so the choice
    never sees a user whose other snapshots were fitted on."""
    train, validation, _ = data.scaled
    y_train, y_val = data.splits.train.y, data.splits.validation.y
    best_c, best_auc = LOGISTIC_C_GRID[0], -1.0
    for c in LOGISTIC_C_GRID:
        model = LogisticRegression(C=c, max_iter=5000).fit(train, y_train)
        auc = float(roc_auc_score(y_val, model.decision_function(validation)))
        if auc > best_auc + 1e-9:
            best_c, best_auc = c, auc
    return best_c


def logistic_regression(data: Inputs) -> Scores:
    return _fit(LogisticRegression(C=data.logistic_c, max_iter=5000), data, data.scaled)


def leaf_size(rows: int, floor: int) -> int:
    return max(floor, round(LEAF_SHARE * rows))


def gradient_boosting(data: Inputs) -> Scores:
    # No built-in early stopping: it would hold out random ROWS, and a user's other snapshots on the
    # training side would make it stop late. 100 rounds, leaves sized like the forest's.
    model = HistGradientBoostingClassifier(
        early_stopping=False,
        min_samples_leaf=leaf_size(len(data.splits.train.y), 20),
        random_state=data.seed,
    )
    return _fit(model, data, data.raw)


def random_forest(data: Inputs) -> Scores:
    leaf = leaf_size(len(data.splits.train.y), FOREST_MIN_LEAF)
    forest = RandomForestClassifier(
        n_estimators=200, min_samples_leaf=leaf, random_state=data.seed, n_jobs=1
    )  # one core, like every other model of the run: training must not crowd a machine that serves
    return _fit(forest, data, data.raw)


def decision_tree_entropy(data: Inputs) -> Scores:
    tree = DecisionTreeClassifier(
        criterion="entropy",
        max_depth=6,
        min_samples_leaf=leaf_size(len(data.splits.train.y), TREE_MIN_LEAF),
        random_state=data.seed,
    )
    return _fit(tree, data, data.raw)


def recency_only(data: Inputs) -> Scores:
    column = spec.FEATURE_INDEX["days_since_last_purchase"]
    tr, va, te = data.scaled
    return _fit(LogisticRegression(), data, (tr[:, [column]], va[:, [column]], te[:, [column]]))


def bg_nbd(data: Inputs) -> Scores:
    """BG/NBD (lifetimes, daily purchase periods) fitted on training users' purchases only.

    Ranks users by expected purchases in the horizon; Platt-calibrated on validation into a churn
    probability. Its maximum-likelihood fit does not converge on some logs (for one, when no training
    user has bought on more than two days), which the report then lists.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # lifetimes imports pkg_resources, which warns on import
            from lifetimes import BetaGeoFitter
    except ImportError as error:
        raise ModuleNotFoundError(
            "the optional lifetimes package is not installed: pip install 'churn-service[eval]'"
        ) from error
    events, splits = data.events, data.splits
    train = _rfm(events, splits.train)
    model = BetaGeoFitter(penalizer_coef=0.001)
    model.fit(train["frequency"], train["recency"], train["T"])

    def expected(part: Labelled) -> Vector:
        rfm = _rfm(events, part)
        value = model.conditional_expected_number_of_purchases_up_to_time(
            data.horizon_days, rfm["frequency"], rfm["recency"], rfm["T"]
        )
        return np.asarray(value, dtype=np.float64)

    val_score, test_score = -np.log1p(expected(splits.validation)), -np.log1p(expected(splits.test))
    platt = LogisticRegression().fit(val_score.reshape(-1, 1), splits.validation.y)
    return platt.predict_proba(val_score.reshape(-1, 1))[:, 1], platt.predict_proba(
        test_score.reshape(-1, 1)
    )[:, 1]


STANDARD: dict[str, Baseline] = {
    "logistic_regression": logistic_regression,
    "gradient_boosting": gradient_boosting,
    "random_forest": random_forest,
    "decision_tree_entropy": decision_tree_entropy,
    "recency_only": recency_only,
    "bg_nbd": bg_nbd,
}


def _rfm(events: pd.DataFrame, part: Labelled) -> pd.DataFrame:
    """frequency (repeat purchase days), recency and T in days, per row as of the row's snapshot."""
    out = pd.DataFrame(
        {"frequency": np.zeros(len(part.y)), "recency": np.zeros(len(part.y)), "T": np.ones(len(part.y))}
    )
    for at in part.snapshots:
        rows = np.flatnonzero(part.as_of == at)
        out.iloc[rows] = _rfm_at(events, part.user_ids[rows], at).to_numpy()
    return out


def _rfm_at(events: pd.DataFrame, users: pd.Index, as_of: int) -> pd.DataFrame:
    mine = events[events["user_id"].isin(users) & (events["ts_s"] <= as_of)]
    day = mine["ts_s"] // spec.DAY_SECONDS
    cutoff_day = as_of // spec.DAY_SECONDS
    first_seen = day.groupby(mine["user_id"]).min()
    bought = mine["kind"] == spec.PURCHASE
    days = day[bought].groupby(mine.loc[bought, "user_id"])
    summary = pd.DataFrame({"first": days.min(), "last": days.max(), "n": days.nunique()})
    summary = summary.reindex(users)
    first = summary["first"].fillna(first_seen.reindex(users))
    return pd.DataFrame(
        {
            "frequency": (summary["n"].fillna(1) - 1).to_numpy(),
            "recency": (summary["last"] - summary["first"]).fillna(0).to_numpy(),
            "T": np.maximum(cutoff_day - first.to_numpy(), 1),
        }
    )
