"""Datasets as tensors on the training device.

:func:`load_dataset` returns a :class:`Dataset` with the disjoint train / validation / test
splits its config (:mod:`trainers.data`) fixes. Inputs are standardized with statistics of the
training split alone. Nothing here touches the network: MNIST-1D is generated with the
``mnist1d`` package and cached on disk.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import stat
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch import Tensor

from .data import BreastCancerData, DataConfig, DigitsData, LinearData, Mnist1dData, OwnData

Task = Literal["classification", "regression"]


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
        """Numbers in one example's input."""
        return int(self.x_train[0].numel())

    @property
    def in_shape(self) -> tuple[int, ...]:
        """One example's input shape: ``(features,)``, ``(C, H, W)``, ..."""
        return tuple(int(n) for n in self.x_train.shape[1:])

    def flattened(self) -> Dataset:
        """The same data with each example's input as one vector (for the built-in MLP and
        linear model); itself when it already is."""
        if self.x_train.ndim == 2:
            return self
        return replace(
            self,
            x_train=self.x_train.flatten(1),
            x_val=self.x_val.flatten(1),
            x_test=self.x_test.flatten(1),
        )


def load_dataset(config: DataConfig, device: torch.device) -> Dataset:
    """Load or generate ``config``'s data and move it to ``device`` once."""
    if isinstance(config, Mnist1dData):
        x, y, x_test, y_test = _mnist1d_arrays()
        val, train = partition(len(x), (config.n_val,), config.seed)
        arrays = (x[train], y[train], x[val], y[val], x_test, y_test)
        return _to_device(arrays, "classification", 10, True, device)
    if isinstance(config, DigitsData | BreastCancerData):
        x, y = _sklearn_arrays(config.name)
        n = len(x)
        n_test = max(1, round(config.test_fraction * n))
        n_val = max(1, round(config.val_fraction * n))
        test, val, train = partition(n, (n_test, n_val), config.seed)
        arrays = (x[train], y[train], x[val], y[val], x[test], y[test])
        return _to_device(arrays, "classification", int(y.max()) + 1, False, device)
    if isinstance(config, LinearData):
        return _linear(config, device)
    return _own(config, device)


def _own(config: OwnData, device: torch.device) -> Dataset:
    """A user's data: read (once per process), checked against the config's fingerprint,
    split, standardized when asked, and moved to the device."""
    from .own import inspect_data, read_arrays

    inspected = inspect_data(config)  # refuses data whose fingerprint differs
    arrays, _ = read_arrays(config)
    splits = split_arrays(inspected, arrays)
    task: Task = "classification" if inspected.task == "classification" else "regression"
    sequence = len(inspected.shape) == 1
    return _to_device(splits, task, inspected.classes, sequence, device, inspected.standardize)


def split_arrays(config: OwnData, arrays: Mapping[str, np.ndarray]) -> tuple[np.ndarray, ...]:
    """(x_train, y_train, x_val, y_val, x_test, y_test): the file's own splits where it gives
    them, the rest carved from ``x`` at random (fixed by the split seed)."""
    from .own import split_sizes

    x, y = arrays["x"], arrays["y"]
    _, n_val, n_test = split_sizes(config, arrays)
    counts = (0 if "x_test" in arrays else n_test, 0 if "x_val" in arrays else n_val)
    test, val, train = partition(len(x), counts, config.seed)
    given = "x_test" in arrays
    x_test, y_test = (arrays["x_test"], arrays["y_test"]) if given else (x[test], y[test])
    given = "x_val" in arrays
    x_val, y_val = (arrays["x_val"], arrays["y_val"]) if given else (x[val], y[val])
    return x[train], y[train], x_val, y_val, x_test, y_test


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
    standardize: bool = True,
) -> Dataset:
    x_train, y_train, x_val, y_val, x_test, y_test = arrays
    if standardize:
        mean = x_train.mean(axis=0)
        std = x_train.std(axis=0)
        std = np.where(std > 1e-12, std, 1.0)  # constant features (digits' blank pixels) stay
    else:
        mean, std = np.zeros(()), np.ones(())

    def xs(a: np.ndarray) -> Tensor:
        return torch.as_tensor((a - mean) / std, dtype=torch.float32).to(device)

    def ys(a: np.ndarray) -> Tensor:
        dtype = torch.int64 if task == "classification" else torch.float32
        a = a if a.flags.writeable else a.copy()  # a user's arrays are shared, read-only
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
