"""The model on its device: forward passes (and input gradients for explanations) on numpy batches."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import torch
from threadpoolctl import threadpool_limits

from app.model.bundle import ModelBundle
from app.model.network import run_plan

Float32Matrix = npt.NDArray[np.float32]


def pick_device(setting: str) -> torch.device:
    if setting == "cuda" or (setting == "auto" and torch.cuda.is_available()):
        return torch.device("cuda")
    return torch.device("cpu")


class InferenceEngine:
    """Runs one batch at a time: the batcher calls it on the event loop's thread, batch after batch (a
    shadow model has an engine of its own)."""

    def __init__(self, bundle: ModelBundle, device: str = "auto") -> None:
        self.device = pick_device(device)
        if self.device.type == "cpu":
            # Batches run one after another; extra intra-op threads would only compete with the event loop.
            torch.set_num_threads(1)
            # The same for numpy's BLAS (segments, scaling): its threads spun on the second core for
            # matrices of a few thousand rows; score-batch used 1.8 cores for 0.8 core's work.
            threadpool_limits(limits=1, user_api="blas")
        self.network = bundle.build_network().to(self.device)
        self._plan = self.network.inference_plan()
        self.version = bundle.version
        self.n_features = bundle.network_config.n_features

    def _to_device(self, rows: Float32Matrix) -> torch.Tensor:
        tensor = torch.from_numpy(rows)
        if self.device.type == "cuda":
            return tensor.pin_memory().to(self.device, non_blocking=True)
        return tensor

    def forward(self, rows: Float32Matrix, explain: bool) -> tuple[Float32Matrix, Float32Matrix | None]:
        """Logits, and d(logit)/d(input) per row when `explain` (rows are independent, so one backward)."""
        x = self._to_device(rows)
        if not explain:
            with torch.inference_mode():
                return run_plan(self._plan, x).cpu().numpy(), None
        x.requires_grad_(True)
        logits = run_plan(self._plan, x)
        (gradient,) = torch.autograd.grad(logits.sum(), x)
        return logits.detach().cpu().numpy(), gradient.cpu().numpy()

    def warm_up(self, max_rows: int) -> None:
        """Touch every code path once before the first request (allocators, kernels, autograd)."""
        for rows in sorted({1, max_rows}):
            for explain in (False, True):
                self.forward(np.zeros((rows, self.n_features), dtype=np.float32), explain)
