"""How far the CDNOW signal goes: other network shapes, and extra purchase features for a linear model.

Configurations are compared on validation (the choice) and reported on test (the figure). The extra
features (CDs bought, distinct purchase days, the last quarter's purchases, the first order, the span
of purchases) are not in the feature specification; they only test whether more RFM detail would help.
Run: python -m bench.cdnow_ceiling
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from app.model.preprocess import Preprocessor
from app.training import cdnow, presets
from app.training.train import TrainConfig, fit_network, logits

NETWORKS = (
    TrainConfig(
        hidden=(64, 32), learning_rate=1e-3, weight_decay=1e-4, batch_size=256, dropout=0.1, patience=30
    ),
    TrainConfig(
        hidden=(64, 32), learning_rate=3e-4, weight_decay=1e-4, batch_size=512, dropout=0.1, patience=30
    ),
    TrainConfig(
        hidden=(32,), learning_rate=3e-4, weight_decay=1e-3, batch_size=512, dropout=0.0, patience=30
    ),
    TrainConfig(
        hidden=(128, 64), learning_rate=1e-4, weight_decay=1e-4, batch_size=256, dropout=0.2, patience=30
    ),
    TrainConfig(
        hidden=(16,), learning_rate=1e-3, weight_decay=1e-3, batch_size=1024, dropout=0.0, patience=30
    ),
)


def extra_features() -> pd.DataFrame:
    raw = pd.read_csv(cdnow.MASTER, sep=r"\s+", dtype={"date": str})
    raw["user_id"] = raw["customer_id"].map(cdnow.user_id)
    raw["day"] = pd.to_datetime(raw["date"], format="%Y%m%d")
    calibration = raw[raw["day"] <= "1997-09-30"].sort_values(["user_id", "day"])
    by_user = calibration.groupby("user_id")
    return pd.DataFrame(
        {
            "cds": by_user["number_of_cds"].sum(),
            "purchase_days": by_user["day"].nunique(),
            "last_quarter": by_user["day"].apply(lambda d: (d >= "1997-07-01").sum()),
            "first_dollars": by_user["dollar_value"].first(),
            "first_cds": by_user["number_of_cds"].first(),
            "span_days": by_user["day"].apply(lambda d: (d.max() - d.min()).days),
        }
    )


def main() -> None:
    # One snapshot: the extra features below are as of the cutoff, and rows of earlier snapshots would
    # get figures from inside their own label windows.
    splits = presets.cdnow_standard(seed=7, snapshots=presets.Snapshots(1)).splits
    tr, va, te = splits.train, splits.validation, splits.test
    prep = Preprocessor.fit(tr.X)
    x_tr, x_va, x_te = prep.transform(tr.X), prep.transform(va.X), prep.transform(te.X)
    print("MLP configurations (validation AUC chooses; test AUC reported):")
    for config in NETWORKS:
        network, _, _ = fit_network(x_tr, tr.y, x_va, va.y, config)
        val = roc_auc_score(va.y, logits(network, x_va))
        test = roc_auc_score(te.y, logits(network, x_te))
        setting = f"hidden {config.hidden!s:10} lr {config.learning_rate:g}"
        print(f"  {setting}: validation {val:.4f}, test {test:.4f}")

    extra = extra_features()
    print("Logistic regression, test AUC:")
    for label, add in (("specification features", False), ("+ extra purchase features", True)):

        def design(x: np.ndarray, users: pd.Index, add: bool = add) -> np.ndarray:  # type: ignore[type-arg]
            return np.hstack([x, np.log1p(extra.reindex(users).to_numpy())]) if add else x

        model = LogisticRegression(max_iter=3000).fit(design(x_tr, tr.user_ids), tr.y)
        test = roc_auc_score(te.y, model.predict_proba(design(x_te, te.user_ids))[:, 1])
        print(f"  {label:26s} {test:.4f}")


if __name__ == "__main__":
    main()
