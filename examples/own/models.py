"""Small models for your own data, each built as ``f(in_shape, n_outputs, **args)``.

Name one in an experiment file's ``[model]`` table (this file's folder is where the module is
imported from when the experiment file sits beside it, as ``examples/own/cnn.toml`` does)::

    [model]
    factory = "models:bn_cnn"
    [model.args]
    channels = 8
    dropout = 0.1

``in_shape`` is one example's input shape: ``(1, 8, 8)`` for 8x8 grey images, ``(40,)`` for a
signal of 40 steps.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn


def bn_cnn(
    in_shape: Sequence[int], n_outputs: int, channels: int = 8, dropout: float = 0.1
) -> nn.Module:
    """A 3x3 convolution, batch norm, ReLU and dropout, then a linear head: for small images
    ``(C, H, W)`` (``(H, W)`` is read as one channel)."""
    shape = tuple(in_shape)
    c, h, w = shape if len(shape) == 3 else (1, *shape)
    layers: list[nn.Module] = [] if len(shape) == 3 else [nn.Unflatten(1, (1, h, w))]
    return nn.Sequential(
        *layers,
        nn.Conv2d(c, channels, 3, padding=1, bias=False),  # batch norm's shift is the bias
        nn.BatchNorm2d(channels),
        nn.ReLU(),
        nn.Dropout(dropout),
        nn.Flatten(),
        nn.Linear(channels * h * w, n_outputs),
    )


class _Residual(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.first = nn.Linear(width, width)
        self.second = nn.Linear(width, width)

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = x + self.second(torch.relu(self.first(x)))
        return torch.relu(out)


def residual_mlp(
    in_shape: Sequence[int], n_outputs: int, width: int = 64, blocks: int = 2
) -> nn.Module:
    """A fully connected network of ``blocks`` residual blocks of ``width`` units (each
    ``relu(x + W2 relu(W1 x))``); the input is flattened first."""
    features = 1
    for n in in_shape:
        features *= n
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(features, width),
        nn.ReLU(),
        *[_Residual(width) for _ in range(blocks)],
        nn.Linear(width, n_outputs),
    )


class _LastState(nn.Module):
    def __init__(self, hidden: int, n_outputs: int) -> None:
        super().__init__()
        self.gru = nn.GRU(1, hidden, batch_first=True)
        self.head = nn.Linear(hidden, n_outputs)

    def forward(self, x: Tensor) -> Tensor:
        _, h = self.gru(x.unsqueeze(-1))  # [B, L] -> [B, L, 1]; h: [1, B, hidden]
        out: Tensor = self.head(h[-1])
        return out


def gru(in_shape: Sequence[int], n_outputs: int, hidden: int = 32) -> nn.Module:
    """A GRU of ``hidden`` units over a 1-d signal ``(L,)``, one value a step; its last state
    goes to a linear head."""
    if len(in_shape) != 1:
        raise ValueError(f"gru reads 1-d signals (L,), got examples of shape {tuple(in_shape)}")
    return _LastState(hidden, n_outputs)
