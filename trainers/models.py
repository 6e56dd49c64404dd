"""The model configs, one frozen dataclass per architecture; :mod:`trainers.networks` builds
them. Nothing here imports torch: the experiment config, and verbs that do not train, build on
these classes."""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar

from ._fields import from_tagged, to_mapping
from .errors import ConfigError

MAX_LAYERS = 64  # hidden layers of an MLP
MAX_WIDTH = 65536  # units of one hidden layer
MAX_CHANNELS = 4096  # channels of a CNN's conv layers
MAX_WEIGHTS = 10_000_000  # parameters of one model (the MNIST-1D reference MLP has 15k)


@dataclass(frozen=True)
class LinearModel:
    """One affine layer: logits (or the regression output) = W·x + b."""

    name: ClassVar[str] = "linear"


@dataclass(frozen=True)
class MLPModel:
    """Fully connected ReLU network; ``hidden`` lists the hidden layer widths."""

    name: ClassVar[str] = "mlp"
    hidden: tuple[int, ...] = (100, 100)  # hidden widths; MNIST-1D's reference is 40-100-100-10

    def __post_init__(self) -> None:
        if not self.hidden:
            raise ConfigError("hidden", "needs at least one layer width (use model 'linear')")
        if len(self.hidden) > MAX_LAYERS:
            raise ConfigError(
                "hidden", f"at most {MAX_LAYERS} layers, got {len(self.hidden)} layer widths"
            )
        for width in self.hidden:
            if not 1 <= width <= MAX_WIDTH:
                raise ConfigError(
                    "hidden", f"widths must be between 1 and {MAX_WIDTH}, got {width!r}"
                )


@dataclass(frozen=True)
class CNNModel:
    """The MNIST-1D paper's 1-d conv net: three Conv1d layers (kernels 5/3/3, stride 2, padding
    1, ReLU) of ``channels`` channels, then a linear head. Needs sequence data."""

    name: ClassVar[str] = "cnn"
    channels: int = 25  # channels of each conv layer

    def __post_init__(self) -> None:
        if not 1 <= self.channels <= MAX_CHANNELS:
            raise ConfigError(
                "channels", f"must be between 1 and {MAX_CHANNELS}, got {self.channels!r}"
            )


ModelConfig = LinearModel | MLPModel | CNNModel

MODELS: dict[str, type[ModelConfig]] = {c.name: c for c in (LinearModel, MLPModel, CNNModel)}


def model_from_dict(data: Mapping[str, object], prefix: str = "model") -> ModelConfig:
    """Build a model config from ``{"kind": NAME, ...its options}``."""
    return from_tagged(MODELS, data, prefix, "kind", "mlp", "model")


def model_to_dict(config: ModelConfig) -> dict[str, object]:
    return {"kind": config.name, **to_mapping(config)}


def weight_count(config: ModelConfig, n_features: int, n_out: int) -> int:
    """The parameters (weights and biases) :func:`trainers.networks.build_model` would create,
    computed without creating them: what validation bounds."""
    if isinstance(config, LinearModel):
        return (n_features + 1) * n_out
    if isinstance(config, MLPModel):
        widths = (n_features, *config.hidden, n_out)
        return sum((a + 1) * b for a, b in itertools.pairwise(widths))
    c, length = config.channels, n_features
    for k in (5, 3, 3):
        length = (length + 2 - k) // 2 + 1
    return (5 + 1) * c + 2 * (3 * c + 1) * c + (c * max(length, 1) + 1) * n_out
