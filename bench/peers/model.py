"""The trained bundle as the peers serve it: scale, forward, Platt calibration, tier and segment.

The same bundle and the same fitted preprocessing as our service, so every system computes the same
probability from the same raw feature values.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from app.features import spec
from app.model.bundle import load_bundle
from app.model.postprocess import TIERS

FEATURE_NAMES = spec.FEATURE_NAMES


class PeerModel:
    def __init__(self, store: Path = Path("model_store")) -> None:
        torch.set_num_threads(1)  # one intra-op thread, as our service runs on the CPU
        self.bundle = load_bundle(store, None)
        self.network = self.bundle.build_network()
        self.version = self.bundle.version

    def score(self, raw: np.ndarray) -> list[dict[str, Any]]:
        """Rows of 46 raw feature values -> probability, tier and segment per row."""
        scaled = self.bundle.preprocessor.transform(raw)
        with torch.inference_mode():
            logits = self.network(torch.from_numpy(scaled.astype(np.float32))).numpy()
        probability = self.bundle.calibration.probability(logits.astype(np.float64))
        tiers = self.bundle.tiers.tier_index(probability)
        segments = self.bundle.segments.assign(scaled)
        names = self.bundle.segments.names
        return [
            {"churn_probability": float(p), "risk_tier": TIERS[t], "segment": names[s]}
            for p, t, s in zip(probability, tiers, segments, strict=True)
        ]
