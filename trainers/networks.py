"""The networks, each built from its frozen config (:mod:`trainers.models`): the built-in ones
here, a user's own by their factory (:class:`~trainers.models.FactoryModel`), which
:func:`check_model` builds and runs once on two examples before a study writes anything.
Nothing happens at import time."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from .data import OwnData
from .errors import ConfigError
from .models import CNNModel, FactoryModel, LinearModel, MLPModel, ModelConfig
from .own import import_function, read_arrays, said


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
    config: ModelConfig,
    n_features: int,
    n_out: int,
    sequence: bool,
    seed: int,
    in_shape: tuple[int, ...] | None = None,
) -> nn.Module:
    """A freshly initialized model on the CPU, identical for the same ``seed`` on any machine.

    A factory model (:class:`~trainers.models.FactoryModel`) is the user's function called as
    ``function(in_shape, n_out, **args)`` (``in_shape`` one example's input shape, default
    ``(n_features,)``), under the same seeding."""
    if isinstance(config, FactoryModel):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model: nn.Module = build_factory_model(config, in_shape or (n_features,), n_out)
            return model
    if isinstance(config, CNNModel):
        if not sequence:
            raise ConfigError("model.kind", "cnn needs sequence data (dataset mnist1d)")
        if n_features < 8:
            raise ConfigError("model.kind", f"cnn needs sequences of >= 8 steps, got {n_features}")
    with torch.random.fork_rng(devices=[]):
        # the CPU's generator alone, where the model is made: torch.manual_seed seeds every
        # device's too, queueing lazy calls that cost some 2 ms each (one per fused member)
        torch.default_generator.manual_seed(seed)
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


def build_factory_model(config: FactoryModel, in_shape: tuple[int, ...], n_out: int) -> Any:
    """The user's model, built by their factory (seeded by the caller), checked to be an
    ``nn.Module`` with parameters."""
    function = import_function(config.factory, config.root, "model.factory")
    try:
        model = function(tuple(in_shape), n_out, **config.args)
    except (Exception, SystemExit) as exc:
        raise ConfigError("model.factory", f"{config.factory} raised {said(exc)}") from None
    if not isinstance(model, nn.Module):
        raise ConfigError(
            "model.factory",
            f"{config.factory} must return a torch.nn.Module, got {type(model).__name__}",
        )
    if not any(True for _ in model.parameters()):
        raise ConfigError("model.factory", f"{config.factory}'s model has no parameters")
    return model


def check_model(
    config: FactoryModel, data: OwnData | None, in_shape: tuple[int, ...], n_out: int
) -> None:
    """Build the model and run it on two examples (of ``data`` when given, else zeros): an
    exception, a wrong output shape or no parameters is a ConfigError."""
    model = build_model(config, math.prod(in_shape), n_out, len(in_shape) == 1, 0, in_shape)
    if data is not None:
        arrays, _ = read_arrays(data)
        x = torch.tensor(np.array(arrays["x"][:2], dtype=np.float32))
    else:
        x = torch.zeros(2, *in_shape)
    model.train()
    try:
        out = model(x)
    except (Exception, SystemExit) as exc:
        raise ConfigError(
            "model.factory",
            f"{config.factory}'s model fails on a batch of shape {tuple(x.shape)}: {said(exc)}",
        ) from None
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != (len(x), n_out):
        got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ConfigError(
            "model.factory",
            f"{config.factory}'s model must return [batch, {n_out}] on a batch of shape "
            f"{tuple(x.shape)}, got {got}",
        )
