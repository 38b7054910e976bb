"""The inference plan computes exactly what the trained module computes in eval mode."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from app.model.bundle import load_bundle
from app.model.engine import InferenceEngine

STORE = Path(__file__).resolve().parents[1] / "model_store"


def test_plan_logits_and_gradients_equal_the_module() -> None:
    bundle = load_bundle(STORE)
    engine = InferenceEngine(bundle, "cpu")
    network = bundle.build_network()
    rows = np.random.default_rng(3).normal(size=(257, bundle.network_config.n_features)).astype(np.float32)
    x = torch.from_numpy(rows.copy()).requires_grad_(True)
    expected = network(x)
    (expected_gradient,) = torch.autograd.grad(expected.sum(), x)
    logits, _ = engine.forward(rows, explain=False)
    explained, gradient = engine.forward(rows, explain=True)
    np.testing.assert_allclose(logits, expected.detach().numpy(), rtol=0, atol=1e-6)
    np.testing.assert_array_equal(explained, logits)
    assert gradient is not None
    np.testing.assert_allclose(gradient, expected_gradient.numpy(), rtol=0, atol=1e-6)
