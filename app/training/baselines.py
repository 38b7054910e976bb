"""Reference models on the same split as the MLP: what the network has to beat."""

from __future__ import annotations

import warnings
from collections.abc import Callable

import numpy as np
import numpy.typing as npt
import pandas as pd
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.tree import DecisionTreeClassifier

from app.features import spec
from app.model.preprocess import Preprocessor
from app.training.datasets import Labelled, Splits

Vector = npt.NDArray[np.float64]
Scores = tuple[Vector, Vector]  # (validation probabilities, test probabilities)


def sklearn_baselines(splits: Splits, preprocessor: Preprocessor, seed: int) -> dict[str, Scores]:
    tr, va, te = splits.train, splits.validation, splits.test
    scaled = {name: preprocessor.transform(part.X) for name, part in (("tr", tr), ("va", va), ("te", te))}
    recency = spec.FEATURE_INDEX["days_since_last_purchase"]
    out: dict[str, Scores] = {}

    def fit(name: str, model: object, key: Callable[[str], npt.NDArray[np.float64]]) -> None:
        model.fit(key("tr"), tr.y)  # type: ignore[attr-defined]
        proba = model.predict_proba  # type: ignore[attr-defined]
        out[name] = (proba(key("va"))[:, 1], proba(key("te"))[:, 1])

    raw = {"tr": tr.X, "va": va.X, "te": te.X}
    fit("logistic_regression", LogisticRegression(max_iter=5000), scaled.__getitem__)
    fit("gradient_boosting", HistGradientBoostingClassifier(random_state=seed), raw.__getitem__)
    fit(
        "decision_tree_entropy",
        DecisionTreeClassifier(criterion="entropy", max_depth=6, min_samples_leaf=50, random_state=seed),
        raw.__getitem__,
    )
    fit("recency_only", LogisticRegression(), lambda k: scaled[k][:, [recency]])
    return out


def bg_nbd(events: pd.DataFrame, splits: Splits, horizon_days: int) -> Scores | None:
    """BG/NBD (lifetimes, daily purchase periods) fitted on training users' purchases only.

    Ranks users by expected purchases in the horizon; Platt-calibrated on validation into a churn
    probability. None when the optional `lifetimes` package is not installed.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from lifetimes import BetaGeoFitter
    except ImportError:
        return None
    train = _rfm(events, splits.train)
    model = BetaGeoFitter(penalizer_coef=0.001)
    model.fit(train["frequency"], train["recency"], train["T"])

    def expected(part: Labelled) -> Vector:
        rfm = _rfm(events, part)
        value = model.conditional_expected_number_of_purchases_up_to_time(
            horizon_days, rfm["frequency"], rfm["recency"], rfm["T"]
        )
        return np.asarray(value, dtype=np.float64)

    val_score, test_score = -np.log1p(expected(splits.validation)), -np.log1p(expected(splits.test))
    platt = LogisticRegression().fit(val_score.reshape(-1, 1), splits.validation.y)
    return platt.predict_proba(val_score.reshape(-1, 1))[:, 1], platt.predict_proba(
        test_score.reshape(-1, 1)
    )[:, 1]


def _rfm(events: pd.DataFrame, part: Labelled) -> pd.DataFrame:
    """frequency (repeat purchase days), recency and T in days, as of the part's cutoff."""
    mine = events[events["user_id"].isin(part.user_ids) & (events["ts_s"] <= part.as_of)]
    day = mine["ts_s"] // spec.DAY_SECONDS
    cutoff_day = part.as_of // spec.DAY_SECONDS
    first_seen = day.groupby(mine["user_id"]).min()
    bought = mine["kind"] == spec.PURCHASE
    days = day[bought].groupby(mine.loc[bought, "user_id"])
    summary = pd.DataFrame({"first": days.min(), "last": days.max(), "n": days.nunique()})
    summary = summary.reindex(part.user_ids)
    first = summary["first"].fillna(first_seen.reindex(part.user_ids))
    return pd.DataFrame(
        {
            "frequency": (summary["n"].fillna(1) - 1).to_numpy(),
            "recency": (summary["last"] - summary["first"]).fillna(0).to_numpy(),
            "T": np.maximum(cutoff_day - first.to_numpy(), 1),
        }
    )
