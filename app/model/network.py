"""The churn network: a small MLP from scaled features to one logit."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn


@dataclass(frozen=True)
class NetworkConfig:
    n_features: int
    hidden: tuple[int, ...] = (64, 32)
    dropout: float = 0.1

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> NetworkConfig:
        return cls(int(data["n_features"]), tuple(int(h) for h in data["hidden"]), float(data["dropout"]))


class ChurnNet(nn.Module):
    def __init__(self, config: NetworkConfig) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = config.n_features
        for hidden in config.hidden:
            layers += [nn.Linear(width, hidden), nn.ReLU(), nn.Dropout(config.dropout)]
            width = hidden
        layers.append(nn.Linear(width, 1))
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits, shape (rows,)."""
        return self.layers(x).squeeze(-1)  # type: ignore[no-any-return]

    def inference_plan(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """(weight transposed, bias) of each Linear layer: with ReLU between them, this is `forward` in
        eval mode (dropout is then the identity) without the per-module call overhead."""
        return [
            (layer.weight.detach().t(), layer.bias.detach())
            for layer in self.layers
            if isinstance(layer, nn.Linear)
        ]


def run_plan(plan: list[tuple[torch.Tensor, torch.Tensor]], x: torch.Tensor) -> torch.Tensor:
    """Logits of an inference plan: addmm per layer, ReLU between layers (equal to eval-mode forward)."""
    for index, (weight_t, bias) in enumerate(plan):
        x = torch.addmm(bias, x, weight_t)
        if index < len(plan) - 1:
            x = torch.relu(x)
    return x.squeeze(-1)
