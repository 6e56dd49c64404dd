"""Datasets as tensors on the training device.

Every loader returns a :class:`Dataset` with disjoint train / validation / test splits, fixed by
the data config's ``seed`` (the split seed; the trainer's own seed only drives initialization and
batch order). Inputs are standardized with statistics of the training split alone. Nothing here
touches the network: MNIST-1D is generated with the ``mnist1d`` package and cached on disk.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import stat
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Literal

import numpy as np
import torch
from torch import Tensor

from ._fields import from_tagged, to_mapping
from .errors import ConfigError

Task = Literal["classification", "regression"]

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


@dataclass(frozen=True)
class Dataset:
    """Three splits on one device. ``y`` holds class indices (int64) or targets (float32)."""

    x_train: Tensor
    y_train: Tensor
    x_val: Tensor
    y_val: Tensor
    x_test: Tensor
    y_test: Tensor
    task: Task
    n_classes: int  # 0 for regression
    sequence: bool  # inputs are 1-d signals (a conv net applies)

    @property
    def n_features(self) -> int:
        return int(self.x_train.shape[1])


def load_dataset(config: DataConfig, device: torch.device) -> Dataset:
    """Load or generate ``config``'s data and move it to ``device`` once."""
    if isinstance(config, Mnist1dData):
        x, y, x_test, y_test = _mnist1d_arrays()
        val, train = partition(len(x), (config.n_val,), config.seed)
        arrays = (x[train], y[train], x[val], y[val], x_test, y_test)
        return _to_device(arrays, "classification", 10, True, device)
    if isinstance(config, _SklearnData):
        x, y = _sklearn_arrays(config.name)
        n = len(x)
        n_test = max(1, round(config.test_fraction * n))
        n_val = max(1, round(config.val_fraction * n))
        test, val, train = partition(n, (n_test, n_val), config.seed)
        arrays = (x[train], y[train], x[val], y[val], x[test], y[test])
        return _to_device(arrays, "classification", int(y.max()) + 1, False, device)
    return _linear(config, device)


def partition(n: int, counts: tuple[int, ...], seed: int) -> list[np.ndarray]:
    """Split ``range(n)`` at random (fixed by ``seed``) into parts of ``counts`` and the rest."""
    order = np.random.default_rng(seed).permutation(n)
    bounds = np.cumsum(counts)
    return np.split(order, bounds)


def _to_device(
    arrays: tuple[np.ndarray, ...],
    task: Task,
    n_classes: int,
    sequence: bool,
    device: torch.device,
) -> Dataset:
    x_train, y_train, x_val, y_val, x_test, y_test = arrays
    mean = x_train.mean(axis=0)
    std = x_train.std(axis=0)
    std = np.where(std > 1e-12, std, 1.0)  # constant features (digits' blank pixels) stay put

    def xs(a: np.ndarray) -> Tensor:
        return torch.as_tensor((a - mean) / std, dtype=torch.float32).to(device)

    def ys(a: np.ndarray) -> Tensor:
        dtype = torch.int64 if task == "classification" else torch.float32
        return torch.as_tensor(a, dtype=dtype).to(device)

    return Dataset(
        xs(x_train), ys(y_train), xs(x_val), ys(y_val), xs(x_test), ys(y_test),
        task, n_classes, sequence,
    )  # fmt: skip


def _linear(config: LinearData, device: torch.device) -> Dataset:
    rng = np.random.default_rng(config.seed)
    w_star = rng.standard_normal(config.n_features) / np.sqrt(config.n_features)
    splits = []
    for n in (config.n_train, config.n_val, config.n_test):
        x = rng.standard_normal((n, config.n_features))
        splits += [x, x @ w_star + config.noise * rng.standard_normal(n)]
    return _to_device(tuple(splits), "regression", 0, False, device)


def _sklearn_arrays(name: str) -> tuple[np.ndarray, np.ndarray]:
    from sklearn import datasets  # deferred: importing scikit-learn costs about a second

    loader = datasets.load_digits if name == "digits" else datasets.load_breast_cancer
    bunch = loader()
    return np.asarray(bunch.data, dtype=np.float64), np.asarray(bunch.target, dtype=np.int64)


def _mnist1d_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("mnist1d")
    except PackageNotFoundError:  # pragma: no cover - a declared dependency
        return "unknown"


def cache_dir() -> Path:
    """``$DYNL2_CACHE``, else ``$XDG_CACHE_HOME/dynl2``, else ``~/.cache/dynl2``."""
    if env := os.environ.get("DYNL2_CACHE"):
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "dynl2"


_Arrays = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]


def _cache_kind(path: Path) -> str:
    """``"file"`` (a regular file), ``"none"`` (nothing there), or ``"other"``: a folder, a
    link, a FIFO or a device, which the cache neither reads (a FIFO would block forever) nor
    replaces."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return "none"
    except OSError:
        return "other"
    return "file" if stat.S_ISREG(mode) else "other"


def _cached_arrays(path: Path) -> _Arrays | None:
    """The cached arrays, or None when the cache is missing, unreadable or not a file."""
    if _cache_kind(path) != "file":
        return None
    try:
        with np.load(path) as cached:
            return cached["x"], cached["y"], cached["x_test"], cached["y_test"]
    except (OSError, ValueError, KeyError, EOFError):
        return None  # unreadable: generate it (a few seconds) and cache it again


def _write_cache(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Cache ``arrays`` at ``path`` when nothing but a regular file is there: written to a
    temporary file beside it and renamed, so parallel workers never read half a cache. An
    unwritable cache only costs regeneration next time."""
    tmp: str | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if _cache_kind(path) == "other":
            return
        with tempfile.NamedTemporaryFile(dir=path.parent, suffix=".npz", delete=False) as f:
            tmp = f.name
            np.savez(
                f, x=arrays["x"], y=arrays["y"], x_test=arrays["x_test"], y_test=arrays["y_test"]
            )
        os.replace(tmp, path)
        tmp = None
    except OSError:
        pass
    finally:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)


def _mnist1d_arrays() -> _Arrays:
    # The cache is keyed by the package's version (its default arguments are what it
    # generates), so a cache hit never imports mnist1d, which pulls in matplotlib: 1.5 s of
    # every worker's start-up, measured.
    key = hashlib.sha256(f"mnist1d {_mnist1d_version()} defaults".encode()).hexdigest()[:16]
    path = cache_dir() / f"mnist1d-{key}.npz"
    cached = _cached_arrays(path)
    if cached is not None:
        return cached
    from mnist1d.data import get_dataset_args, make_dataset  # deferred: pulls in matplotlib

    state = np.random.get_state()  # make_dataset reseeds numpy's global generator
    try:
        data = make_dataset(get_dataset_args())
    finally:
        np.random.set_state(state)
    arrays = {k: np.asarray(data[k]) for k in ("x", "y", "x_test", "y_test")}
    _write_cache(path, arrays)
    return arrays["x"], arrays["y"], arrays["x_test"], arrays["y_test"]
