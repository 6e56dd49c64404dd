"""dynl2's trainer layer: pure PyTorch. Datasets on the device, models, regularization schemes,
and the training loop, and the fused engine that trains K runs as one stacked model. Knows nothing
of Optuna or SQL.

The names are imported when first asked for (PEP 562): the config modules (``config``, ``data``,
``models``, ``schemes``, ``errors``) import no torch, so ``from trainers import TrainConfig``
costs milliseconds, and only a name from a training module (``train``, ``load_dataset``, ...)
imports torch, which takes seconds. A verb that does not train never pays for it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the same names, for type checkers; at run time __getattr__ imports them
    from .config import OPTIMIZERS, TrainConfig
    from .data import (
        DATASETS,
        BreastCancerData,
        DataConfig,
        DigitsData,
        LinearData,
        Mnist1dData,
        data_from_dict,
    )
    from .datasets import Dataset, load_dataset
    from .dropin import (
        AWD,
        SWD,
        DropIn,
        DynamicL1,
        DynamicL2,
        FixedL2,
        ScheduledL2,
        from_scheme,
    )
    from .errors import ConfigError, DivergenceError, TrainerError
    from .fused import PER_MEMBER, FusedOutcome, FusedTrainer, fuse_problem, train_fused
    from .loop import (
        EpochCallback,
        EpochRecord,
        Trainer,
        TrainResult,
        flush_denormals,
        resolve_device,
        train,
    )
    from .memory import keep_freed_memory
    from .models import MODELS, CNNModel, LinearModel, MLPModel, ModelConfig
    from .networks import build_model
    from .regularizers import Regularizer, make_regularizer
    from .schemes import (
        ALPHA_LR,
        SCHEMES,
        SHAPES,
        AWDScheme,
        DynamicL1Scheme,
        DynamicScheme,
        FixedScheme,
        NoneScheme,
        ScheduleScheme,
        Scheme,
        SWDScheme,
        scheme_from_dict,
        scheme_parameters,
    )

# The module of each public name (tests/trainers/test_imports.py checks it matches __all__).
_MODULES: dict[str, tuple[str, ...]] = {
    "config": ("OPTIMIZERS", "TrainConfig"),
    "data": (
        "DATASETS",
        "BreastCancerData",
        "DataConfig",
        "DigitsData",
        "LinearData",
        "Mnist1dData",
        "data_from_dict",
    ),
    "datasets": ("Dataset", "load_dataset"),
    "dropin": (
        "AWD",
        "SWD",
        "DropIn",
        "DynamicL1",
        "DynamicL2",
        "FixedL2",
        "ScheduledL2",
        "from_scheme",
    ),
    "errors": ("ConfigError", "DivergenceError", "TrainerError"),
    "fused": ("PER_MEMBER", "FusedOutcome", "FusedTrainer", "fuse_problem", "train_fused"),
    "loop": (
        "EpochCallback",
        "EpochRecord",
        "Trainer",
        "TrainResult",
        "flush_denormals",
        "resolve_device",
        "train",
    ),
    "memory": ("keep_freed_memory",),
    "models": ("MODELS", "CNNModel", "LinearModel", "MLPModel", "ModelConfig"),
    "networks": ("build_model",),
    "regularizers": ("Regularizer", "make_regularizer"),
    "schemes": (
        "ALPHA_LR",
        "SCHEMES",
        "SHAPES",
        "AWDScheme",
        "DynamicL1Scheme",
        "DynamicScheme",
        "FixedScheme",
        "NoneScheme",
        "SWDScheme",
        "ScheduleScheme",
        "Scheme",
        "scheme_from_dict",
        "scheme_parameters",
    ),
}
_HOME = {name: module for module, names in _MODULES.items() for name in names}


def __getattr__(name: str) -> object:
    module = _HOME.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value  # the next lookup finds it without coming here
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


__all__ = [
    "ALPHA_LR",
    "AWD",
    "DATASETS",
    "MODELS",
    "OPTIMIZERS",
    "PER_MEMBER",
    "SCHEMES",
    "SHAPES",
    "SWD",
    "AWDScheme",
    "BreastCancerData",
    "CNNModel",
    "ConfigError",
    "DataConfig",
    "Dataset",
    "DigitsData",
    "DivergenceError",
    "DropIn",
    "DynamicL1",
    "DynamicL1Scheme",
    "DynamicL2",
    "DynamicScheme",
    "EpochCallback",
    "EpochRecord",
    "FixedL2",
    "FixedScheme",
    "FusedOutcome",
    "FusedTrainer",
    "LinearData",
    "LinearModel",
    "MLPModel",
    "Mnist1dData",
    "ModelConfig",
    "NoneScheme",
    "Regularizer",
    "SWDScheme",
    "ScheduleScheme",
    "ScheduledL2",
    "Scheme",
    "TrainConfig",
    "TrainResult",
    "Trainer",
    "TrainerError",
    "build_model",
    "data_from_dict",
    "flush_denormals",
    "from_scheme",
    "fuse_problem",
    "keep_freed_memory",
    "load_dataset",
    "make_regularizer",
    "resolve_device",
    "scheme_from_dict",
    "scheme_parameters",
    "train",
    "train_fused",
]
