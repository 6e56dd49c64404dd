"""The dataset configs: which data a run trains on, and how it is split.

Each config fixes disjoint train / validation / test splits by its ``seed`` (the split seed; the
trainer's own seed only drives initialization and batch order). :mod:`trainers.datasets` loads
them onto the device. Nothing here imports torch or numpy: the experiment config, and verbs that
do not train, build on these classes.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import ClassVar

from ._fields import from_mapping, from_tagged, to_mapping
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


TASKS = ("classification", "regression")


@dataclass(frozen=True)
class _OwnData:
    """What a user's data (a file, or a loader's arrays) shares: how it is read and split.

    ``task``, ``shape``, ``classes`` and ``fingerprint`` are what reading the data tells
    (:func:`trainers.own.inspect_data` fills them in before an experiment is stored); a
    stored config carries them, and every process that loads the data again checks that it
    hashes to ``fingerprint``."""

    sequence: ClassVar[bool] = False
    task: str = ""  # classification | regression; "" : integers are classes, floats targets
    standardize: bool = True  # inputs scaled by the training split's mean and deviation
    val_fraction: float = 0.2  # share of the examples carved out for validation (when the
    test_fraction: float = 0.2  # data gives no x_val / x_test of its own)
    seed: int = 0  # split seed
    fingerprint: str = ""  # "sha256:..." of the arrays as loaded (and the loader's spec)
    shape: tuple[int, ...] = ()  # one example's input shape, e.g. (1, 8, 8)
    classes: int = 0  # classes of a classification task

    def __post_init__(self) -> None:
        if self.task not in ("", *TASKS):
            raise ConfigError("task", f"must be one of {', '.join(TASKS)}, got {self.task!r}")
        for key in ("val_fraction", "test_fraction"):
            value = getattr(self, key)
            if not 0.0 < value < 1.0:
                raise ConfigError(key, f"must be in (0, 1), got {value!r}")
        if self.val_fraction + self.test_fraction >= 0.9:
            raise ConfigError(
                "test_fraction", "val_fraction + test_fraction must leave >= 10% for training"
            )
        _check_seed(self.seed)
        if self.fingerprint and not (
            self.fingerprint.startswith("sha256:") and len(self.fingerprint) == 71
        ):
            raise ConfigError(
                "fingerprint", f"expected 'sha256:' and 64 hex digits, got {self.fingerprint!r}"
            )
        if len(self.shape) > 8 or any(not 1 <= n <= MAX_NUMBERS for n in self.shape):
            raise ConfigError("shape", f"expected up to 8 sizes >= 1, got {self.shape!r}")
        if not 0 <= self.classes <= MAX_CLASSES:
            raise ConfigError("classes", f"must be between 0 and {MAX_CLASSES}")

    @property
    def inspected(self) -> bool:
        """Whether reading the data has filled in its task, shape and fingerprint."""
        return bool(self.fingerprint)

    @property
    def n_inputs(self) -> int:
        """Numbers in one example's input (0 until inspected)."""
        return math.prod(self.shape) if self.shape else 0

    @property
    def n_outputs(self) -> int:
        return self.classes if self.task == "classification" else 1

    @property
    def sequence_like(self) -> bool:
        """One example is a 1-d signal (the built-in conv net applies); True until known."""
        return len(self.shape) == 1 if self.shape else True


@dataclass(frozen=True)
class FileData(_OwnData):
    """A user's data in one file: ``.npz`` (arrays ``x``, ``y``; optional ``x_val``,
    ``y_val``, ``x_test``, ``y_test``), ``.pt`` (a dict of tensors of those names, read with
    ``weights_only=True``), ``.csv`` or ``.parquet`` (a ``target`` column and ``features``,
    every other column by default)."""

    name: ClassVar[str] = "file"
    path: str = ""  # absolute once the experiment is loaded: relative to its file
    target: str = ""  # .csv / .parquet: the label column
    features: tuple[str, ...] = ()  # .csv / .parquet: the input columns ((): all the others)

    def __post_init__(self) -> None:
        if not isinstance(self.path, str) or not self.path or "\x00" in self.path:
            raise ConfigError("path", f"expected a file name, got {self.path!r}")
        if len(self.path) > 4096:
            raise ConfigError("path", "at most 4096 characters")
        tabular = self.path.lower().endswith((".csv", ".parquet"))
        if tabular and not self.target:
            raise ConfigError("target", "missing; a table needs the name of its label column")
        if not tabular and (self.target or self.features):
            key = "target" if self.target else "features"
            raise ConfigError(key, "only a .csv or .parquet table has columns to name")
        super().__post_init__()


@dataclass(frozen=True)
class LoaderData(_OwnData):
    """A user's data from code: ``loader`` ("module:function") is called with ``args`` and
    returns a mapping of arrays (numpy or torch) named as in a file: ``x``, ``y`` and
    optionally ``x_val``, ``y_val``, ``x_test``, ``y_test``."""

    name: ClassVar[str] = "loader"
    loader: str = ""
    args: Mapping[str, object] = field(default_factory=dict, hash=False)
    root: str = ""  # the folder the module is imported from

    def __post_init__(self) -> None:
        from .models import check_spec, frozen_args  # the same rules as a model's factory

        check_spec("loader", self.loader)
        object.__setattr__(self, "args", frozen_args("args", self.args))
        if not isinstance(self.root, str) or "\x00" in self.root or len(self.root) > 4096:
            raise ConfigError("root", f"expected a folder name, got {self.root!r}")
        super().__post_init__()


OwnData = FileData | LoaderData
MAX_CLASSES = 100_000  # classes of a user's classification task

DataConfig = Mnist1dData | DigitsData | BreastCancerData | LinearData | FileData | LoaderData

DATASETS: dict[str, type[DataConfig]] = {
    cls.name: cls for cls in (Mnist1dData, DigitsData, BreastCancerData, LinearData)
}


def data_from_dict(data: Mapping[str, object], prefix: str = "data") -> DataConfig:
    """Build a dataset config from ``{"dataset": NAME, ...its options}``, or a user's own data
    from ``{"path": FILE, ...}`` or ``{"loader": "module:function", "args": {...}, ...}``."""
    if isinstance(data, Mapping) and ("path" in data or "loader" in data):
        return _own_from_dict(data, prefix)
    return from_tagged(DATASETS, data, prefix, "dataset", "mnist1d", "dataset")


def _own_from_dict(data: Mapping[str, object], prefix: str) -> OwnData:
    if "path" in data and "loader" in data:
        raise ConfigError(f"{prefix}.loader", "give either path or loader, not both")
    if "dataset" in data:
        form = "path" if "path" in data else "loader"
        raise ConfigError(
            f"{prefix}.dataset", f"give either dataset (a built-in one) or {form}, not both"
        )
    if "loader" in data:
        rest = {k: v for k, v in data.items() if k != "args"}
        config = from_mapping(LoaderData, rest, prefix)
        if "args" not in data:
            return config
        try:
            return replace(config, args=data["args"])  # type: ignore[arg-type]
        except ConfigError as exc:
            raise ConfigError(f"{prefix}.{exc.key}", exc.detail) from None
    return from_mapping(FileData, data, prefix)


def data_to_dict(config: DataConfig) -> dict[str, object]:
    if isinstance(config, LoaderData):
        from .models import plain

        return {"loader": config.loader, **to_mapping(config), "args": plain(config.args)}
    if isinstance(config, FileData):
        return {"path": config.path, **to_mapping(config)}
    return {"dataset": config.name, **to_mapping(config)}


def task_of(config: DataConfig) -> str:
    """classification or regression ("" for a user's data not yet inspected)."""
    if isinstance(config, FileData | LoaderData):
        return config.task
    return "regression" if isinstance(config, LinearData) else "classification"
