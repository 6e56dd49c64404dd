"""The dataset configs: which data a run trains on, and how it is split.

Each config fixes disjoint train / validation / test splits by its ``seed`` (the split seed; the
trainer's own seed only drives initialization and batch order). :mod:`trainers.datasets` loads
them onto the device. Nothing here imports torch or numpy: the experiment config, and verbs that
do not train, build on these classes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar

from ._fields import from_tagged, to_mapping
from .errors import ConfigError

MAX_DATA_SEED = 2**63 - 1  # split seeds: numpy's generators take any non-negative integer
MIN_EVAL_EXAMPLES = 10  # validation and test examples: fewer make every trial score alike
MIN_FRACTION = 0.02  # val_fraction, test_fraction: 11 of breast_cancer's 569 examples
MAX_EXAMPLES = 1_000_000  # linear: examples in each split
MAX_FEATURES = 100_000  # linear: input dimension
MAX_NUMBERS = 50_000_000  # linear: (n_train + n_val + n_test) * n_features, 400 MB as float64


def _check_seed(seed: int) -> None:
    if not 0 <= seed <= MAX_DATA_SEED:
        raise ConfigError("seed", f"must be between 0 and 2**63-1, got {seed!r}")


@dataclass(frozen=True)
class Mnist1dData:
    """MNIST-1D (Greydanus 2020): 4000 train / 1000 test sequences of length 40, 10 classes.

    Generated with ``mnist1d.data.make_dataset(get_dataset_args())``; the validation split is
    carved out of the package's 4000 training examples.
    """

    name: ClassVar[str] = "mnist1d"
    sequence: ClassVar[bool] = True  # inputs are 1-d signals: a conv net applies
    n_inputs: ClassVar[int] = 40  # signal length
    n_outputs: ClassVar[int] = 10  # classes
    n_val: int = 1000  # examples moved from the package's training split to validation
    seed: int = 0  # split seed

    def __post_init__(self) -> None:
        if not MIN_EVAL_EXAMPLES <= self.n_val <= 3999:
            raise ConfigError(
                "n_val", f"must be between {MIN_EVAL_EXAMPLES} and 3999, got {self.n_val!r}"
            )
        _check_seed(self.seed)


@dataclass(frozen=True)
class _SklearnData:
    name: ClassVar[str]
    sequence: ClassVar[bool] = False
    n_inputs: ClassVar[int]  # features
    n_outputs: ClassVar[int]  # classes
    val_fraction: float = 0.2  # share of all examples used for validation
    test_fraction: float = 0.2  # share of all examples used for the test split
    seed: int = 0  # split seed

    def __post_init__(self) -> None:
        for key in ("val_fraction", "test_fraction"):
            value = getattr(self, key)
            if not MIN_FRACTION <= value < 1.0:
                raise ConfigError(
                    key,
                    f"must be in [{MIN_FRACTION}, 1), got {value!r}: a split needs enough "
                    f"examples (at least {MIN_EVAL_EXAMPLES}) to tell trials apart",
                )
        if self.val_fraction + self.test_fraction >= 0.9:
            raise ConfigError(
                "test_fraction", "val_fraction + test_fraction must leave >= 10% for training"
            )
        _check_seed(self.seed)


@dataclass(frozen=True)
class DigitsData(_SklearnData):
    """scikit-learn's bundled 8×8 digits: 1797 examples, 64 features, 10 classes."""

    name: ClassVar[str] = "digits"
    n_inputs: ClassVar[int] = 64
    n_outputs: ClassVar[int] = 10


@dataclass(frozen=True)
class BreastCancerData(_SklearnData):
    """scikit-learn's bundled Wisconsin breast cancer data: 569 examples, 30 features, 2
    classes."""

    name: ClassVar[str] = "breast_cancer"
    n_inputs: ClassVar[int] = 30
    n_outputs: ClassVar[int] = 2


@dataclass(frozen=True)
class LinearData:
    """Synthetic regression y = X·w* + noise·ε, X and ε standard normal, w* ~ N(0, I/n_features).

    ``n_train < n_features`` is allowed: the under-determined regime where L2 matters most.
    """

    name: ClassVar[str] = "linear"
    sequence: ClassVar[bool] = False
    n_outputs: ClassVar[int] = 1
    n_train: int = 50  # training examples
    n_val: int = 500  # validation examples
    n_test: int = 1000  # test examples
    n_features: int = 100  # input dimension
    noise: float = 0.5  # standard deviation of the label noise (≥ 0)
    seed: int = 0  # seed of w*, the inputs and the noise

    def __post_init__(self) -> None:
        for key, low, high in (
            ("n_train", 1, MAX_EXAMPLES),
            ("n_val", MIN_EVAL_EXAMPLES, MAX_EXAMPLES),
            ("n_test", MIN_EVAL_EXAMPLES, MAX_EXAMPLES),
            ("n_features", 1, MAX_FEATURES),
        ):
            value = getattr(self, key)
            if not low <= value <= high:
                raise ConfigError(key, f"must be between {low} and {high}, got {value!r}")
        numbers = (self.n_train + self.n_val + self.n_test) * self.n_features
        if numbers > MAX_NUMBERS:
            raise ConfigError(
                "n_features",
                f"(n_train + n_val + n_test) * n_features is {numbers} numbers; at most "
                f"{MAX_NUMBERS}",
            )
        if not self.noise >= 0:
            raise ConfigError("noise", f"must be >= 0, got {self.noise!r}")
        _check_seed(self.seed)

    @property
    def n_inputs(self) -> int:
        return self.n_features


DataConfig = Mnist1dData | DigitsData | BreastCancerData | LinearData

DATASETS: dict[str, type[DataConfig]] = {
    cls.name: cls for cls in (Mnist1dData, DigitsData, BreastCancerData, LinearData)
}


def data_from_dict(data: Mapping[str, object], prefix: str = "data") -> DataConfig:
    """Build a dataset config from ``{"dataset": NAME, ...its options}``."""
    return from_tagged(DATASETS, data, prefix, "dataset", "mnist1d", "dataset")


def data_to_dict(config: DataConfig) -> dict[str, object]:
    return {"dataset": config.name, **to_mapping(config)}
