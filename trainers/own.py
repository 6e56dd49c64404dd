"""A user's own data and model: reading them, checking them, and their fingerprint.

:class:`~trainers.data.FileData` and :class:`~trainers.data.LoaderData` name the data,
:class:`~trainers.models.FactoryModel` the model; this module reads and builds them. Every
mistake is a :class:`~trainers.errors.ConfigError` naming the config key (``data.path``,
``model.factory``) and what is wrong, raised before a study writes anything:
:func:`inspect_data` reads the data once, checks it and fills in what it tells (task, input
shape, classes, fingerprint); :func:`check_model` builds the model and runs it on two examples.

The fingerprint is the SHA-256 of the arrays as read (name, dtype, shape and bytes of each,
and a loader's spec and arguments). A stored experiment keeps it, and every process that reads
the data again (a resume, a worker on another machine, an evaluation) checks it, so a different
copy of the data never mixes into a study.

numpy and pandas are imported here; torch only to read a ``.pt`` file or a loader's tensors.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import json
import math
import os
import stat
import sys
import threading
from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from .data import MIN_EVAL_EXAMPLES, TASKS, FileData, LoaderData, OwnData
from .errors import ConfigError
from .models import plain

ARRAYS = ("x", "y", "x_val", "y_val", "x_test", "y_test")
FORMATS = (".npz", ".pt", ".csv", ".parquet")
MAX_FILE_BYTES = 4 * 2**30  # a data file: 4 GiB
MAX_NUMBERS = 200_000_000  # numbers in all arrays together: 800 MB as float32 on the device
LOADER_SECONDS_ENV = "DYNL2_LOADER_SECONDS"
LOADER_SECONDS = 600.0  # how long a loader may run before the experiment is refused

Arrays = dict[str, np.ndarray]


# ---------------------------------------------------------------------------------------------
# Importing a user's function.


def import_function(spec: str, root: str, key: str) -> Callable[..., Any]:
    """The function ``spec`` ("module:function") names, imported with ``root`` first on the
    import path; a ConfigError at ``key`` when it cannot be."""
    module_name, _, function_name = spec.partition(":")
    folder = bool(root) and os.path.isdir(root)
    if folder and root not in sys.path:
        sys.path.insert(0, root)  # as a script's folder is (a missing one: the path alone)
    try:
        module = importlib.import_module(module_name)
    except (Exception, SystemExit) as exc:
        where = ""
        if root:
            where = f" (from {root!r} or" if folder else f" ({root!r} is no folder here; nor"
            where += " the import path)"
        raise ConfigError(
            key, f"cannot import module {module_name!r}{where}: {said(exc)}"
        ) from None
    function = getattr(module, function_name, None)
    if function is None:
        raise ConfigError(key, f"module {module_name!r} has no function {function_name!r}")
    if not callable(function):
        raise ConfigError(key, f"{spec} is not a function, it is {type(function).__name__}")
    return function  # type: ignore[no-any-return]


def said(exc: BaseException) -> str:
    """An exception as one short line: its type and the first line of its message."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    text = text if len(text) <= 200 else text[:197] + "..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


# ---------------------------------------------------------------------------------------------
# Reading the arrays.


def read_arrays(config: OwnData) -> tuple[Arrays, str]:
    """The checked arrays (read-only) and their fingerprint, read once per process and then
    remembered: what is read depends on the file or loader alone, not on the splits. A file is
    read again when it changes (its size, modification time or inode), so a long-running
    process (an agent, the server) never goes on with a copy the file no longer holds."""
    return _read(replace(config, **_NEUTRAL), _file_state(config))  # type: ignore[arg-type]


def _file_state(config: OwnData) -> tuple[int, ...]:
    if not isinstance(config, FileData):
        return ()
    try:
        info = os.stat(config.path)
    except OSError:
        return ()  # reading it says what is wrong
    return (info.st_size, info.st_mtime_ns, info.st_ino, info.st_dev)


_NEUTRAL: dict[str, object] = {
    "task": "", "standardize": True, "val_fraction": 0.2, "test_fraction": 0.2, "seed": 0,
    "fingerprint": "", "shape": (), "classes": 0,
}  # fmt: skip


@functools.lru_cache(maxsize=2)
def _read(source: OwnData, state: tuple[int, ...]) -> tuple[Arrays, str]:
    if isinstance(source, LoaderData):
        arrays = _checked(_from_loader(source), "data.loader")
        spec: tuple[object, ...] | None = (source.loader, plain(source.args))
    else:
        arrays, spec = _checked(_from_file(source), "data.path"), None
    for a in arrays.values():
        a.flags.writeable = False  # shared by every run of this process
    return arrays, fingerprint(arrays, spec)


def fingerprint(arrays: Arrays, loader: tuple[object, ...] | None = None) -> str:
    """``sha256:`` and the hex digest of the arrays (name, dtype, shape, bytes), and of the
    loader's spec and arguments when they came from one."""
    digest = hashlib.sha256()
    if loader is not None:
        digest.update(json.dumps(loader, sort_keys=True).encode())
    for name in ARRAYS:
        if name in arrays:
            a = np.ascontiguousarray(arrays[name])
            digest.update(f"{name} {a.dtype.str} {a.shape}\n".encode())
            digest.update(a.data)
    return f"sha256:{digest.hexdigest()}"


def _from_file(config: FileData) -> Arrays:
    path = Path(config.path)
    key = "data.path"
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise ConfigError(key, f"no such file: {config.path!r}") from None
    except OSError as exc:
        raise ConfigError(key, f"cannot read {config.path!r}: {said(exc)}") from None
    if not stat.S_ISREG(info.st_mode):
        raise ConfigError(key, f"{config.path!r} is not a regular file")
    if info.st_size > MAX_FILE_BYTES:
        raise ConfigError(
            key, f"{config.path!r} has {info.st_size} bytes; at most {MAX_FILE_BYTES}"
        )
    suffix = path.suffix.lower()
    if suffix not in FORMATS:
        raise ConfigError(
            key, f"cannot read {suffix or 'no suffix'!r} files; allowed: {', '.join(FORMATS)}"
        )
    try:
        if suffix == ".npz":
            with np.load(path, allow_pickle=False) as archive:
                return {name: archive[name] for name in archive.files}
        if suffix == ".pt":
            return _from_pt(path)
        return _from_table(config, path, suffix)
    except ConfigError:
        raise
    except (Exception, SystemExit) as exc:  # a damaged or foreign file: one line, never a trace
        raise ConfigError(key, f"cannot read {config.path!r} as {suffix}: {said(exc)}") from None


def _from_pt(path: Path) -> Arrays:
    import torch  # deferred: only a .pt file needs it

    loaded = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(loaded, Mapping):
        raise ConfigError(
            "data.path", f"a .pt file must hold a dict of tensors, got {type(loaded).__name__}"
        )
    return _numpy_arrays(loaded, "data.path")


def _from_table(config: FileData, path: Path, suffix: str) -> Arrays:
    import pandas as pd  # deferred: costs a second

    if suffix == ".parquet":
        try:
            frame = pd.read_parquet(path)
        except ImportError:
            raise ConfigError(
                "data.path", "reading .parquet needs pyarrow: pip install pyarrow"
            ) from None
    else:
        frame = pd.read_csv(path)
    columns = [str(c) for c in frame.columns]
    if config.target not in columns:
        raise ConfigError(
            "data.target", f"no column {config.target!r}; the columns: {_listed(columns)}"
        )
    features = list(config.features) or [c for c in columns if c != config.target]
    for name in features:
        if name not in columns:
            raise ConfigError(
                "data.features", f"no column {name!r}; the columns: {_listed(columns)}"
            )
        if name == config.target:
            raise ConfigError("data.features", f"{name!r} is the target column")
    if not features:
        raise ConfigError("data.features", "no feature columns left beside the target")
    for name in [*features, config.target]:
        column = frame[name]
        if not (pd.api.types.is_numeric_dtype(column) or pd.api.types.is_bool_dtype(column)):
            key = "data.target" if name == config.target else "data.features"
            raise ConfigError(
                key, f"column {name!r} is not numeric ({frame[name].dtype}); encode it as numbers"
            )
    x = frame[features].to_numpy(dtype=np.float64)
    return {"x": x, "y": frame[config.target].to_numpy()}


def _listed(names: list[str]) -> str:
    shown = ", ".join(names[:20])
    return shown + (f" and {len(names) - 20} more" if len(names) > 20 else "")


def _numpy_arrays(mapping: Mapping[Any, Any], key: str) -> Arrays:
    out: Arrays = {}
    for name, value in mapping.items():
        if name not in ARRAYS:
            raise ConfigError(
                key, f"unexpected array {str(name)[:40]!r}; the names are: {', '.join(ARRAYS)}"
            )
        if hasattr(value, "detach") and hasattr(value, "cpu"):  # a torch tensor
            value = value.detach().cpu().numpy()
        if not isinstance(value, np.ndarray):
            raise ConfigError(
                key, f"{name!r} must be an array (numpy or torch), got {type(value).__name__}"
            )
        out[name] = value
    return out


def _from_loader(config: LoaderData) -> Arrays:
    key = "data.loader"
    function = import_function(config.loader, config.root, key)
    limit = loader_seconds()
    box: dict[str, Any] = {}

    def call() -> None:
        try:
            box["value"] = function(**config.args)
        except (Exception, SystemExit) as exc:
            box["error"] = exc

    thread = threading.Thread(target=call, name="dynl2-loader", daemon=True)
    thread.start()
    thread.join(limit)
    if thread.is_alive():
        raise ConfigError(
            key, f"{config.loader} did not return within {limit:g} s ({LOADER_SECONDS_ENV})"
        )
    if "error" in box:
        raise ConfigError(key, f"{config.loader} raised {said(box['error'])}")
    value = box.get("value")
    if not isinstance(value, Mapping):
        raise ConfigError(
            key,
            f"{config.loader} must return a mapping of arrays (x, y, ...), got "
            f"{type(value).__name__}",
        )
    return _numpy_arrays(value, key)


def loader_seconds() -> float:
    text = os.environ.get(LOADER_SECONDS_ENV, "")
    try:
        value = float(text) if text else LOADER_SECONDS
    except ValueError:
        value = LOADER_SECONDS
    return value if math.isfinite(value) and value > 0 else LOADER_SECONDS


def _checked(arrays: Arrays, key: str) -> Arrays:
    """The arrays, checked: what is there, shapes, types, finite values, size."""
    for name in ("x", "y"):
        if name not in arrays:
            have = ", ".join(sorted(arrays)) or "none"
            raise ConfigError(key, f"no array {name!r} (arrays found: {have})")
    for split in ("val", "test"):
        pair = [n for n in (f"x_{split}", f"y_{split}") if n in arrays]
        if len(pair) == 1:
            other = f"y_{split}" if pair[0].startswith("x") else f"x_{split}"
            raise ConfigError(key, f"{pair[0]!r} is given without {other!r}")
    total = 0
    for name, a in arrays.items():
        if a.dtype.kind not in "biuf":
            raise ConfigError(key, f"{name!r} holds {a.dtype} values; expected numbers")
        total += a.size
        if total > MAX_NUMBERS:
            raise ConfigError(
                key, f"more than {MAX_NUMBERS} numbers in all; the data lives on the device"
            )
        if a.dtype.kind == "f" and not np.isfinite(a).all():
            raise ConfigError(key, f"{name!r} holds NaN or infinite values")
    shape = arrays["x"].shape[1:]
    for prefix in ("", "_val", "_test"):
        x, y = arrays.get(f"x{prefix}"), arrays.get(f"y{prefix}")
        if x is None or y is None:
            continue
        if x.ndim < 2:
            raise ConfigError(
                key, f"'x{prefix}' must be [N, ...] with one example a row, got shape {x.shape}"
            )
        if x.shape[1:] != shape:
            raise ConfigError(
                key, f"'x{prefix}' has examples of shape {x.shape[1:]}, 'x' of shape {shape}"
            )
        if y.ndim == 2 and y.shape[1] == 1:
            y = arrays[f"y{prefix}"] = y[:, 0]
        if y.ndim != 1:
            raise ConfigError(
                key, f"'y{prefix}' must be [N] (a class or a target per example), got {y.shape}"
            )
        if len(x) != len(y):
            raise ConfigError(
                key, f"'x{prefix}' has {len(x)} examples but 'y{prefix}' has {len(y)}"
            )
    return arrays


# ---------------------------------------------------------------------------------------------
# Inspecting: what the data tells, checked before anything is written.


def inspect_data(config: OwnData) -> OwnData:
    """``config`` with its task, input shape, classes and fingerprint filled in from the data,
    after every check. A stored fingerprint that differs is refused, naming both."""
    key = "data.loader" if isinstance(config, LoaderData) else "data.path"
    arrays, found = read_arrays(config)
    if config.fingerprint and config.fingerprint != found:
        raise ConfigError(
            "data.fingerprint",
            f"the data differs from the experiment's: it hashes to {found}, the experiment "
            f"was run on {config.fingerprint}",
        )
    ys = [arrays[n] for n in ("y", "y_val", "y_test") if n in arrays]
    task = config.task or ("classification" if ys[0].dtype.kind in "biu" else "regression")
    assert task in TASKS
    classes = 0
    if task == "classification":
        classes = _classes(ys, key)
    sizes = split_sizes(config, arrays)
    for split, n, where in zip(
        ("training", "validation", "test"), sizes, _SPLIT_KEYS, strict=True
    ):
        if n < MIN_EVAL_EXAMPLES:
            raise ConfigError(
                where or key,
                f"the {split} split would have {n} examples; at least {MIN_EVAL_EXAMPLES}",
            )
    shape = tuple(int(n) for n in arrays["x"].shape[1:])
    try:
        return replace(config, task=task, classes=classes, shape=shape, fingerprint=found)
    except ConfigError as exc:
        raise ConfigError(f"data.{exc.key}", exc.detail) from None


_SPLIT_KEYS = ("", "data.val_fraction", "data.test_fraction")  # "": the data's own key


def _classes(ys: list[np.ndarray], key: str) -> int:
    for y in ys:
        if y.dtype.kind == "f" and not np.array_equal(y, np.round(y)):
            raise ConfigError(
                key, 'a classification needs whole-number labels 0..C-1; use task = "regression"'
            )
    labels = np.unique(np.concatenate([y.astype(np.int64) for y in ys]))
    low, high = int(labels[0]), int(labels[-1])
    if low < 0:
        raise ConfigError(key, f"labels must be 0..C-1, got {low}")
    if len(labels) < 2:
        raise ConfigError(key, f"a classification needs at least 2 classes, got only {low}")
    if high >= 100_000:
        raise ConfigError(key, f"labels must be 0..C-1 with C at most 100000, got {high}")
    if len(labels) != high + 1:
        missing = sorted(set(range(high + 1)) - {int(v) for v in labels})
        raise ConfigError(
            key,
            f"labels must be 0..C-1 (C = {high + 1}), but class {missing[0]} never appears"
            + (" (labels counted from 1?)" if missing == [0] else ""),
        )
    return high + 1


def split_sizes(config: OwnData, arrays: Mapping[str, np.ndarray]) -> tuple[int, int, int]:
    """Examples in the training, validation and test splits."""
    n = len(arrays["x"])
    n_test = len(arrays["x_test"]) if "x_test" in arrays else round(config.test_fraction * n)
    n_val = len(arrays["x_val"]) if "x_val" in arrays else round(config.val_fraction * n)
    carved = ("x_test" not in arrays) * n_test + ("x_val" not in arrays) * n_val
    return n - carved, n_val, n_test
