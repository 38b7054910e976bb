"""The served model: a verified bundle on its device, and the maths from raw features to answers."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from app import metrics
from app.features import spec
from app.model.bundle import ModelBundle
from app.model.engine import InferenceEngine
from app.model.postprocess import TIERS

Matrix = npt.NDArray[np.float64]


class ChurnModel:
    """Everything that depends on one model version, kept together so it can be swapped as one."""

    def __init__(self, bundle: ModelBundle, device: str = "auto") -> None:
        self.bundle = bundle
        self.version = bundle.version
        self.engine = InferenceEngine(bundle, device)

    def scale(self, raw: Matrix) -> npt.NDArray[np.float32]:
        return self.bundle.preprocessor.transform(raw).astype(np.float32)

    def results(
        self,
        user_ids: Sequence[str],
        raw: Matrix,
        scaled: npt.NDArray[np.float32],
        known: npt.NDArray[np.bool_],
        logits: npt.NDArray[np.float32],
        gradients: npt.NDArray[np.float32] | None,
        top_k: int,
    ) -> list[dict[str, Any]]:
        calibration = self.bundle.calibration
        probability = calibration.probability(logits.astype(np.float64))
        tiers = self.bundle.tiers.tier_index(probability)
        segments = self.bundle.segments.assign(scaled.astype(np.float64))
        reasons = None if gradients is None else self._reasons(raw, scaled, probability, gradients, top_k)
        for tier, count in zip(*np.unique(tiers, return_counts=True), strict=True):
            metrics.SCORES.labels(TIERS[tier]).inc(int(count))
        histogram = metrics.SCORE_PROBABILITY.labels(self.version)
        for p in probability:
            histogram.observe(float(p))
        names = self.bundle.segments.names
        return [
            {
                "user_id": user_id,
                "churn_probability": float(probability[i]),
                "risk_tier": TIERS[tiers[i]],
                "segment": names[segments[i]],
                "known_user": bool(known[i]),
                "reasons": None if reasons is None else reasons[i],
            }
            for i, user_id in enumerate(user_ids)
        ]

    def _reasons(
        self,
        raw: Matrix,
        scaled: npt.NDArray[np.float32],
        probability: Matrix,
        gradients: npt.NDArray[np.float32],
        top_k: int,
    ) -> list[list[dict[str, Any]]]:
        """Gradient x (input - baseline) on the probability scale; the baseline is the training mean (0
        after scaling). Only features that push the risk up are reasons."""
        slope = self.bundle.calibration.slope
        dp_dlogit = slope * probability * (1 - probability)
        contribution = gradients.astype(np.float64) * scaled * dp_dlogit[:, None]
        top = np.argsort(-contribution, axis=1)[:, :top_k]
        return [
            [
                {
                    "feature": spec.FEATURE_NAMES[j],
                    "value": float(raw[i, j]),
                    "contribution": float(contribution[i, j]),
                }
                for j in top[i]
                if contribution[i, j] > 0
            ]
            for i in range(len(raw))
        ]
