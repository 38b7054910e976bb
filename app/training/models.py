"""Fit the MLP and the reference models on one set of splits: the run's own, or a variant of it (the
latest snapshot alone, a feature group left out) that the report and the ablation compare against."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import partial

import numpy as np
import pandas as pd

from app.features import spec
from app.model.network import ChurnNet, NetworkConfig
from app.model.postprocess import PlattCalibration
from app.model.preprocess import Preprocessor
from app.training import baselines
from app.training.datasets import Splits
from app.training.evaluate import Vector
from app.training.fail_soft import PartLog
from app.training.plots import label
from app.training.train import Stopping, TrainConfig, fit_network, fit_platt, logits


@dataclass(frozen=True)
class FittedMLP:
    preprocessor: Preprocessor
    network: ChurnNet
    network_config: NetworkConfig
    stopping: Stopping
    calibration: PlattCalibration  # fitted on the validation users' rows, every snapshot of theirs

    def probability_scaled(self, scaled: Vector) -> Vector:
        return self.calibration.probability(logits(self.network, scaled))

    def probability(self, raw: Vector) -> Vector:
        return self.probability_scaled(self.preprocessor.transform(raw))


@dataclass(frozen=True)
class Fitted:
    mlp: FittedMLP
    scores: dict[str, baselines.Scores]  # model -> (validation, test) probabilities; MLP first
    settings: dict[str, dict[str, float]]  # model -> what it chose on validation (logistic regression's C)


def fit_mlp(
    splits: Splits, config: TrainConfig, features: Sequence[spec.Feature] = spec.FEATURES
) -> FittedMLP:
    preprocessor = Preprocessor.fit(splits.train.X, features)
    train_scaled, val_scaled = (preprocessor.transform(p.X) for p in (splits.train, splits.validation))
    network, network_config, stopping = fit_network(
        train_scaled, splits.train.y, val_scaled, splits.validation.y, config
    )
    calibration = fit_platt(logits(network, val_scaled), splits.validation.y)
    return FittedMLP(preprocessor, network, network_config, stopping, calibration)


def fit_all(
    events: pd.DataFrame,
    splits: Splits,
    horizon_days: int,
    config: TrainConfig,
    reference_models: Mapping[str, baselines.Baseline],
    parts: PartLog,
    prefix: str = "",
    features: Sequence[spec.Feature] = spec.FEATURES,
) -> Fitted:
    """The MLP (it must fit) and each reference model (each may fail, recorded in `parts`); `features`
    names the columns of the splits (the specification's, or a candidate's more)."""
    mlp = fit_mlp(splits, config, features)
    scores = {"mlp": (mlp.probability(splits.validation.X), mlp.probability(splits.test.X))}
    inputs = baselines.Inputs(events, splits, mlp.preprocessor, horizon_days, config.seed)
    for name, baseline in reference_models.items():
        fitted = parts.attempt(f"{prefix}baseline {label(name)}", partial(checked, baseline, inputs))
        if fitted is not None:
            scores[name] = fitted
    return Fitted(mlp, scores, baselines.settings(inputs, scores))


def checked(baseline: baselines.Baseline, inputs: baselines.Inputs) -> baselines.Scores:
    """A baseline's probabilities, refused unless they are one finite probability per user."""
    val_p, test_p = baseline(inputs)
    splits = inputs.splits
    for name, p, part in (("validation", val_p, splits.validation), ("test", test_p, splits.test)):
        if p.shape != part.y.shape or not np.isfinite(p).all():
            raise ValueError(f"{name} probabilities are not one finite number per {name} user")
    return val_p, test_p
