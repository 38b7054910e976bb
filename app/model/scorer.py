"""The served model: a verified bundle on its device, and the maths from raw features to answers."""

from __future__ import annotations

import dataclasses

import numpy as np
import numpy.typing as npt

from app import metrics
from app.features import spec
from app.model.bundle import ModelBundle
from app.model.engine import InferenceEngine
from app.model.postprocess import TIERS
from app.model.reason_text import ReasonTexts
from app.model.results import ScoredRows, TopReasons

Matrix = npt.NDArray[np.float64]


class ChurnModel:
    """Everything that depends on one model version, kept together so it can be swapped as one."""

    def __init__(self, bundle: ModelBundle, device: str = "auto") -> None:
        self.bundle = bundle
        self.version = bundle.version
        self.engine = InferenceEngine(bundle, device)
        typical = None if bundle.typical is None else bundle.typical.values
        self.reason_texts = ReasonTexts(spec.FEATURE_NAMES, typical)
        self._probability_histogram = metrics.SCORE_PROBABILITY.labels(self.version)
        self._tier_counters = [metrics.SCORES.labels(tier, self.version) for tier in TIERS]

    def score(
        self,
        raw: Matrix,
        known: npt.NDArray[np.bool_],
        explain: bool,
        top_k: int,
        *,
        reason_dicts: bool = True,
    ) -> ScoredRows:
        """Scale, forward (and backward when explaining), calibrate, tier and segment a whole batch.

        With `reason_dicts` false the reasons stay arrays (ScoredRows.top): building a dict per reason
        costs more than the rest of scoring together, and a caller that writes columns needs none."""
        scaled_exact = self.bundle.preprocessor.transform(raw)
        scaled = scaled_exact.astype(np.float32)
        logits, gradients = self.engine.forward(scaled, explain)
        probability = self.bundle.calibration.probability(logits.astype(np.float64))
        cold = self.bundle.cold_start
        if cold is not None:
            probability = np.where(known, probability, cold.probability)
        tiers = self.bundle.tiers.tier_index(probability)
        segments = self.bundle.segments.assign(scaled_exact)
        top = None if gradients is None else self._top_reasons(raw, scaled, gradients, top_k)
        if top is not None and cold is not None:  # the prior, not the network, scored users with no history
            top = dataclasses.replace(top, no_history=~known)
        reasons = top.as_lists(self.reason_texts) if top is not None and reason_dicts else None
        for tier, count in enumerate(np.bincount(tiers, minlength=len(TIERS))):
            if count:
                self._tier_counters[tier].inc(int(count))
        metrics.observe_many(self._probability_histogram, probability)
        return ScoredRows(probability, tiers, segments, known, self.bundle.segments.names, reasons, top)

    def _top_reasons(
        self,
        raw: Matrix,
        scaled: npt.NDArray[np.float32],
        gradients: npt.NDArray[np.float32],
        top_k: int,
    ) -> TopReasons:
        """Gradient x (input - baseline) on the calibrated logit scale, in log-odds of churn; the baseline
        is the training mean (0 after scaling). Only features that push the risk up are reasons.

        Not on the probability scale: dp/dlogit = p(1-p) goes to 0 as p nears 1, which would give the
        riskiest users contributions of ~1e-8, the emptiest explanations where they matter most."""
        slope = self.bundle.calibration.slope
        contribution = slope * gradients.astype(np.float64) * scaled
        rows = np.arange(len(raw))
        # The k largest per row in descending order, by k rounds of argmax (the first of equals wins),
        # each taking its winner out: for the few reasons asked, cheaper than a partition and a sort.
        remaining = contribution.copy()
        top = np.empty((len(raw), top_k), dtype=np.intp)
        for place in range(top_k):
            top[:, place] = remaining.argmax(axis=1)
            remaining[rows, top[:, place]] = -np.inf
        return TopReasons(top, raw[rows[:, None], top], contribution[rows[:, None], top])
