"""Fit the churn MLP (class-weighted BCE, Adam, early stopping) and its Platt calibration."""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from app.model.network import ChurnNet, NetworkConfig
from app.model.postprocess import PlattCalibration
from app.training.progress import progress

Matrix = npt.NDArray[np.float64]


@dataclass(frozen=True)
class TrainConfig:
    hidden: tuple[int, ...] = (64, 32)
    dropout: float = 0.1
    learning_rate: float = 1e-3
    weight_decay: float = 1e-4
    batch_size: int = 256
    max_epochs: int = 200
    patience: int = 20
    seed: int = 7


@dataclass(frozen=True)
class Stopping:
    """How training ended; epochs count from 1, as a reader counts them."""

    kept_epoch: int  # the epoch whose weights the bundle holds (best validation ROC AUC)
    epochs_run: int
    stopped_early: bool  # validation ROC AUC stalled for `patience` epochs before the limit
    max_epochs: int
    patience: int
    best_val_auc: float

    def to_json(self) -> dict[str, float | int | bool]:
        return {
            "kept_epoch": self.kept_epoch,
            "epochs_run": self.epochs_run,
            "stopped_early": self.stopped_early,
            "max_epochs": self.max_epochs,
            "patience": self.patience,
            "best_validation_roc_auc": self.best_val_auc,
        }

    def describe(self) -> str:
        kept = f"kept epoch {self.kept_epoch} (validation ROC AUC {self.best_val_auc:.4f})"
        if self.stopped_early:
            return (
                f"early stopping: ran {self.epochs_run} epochs, the last {self.patience} without a better "
                f"validation ROC AUC; {kept}"
            )
        return f"ran all {self.max_epochs} epochs allowed, no early stop; {kept}"


def seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed)
    torch.use_deterministic_algorithms(True)


def fit_network(
    X_train: Matrix,
    y_train: npt.NDArray[np.int64],
    X_val: Matrix,
    y_val: npt.NDArray[np.int64],
    config: TrainConfig,
) -> tuple[ChurnNet, NetworkConfig, Stopping]:
    """Train until validation ROC AUC stops improving; return the best network and how training ended."""
    seed_everything(config.seed)
    network_config = NetworkConfig(X_train.shape[1], config.hidden, config.dropout)
    network = ChurnNet(network_config)
    positives = max(int(y_train.sum()), 1)
    # Class weighting: the rarer class counts as much as the common one in the loss.
    pos_weight = torch.tensor((len(y_train) - positives) / positives, dtype=torch.float32)
    loss_fn = torch.nn.BCEWithLogitsLoss(pos_weight=pos_weight)
    optimiser = torch.optim.Adam(
        network.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay
    )
    x, y = torch.as_tensor(X_train, dtype=torch.float32), torch.as_tensor(y_train, dtype=torch.float32)
    generator = torch.Generator().manual_seed(config.seed)

    best_auc, best_state, best_epoch, stale = -1.0, copy.deepcopy(network.state_dict()), 0, 0
    bar = progress(range(1, config.max_epochs + 1), desc="train MLP", unit="epoch", leave=False)
    epoch, stopped_early = 0, False
    for epoch in bar:
        network.train()
        for batch in torch.randperm(len(x), generator=generator).split(config.batch_size):
            optimiser.zero_grad()
            loss_fn(network(x[batch]), y[batch]).backward()
            optimiser.step()
        auc = float(roc_auc_score(y_val, logits(network, X_val)))
        bar.set_postfix(val_auc=f"{auc:.4f}")
        if auc > best_auc + 1e-5:
            best_auc, best_state, best_epoch, stale = auc, copy.deepcopy(network.state_dict()), epoch, 0
        else:
            stale += 1
            if stale >= config.patience:
                stopped_early = True
                break
    network.load_state_dict(best_state)
    stopping = Stopping(best_epoch, epoch, stopped_early, config.max_epochs, config.patience, best_auc)
    return network.eval(), network_config, stopping


def logits(network: ChurnNet, X: Matrix) -> Matrix:
    network.eval()
    with torch.inference_mode():
        out: Matrix = network(torch.as_tensor(X, dtype=torch.float32)).double().numpy()
        return out


def fit_platt(val_logits: Matrix, y_val: npt.NDArray[np.int64]) -> PlattCalibration:
    model = LogisticRegression(C=1e6, max_iter=1000).fit(val_logits.reshape(-1, 1), y_val)
    return PlattCalibration(float(model.coef_[0, 0]), float(model.intercept_[0]))
