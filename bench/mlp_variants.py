"""How far the network's own settings move it against gradient boosting, on the default bundle's data.

    python -m bench.mlp_variants [--seed 7] [--users 10000]

The simulated preset's splits (as `make train` builds them: 4 snapshots, validation by user), then the
MLP trained as the pipeline trains it (app/training/models.py) under other shapes, regularisation,
learning rates and batch sizes, and an average of five seeds' logits; each against the pipeline's
gradient boosting on the same test users, with the paired bootstrap interval of the difference in ROC
AUC (as the model card's comparison). Prints one line per variant; about three minutes here.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace

import numpy as np
from sklearn.metrics import roc_auc_score

from app.training import baselines, presets
from app.training.evaluate import paired_difference
from app.training.models import fit_mlp
from app.training.train import TrainConfig, logits

VARIANTS: tuple[tuple[str, dict[str, object]], ...] = (
    ("as served: 64-32, dropout 0.1", {}),
    ("wider: 128-64, dropout 0.2", {"hidden": (128, 64), "dropout": 0.2}),
    (
        "widest: 256-128, dropout 0.3, weight decay 1e-3",
        {"hidden": (256, 128), "dropout": 0.3, "weight_decay": 1e-3},
    ),
    ("slower: learning rate 3e-4, patience 30", {"learning_rate": 3e-4, "patience": 30}),
    ("larger batches: 1,024, learning rate 3e-3", {"batch_size": 1024, "learning_rate": 3e-3}),
)  # fmt: skip
ENSEMBLE_SEEDS = 5


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--users", type=int, default=presets.SIM_USERS)
    args = parser.parse_args()
    job = presets.simulated(args.seed, args.users)
    splits = job.splits
    y_test = splits.test.y
    base = TrainConfig(seed=args.seed)

    started = time.perf_counter()
    first = fit_mlp(splits, base)
    inputs = baselines.Inputs(job.events, splits, first.preprocessor, job.horizon_days, args.seed)
    _, boosting = baselines.gradient_boosting(inputs)
    print(f"{job.dataset}; test users {len(y_test):,}, churn rate {y_test.mean():.3f}")
    print(f"gradient boosting (the pipeline's): test ROC AUC {roc_auc_score(y_test, boosting):.4f}")
    print("MLP variant: test ROC AUC, minus gradient boosting (paired 95% interval), epoch kept")

    def report(name: str, scores: np.ndarray, kept: str) -> None:
        gap = paired_difference(y_test, scores, boosting, args.seed)
        low, high = gap["roc_auc_ci95_low"], gap["roc_auc_ci95_high"]
        auc = roc_auc_score(y_test, scores)
        print(f"  {name:50s} {auc:.4f}  {gap['roc_auc_difference']:+.4f} ({low:+.4f} to {high:+.4f})  {kept}")

    test_scaled = first.preprocessor.transform(splits.test.X)
    for name, change in VARIANTS:
        fitted = first if not change else fit_mlp(splits, replace(base, **change))  # type: ignore[arg-type]
        report(name, logits(fitted.network, test_scaled), f"epoch {fitted.stopping.kept_epoch}")
    seeds = [args.seed + k for k in range(ENSEMBLE_SEEDS)]
    members = [first] + [fit_mlp(splits, replace(base, seed=s)) for s in seeds[1:]]
    mean_logit = np.mean([logits(m.network, test_scaled) for m in members], axis=0)
    report(f"mean logit of {ENSEMBLE_SEEDS} seeds ({seeds[0]}-{seeds[-1]}), as served", mean_logit, "-")
    print(f"({time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
