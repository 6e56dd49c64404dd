"""The model configs, one frozen dataclass per architecture; :mod:`trainers.networks` builds
them. Nothing here imports torch: the experiment config, and verbs that do not train, build on
these classes."""

from __future__ import annotations

import itertools
import json
import re
import types
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import ClassVar

from ._fields import describe, from_tagged, to_mapping
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


@dataclass(frozen=True)
class FactoryModel:
    """A user's own model: ``factory`` ("module:function") is called as
    ``function(in_shape, n_outputs, **args)`` and returns a ``torch.nn.Module``. The module is
    imported with ``root`` (the experiment file's folder, unless given) first on the import
    path, as a script's folder is. ``args`` are plain TOML values."""

    name: ClassVar[str] = "factory"
    factory: str
    args: Mapping[str, object] = field(default_factory=dict, hash=False)
    root: str = ""  # the folder the module is imported from ("" : the import path as it is)

    def __post_init__(self) -> None:
        check_spec("factory", self.factory)
        object.__setattr__(self, "args", frozen_args("args", self.args))
        if not isinstance(self.root, str) or "\x00" in self.root or len(self.root) > 4096:
            raise ConfigError("root", f"expected a folder name, got {describe(self.root)}")


ModelConfig = LinearModel | MLPModel | CNNModel | FactoryModel

MODELS: dict[str, type[ModelConfig]] = {c.name: c for c in (LinearModel, MLPModel, CNNModel)}

# a module (or function) name: dotted Python identifiers; "module:function" joins two
MODULE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*", re.ASCII)
MAX_ARGS_TEXT = 65536  # [model.args] / [data.args] as JSON: a config, not a data channel


def check_spec(key: str, spec: object) -> str:
    """``spec`` if it reads "module:function" (dotted identifiers), else a ConfigError."""
    rule = 'a "module:function" name, e.g. "mymodels:make_cnn"'
    if not isinstance(spec, str):
        raise ConfigError(key, f"expected {rule}, got {describe(spec)}")
    module, colon, function = spec.partition(":")
    if not (colon and MODULE_NAME.fullmatch(module) and MODULE_NAME.fullmatch(function)):
        raise ConfigError(key, f"expected {rule}, got {describe(spec)}")
    return spec


def frozen_args(key: str, args: object) -> Mapping[str, object]:
    """A read-only copy of a table of plain TOML/JSON values (keyword arguments)."""
    if not isinstance(args, Mapping):
        raise ConfigError(key, f"expected a table of arguments, got {describe(args)}")
    try:
        text = json.dumps(args, sort_keys=True, allow_nan=False, default=_no_json)
    except (TypeError, ValueError) as exc:
        detail = f"expected plain values (numbers, strings, lists, tables): {exc}"
        raise ConfigError(key, detail) from None
    if len(text) > MAX_ARGS_TEXT:
        raise ConfigError(key, f"{len(text)} characters as JSON; at most {MAX_ARGS_TEXT}")
    for name in args:
        if not isinstance(name, str) or not name.isidentifier():
            raise ConfigError(f"{key}.{name}", "an argument name must be a Python identifier")
    return types.MappingProxyType(json.loads(text))


def _no_json(value: object) -> object:
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, tuple):
        return list(value)
    raise TypeError(f"{describe(value)} is not a plain value")


def plain(value: object) -> object:
    """A read-only mapping (and its contents) as plain JSON-ready values."""
    if isinstance(value, Mapping):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


def model_from_dict(data: Mapping[str, object], prefix: str = "model") -> ModelConfig:
    """Build a model config from ``{"kind": NAME, ...its options}`` or ``{"factory": SPEC,
    "args": {...}}`` (a user's own model)."""
    if isinstance(data, Mapping) and "factory" in data:
        return factory_from_dict(data, prefix)
    return from_tagged(MODELS, data, prefix, "kind", "mlp", "model")


def factory_from_dict(data: Mapping[str, object], prefix: str) -> FactoryModel:
    allowed = ("factory", "args", "root")
    for key in data:
        if key not in allowed:
            hint = "; a factory model takes no 'kind'" if key == "kind" else ""
            raise ConfigError(
                f"{prefix}.{key}",
                f"a factory model has no setting {describe(key)}; its settings: "
                f"{', '.join(allowed)}{hint}",
            )
    root = data.get("root", "")
    if not isinstance(root, str):
        raise ConfigError(f"{prefix}.root", f"expected a folder name, got {describe(root)}")
    try:
        return FactoryModel(data["factory"], data.get("args", {}), root)  # type: ignore[arg-type]
    except ConfigError as exc:
        raise ConfigError(f"{prefix}.{exc.key}", exc.detail) from None


def model_to_dict(config: ModelConfig) -> dict[str, object]:
    if isinstance(config, FactoryModel):
        return {"factory": config.factory, "args": plain(config.args), "root": config.root}
    return {"kind": config.name, **to_mapping(config)}


def weight_count(config: ModelConfig, n_features: int, n_out: int) -> int | None:
    """The parameters (weights and biases) :func:`trainers.networks.build_model` would create,
    computed without creating them: what validation bounds. None for a factory model: only
    building it tells (:func:`trainers.own.check_model`)."""
    if isinstance(config, FactoryModel):
        return None
    if isinstance(config, LinearModel):
        return (n_features + 1) * n_out
    if isinstance(config, MLPModel):
        widths = (n_features, *config.hidden, n_out)
        return sum((a + 1) * b for a, b in itertools.pairwise(widths))
    c, length = config.channels, n_features
    for k in (5, 3, 3):
        length = (length + 2 - k) // 2 + 1
    return (5 + 1) * c + 2 * (3 * c + 1) * c + (c * max(length, 1) + 1) * n_out
