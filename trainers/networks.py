"""The networks, each built from its frozen config (:mod:`trainers.models`). No I/O, nothing at
import time."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .errors import ConfigError
from .models import CNNModel, LinearModel, MLPModel, ModelConfig


class ConvNet1d(nn.Module):
    def __init__(self, length: int, channels: int, n_out: int) -> None:
        super().__init__()
        self.convs = nn.ModuleList(
            [
                nn.Conv1d(1, channels, 5, stride=2, padding=1),
                nn.Conv1d(channels, channels, 3, stride=2, padding=1),
                nn.Conv1d(channels, channels, 3, stride=2, padding=1),
            ]
        )
        for k in (5, 3, 3):
            length = (length + 2 - k) // 2 + 1
        self.head = nn.Linear(channels * length, n_out)

    def forward(self, x: Tensor) -> Tensor:
        h = x.unsqueeze(1)
        for conv in self.convs:
            h = torch.relu(conv(h))
        return self.head(h.flatten(1))  # type: ignore[no-any-return]


def build_model(
    config: ModelConfig, n_features: int, n_out: int, sequence: bool, seed: int
) -> nn.Module:
    """A freshly initialized model on the CPU, identical for the same ``seed`` on any machine."""
    if isinstance(config, CNNModel):
        if not sequence:
            raise ConfigError("model.kind", "cnn needs sequence data (dataset mnist1d)")
        if n_features < 8:
            raise ConfigError("model.kind", f"cnn needs sequences of >= 8 steps, got {n_features}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if isinstance(config, LinearModel):
            return nn.Linear(n_features, n_out)
        if isinstance(config, MLPModel):
            layers: list[nn.Module] = []
            width = n_features
            for hidden in config.hidden:
                layers += [nn.Linear(width, hidden), nn.ReLU()]
                width = hidden
            layers.append(nn.Linear(width, n_out))
            return nn.Sequential(*layers)
        return ConvNet1d(n_features, config.channels, n_out)
