"""dynl2's trainer layer: pure PyTorch. Datasets on the device, models, regularization schemes,
and the training loop, and the fused engine that trains K runs as one stacked model. Knows nothing
of Optuna or SQL."""

from .config import OPTIMIZERS, TrainConfig
from .data import (
    DATASETS,
    BreastCancerData,
    DataConfig,
    Dataset,
    DigitsData,
    LinearData,
    Mnist1dData,
    data_from_dict,
    load_dataset,
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
from .models import MODELS, CNNModel, LinearModel, MLPModel, ModelConfig, build_model
from .schemes import (
    SCHEMES,
    AWDScheme,
    DynamicL1Scheme,
    DynamicScheme,
    FixedScheme,
    NoneScheme,
    Regularizer,
    Scheme,
    make_regularizer,
    scheme_from_dict,
    scheme_parameters,
)

__all__ = [
    "DATASETS",
    "MODELS",
    "OPTIMIZERS",
    "PER_MEMBER",
    "SCHEMES",
    "AWDScheme",
    "BreastCancerData",
    "CNNModel",
    "ConfigError",
    "DataConfig",
    "Dataset",
    "DigitsData",
    "DivergenceError",
    "DynamicL1Scheme",
    "DynamicScheme",
    "EpochCallback",
    "EpochRecord",
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
    "Scheme",
    "TrainConfig",
    "TrainResult",
    "Trainer",
    "TrainerError",
    "build_model",
    "data_from_dict",
    "flush_denormals",
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
