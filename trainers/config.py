"""The trainer's configuration: one frozen dataclass holding data, model, scheme and loop.

Nothing here imports torch at import time: the experiment config, and verbs that do not train,
build on it."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from ._fields import convert, describe
from .data import DataConfig, FileData, LoaderData, Mnist1dData, data_from_dict, data_to_dict
from .errors import ConfigError
from .models import (
    MAX_WEIGHTS,
    MLPModel,
    ModelConfig,
    check_spec,
    model_from_dict,
    model_to_dict,
    weight_count,
)
from .schemes import NoneScheme, Scheme, scheme_from_dict

OPTIMIZERS = ("sgd", "adam")
PENALIZE = ("weights", "all")  # which parameters a scheme's penalty covers
MAX_EPOCHS = 1_000_000
MAX_BATCH_SIZE = 10_000_000
# The whole string, ASCII digits only: re's $ would let "cpu\n" through and \d "cuda:\u0663".
_DEVICE = re.compile(r"auto|cpu|mps|cuda(?::[0-9]+)?", re.ASCII)
_DEVICE_RULE = "auto, cpu, cuda, cuda:N (N a CUDA device number) or mps"


@dataclass(frozen=True)
class TrainConfig:
    """Everything one training run needs. Stored, resolved, with every trial."""

    data: DataConfig = field(default_factory=Mnist1dData)
    model: ModelConfig = field(default_factory=MLPModel)
    scheme: Scheme = field(default_factory=NoneScheme)
    optimizer: str = "adam"  # "adam" or "sgd"
    lr: float = 1e-2  # learning rate
    momentum: float = 0.9  # SGD momentum in [0, 1); ignored by Adam
    nesterov: bool = False  # Nesterov momentum (SGD with momentum > 0 only)
    epochs: int = 20  # passes over the training split
    batch_size: int = 100  # examples per step (the last batch of an epoch may be smaller)
    seed: int = 0  # initialization and batch order
    order_seed: int | None = None  # batch order seed when it differs from ``seed``: the trials
    # of a fused search group share one batch order (see trainers.fused); None = ``seed``
    device: str = "auto"  # "auto" (cuda, then mps, then cpu), "cpu", "cuda", "cuda:N", "mps"
    penalize: str = "weights"  # "weights": parameters of >= 2 dimensions; "all": biases and
    # normalization parameters too (the same as every arm's ``biases = true``)
    loop: str = ""  # a user's own training loop, "module:function" (trainers.custom); "": dynl2's
    loop_root: str = ""  # the folder the loop's module is imported from

    def __post_init__(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError(
                "optimizer",
                f"must be one of {', '.join(OPTIMIZERS)}, got {describe(self.optimizer)}",
            )
        if not 0.0 < self.lr <= 10.0:
            raise ConfigError("lr", f"must be in (0, 10], got {self.lr!r}")
        if not 0.0 <= self.momentum < 1.0:
            raise ConfigError("momentum", f"must be in [0, 1), got {self.momentum!r}")
        if self.nesterov and (self.optimizer != "sgd" or self.momentum == 0.0):
            raise ConfigError("nesterov", "needs optimizer 'sgd' with momentum > 0")
        serves = self.scheme.optimizers
        if serves is not None and self.optimizer not in serves:
            raise ConfigError(
                "optimizer",
                f"scheme {self.scheme.name!r} needs optimizer {' or '.join(map(repr, serves))}, "
                f"got {self.optimizer!r}",
            )
        if not 1 <= self.epochs <= MAX_EPOCHS:
            raise ConfigError(
                "epochs", f"must be between 1 and {MAX_EPOCHS}, got {describe(self.epochs)}"
            )
        if not 1 <= self.batch_size <= MAX_BATCH_SIZE:
            raise ConfigError(
                "batch_size",
                f"must be between 1 and {MAX_BATCH_SIZE}, got {describe(self.batch_size)}",
            )
        if not 0 <= self.seed < 2**63:
            raise ConfigError("seed", f"must be between 0 and 2**63-1, got {self.seed!r}")
        if self.order_seed is not None and not 0 <= self.order_seed < 2**63:
            raise ConfigError(
                "order_seed", f"must be between 0 and 2**63-1, got {self.order_seed!r}"
            )
        own = isinstance(self.data, FileData | LoaderData)
        if self.model.name == "cnn" and not (
            self.data.sequence_like
            if isinstance(self.data, FileData | LoaderData)
            else self.data.sequence
        ):
            what = "1-d inputs" if own else f"{self.data.name!r}"
            raise ConfigError(
                "model.kind", f"cnn needs sequence data (dataset mnist1d), not {what}"
            )
        known = not own or self.data.n_inputs > 0
        weights = weight_count(self.model, self.data.n_inputs, self.data.n_outputs)
        if known and weights is not None and weights > MAX_WEIGHTS:
            raise ConfigError(
                f"model.{_SIZE_KEYS.get(self.model.name, 'kind')}",
                f"the model would have {weights} parameters on {self.data.name!r}; at most "
                f"{MAX_WEIGHTS}",
            )
        if self.penalize not in PENALIZE:
            raise ConfigError(
                "penalize",
                f"must be one of {', '.join(PENALIZE)}, got {describe(self.penalize)}",
            )
        if self.penalize == "all" and not self.scheme.biases:  # one rule: scheme.covers
            object.__setattr__(self, "scheme", replace(self.scheme, biases=True))
        if self.loop:
            check_spec("loop", self.loop)
        if not isinstance(self.loop_root, str) or "\x00" in self.loop_root:
            raise ConfigError(
                "loop_root", f"expected a folder name, got {describe(self.loop_root)}"
            )
        if not isinstance(self.device, str) or not _DEVICE.fullmatch(self.device):
            raise ConfigError("device", f"must be {_DEVICE_RULE}, got {describe(self.device)}")

    def with_(self, **changes: Any) -> TrainConfig:
        """A copy with some fields replaced (validated again)."""
        return replace(self, **changes)

    @property
    def batch_order_seed(self) -> int:
        """The seed of the batch order: ``order_seed`` when set, else ``seed``."""
        return self.seed if self.order_seed is None else self.order_seed

    def to_dict(self) -> dict[str, object]:
        """Plain JSON-ready values; :meth:`from_dict` reads them back. ``order_seed`` is left
        out when unset, so configs stored before it existed read back the same."""
        scalars = {k: getattr(self, k) for k in _SCALARS}
        if self.order_seed is None:
            del scalars["order_seed"]
        if self.penalize == "weights":  # configs stored before it existed read back the same
            del scalars["penalize"]
        if not self.loop:
            del scalars["loop"]
        if not self.loop_root:
            del scalars["loop_root"]
        return {
            "data": data_to_dict(self.data),
            "model": model_to_dict(self.model),
            "scheme": self.scheme.to_dict(),
            **scalars,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, object], prefix: str = "") -> TrainConfig:
        """Strictly parse a mapping shaped like :meth:`to_dict`; unknown keys are errors."""
        if not isinstance(data, Mapping):
            raise ConfigError(prefix or "config", f"expected a table of settings, got {data!r}")
        p = f"{prefix}." if prefix else ""
        allowed = ("data", "model", "scheme", *_SCALARS)
        for key in data:
            if key not in allowed:
                raise ConfigError(f"{p}{key}", f"unknown setting; allowed: {', '.join(allowed)}")
        kwargs: dict[str, Any] = {}
        if "data" in data:
            kwargs["data"] = data_from_dict(_table(data["data"], f"{p}data"), f"{p}data")
        if "model" in data:
            kwargs["model"] = model_from_dict(_table(data["model"], f"{p}model"), f"{p}model")
        if "scheme" in data:
            kwargs["scheme"] = scheme_from_dict(_table(data["scheme"], f"{p}scheme"), f"{p}scheme")
        for key, annotation in _SCALARS.items():
            if key in data:
                kwargs[key] = convert(f"{p}{key}", data[key], annotation)
        try:
            return cls(**kwargs)
        except ConfigError as exc:
            raise ConfigError(f"{p}{exc.key}", exc.detail) from None


_SIZE_KEYS = {"mlp": "hidden", "cnn": "channels"}  # the setting that sizes each model


def device_problem(name: str) -> str | None:
    """Why this machine cannot train on device ``name``, or None. The config only checks the
    spelling (it is stored, and read on other machines); whatever trains checks this first."""
    if not isinstance(name, str) or not _DEVICE.fullmatch(name):
        return f"must be {_DEVICE_RULE}, got {describe(name)}"
    if name in ("auto", "cpu"):
        return None  # every machine has them: no need to import torch
    import torch  # deferred: the config's readers, which do not train, never pay for it

    if name == "mps":
        if torch.backends.mps.is_available():
            return None
        return '\'mps\' asked for, but this machine has no MPS device; use "auto" or "cpu"'
    if not torch.cuda.is_available():
        return (
            f"{name!r} asked for, but this machine has no CUDA device (torch "
            f'{torch.__version__}); use "auto" or "cpu"'
        )
    count = torch.cuda.device_count()
    index = name.partition(":")[2]
    if index and (len(index) > 6 or int(index) >= count):
        return (
            f"{describe(name)} asked for, but this machine's CUDA devices are cuda:0 to "
            f"cuda:{count - 1}"
        )
    return None


_SCALARS: dict[str, Any] = {
    "optimizer": str,
    "lr": float,
    "momentum": float,
    "nesterov": bool,
    "epochs": int,
    "batch_size": int,
    "seed": int,
    "order_seed": int | None,
    "device": str,
    "penalize": str,
    "loop": str,
    "loop_root": str,
}


def _table(value: object, key: str) -> Mapping[str, object]:
    if not isinstance(value, Mapping):
        raise ConfigError(key, f"expected a table of settings, got {value!r}")
    return value
