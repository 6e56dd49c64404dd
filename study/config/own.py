"""A user's own data, model and loop in an experiment config: where their files and code are,
and the checks that read them.

A config names code or files in three places: ``[data] path`` or ``loader``, ``[model]
factory`` and ``[train] loop``. :func:`resolve_paths` makes them independent of the working
directory (a relative ``path`` and every code ``root`` are relative to the config file, whose
folder is where the code is imported from unless ``root`` says otherwise), so a worker started
anywhere reads the same files. :func:`inspected` reads the data once, checks it, and stores what
it tells (task, input shape, classes, fingerprint) in the config, and builds the model once on
two examples: every mistake is one :class:`ExperimentConfigError` before anything is written.
:func:`require_code` is what a process that reads a stored experiment (a worker, an evaluation,
an agent, a resume) checks before it claims anything: the code imports here and the data hashes
to the stored fingerprint.

Reading data imports numpy (and pandas for a table, torch for a ``.pt`` file or a model); a
config without any of the three keys costs nothing here.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Mapping, Sequence
from typing import Any

from study.config.reader import ExperimentConfigError
from trainers.data import FileData, LoaderData, data_from_dict, data_to_dict
from trainers.errors import ConfigError
from trainers.models import FactoryModel, model_from_dict

CODE_KEYS = ("data.loader", "model.factory", "train.loop")


def resolve_paths(document: Mapping[str, Any], folder: str) -> dict[str, Any]:
    """A copy of a parsed config with ``data.path`` and the code roots made absolute against
    ``folder`` (the config file's); a root defaults to ``folder`` itself where code is named."""
    doc: dict[str, Any] = copy.deepcopy(dict(document))
    folder = os.path.abspath(folder)
    data, model, train = (doc.get(k) for k in ("data", "model", "train"))
    if isinstance(data, dict):
        if isinstance(data.get("path"), str) and data["path"]:
            data["path"] = _absolute(data["path"], folder)
        if "loader" in data:
            data["root"] = _root(data.get("root"), folder)
    if isinstance(model, dict) and "factory" in model:
        model["root"] = _root(model.get("root"), folder)
    if isinstance(train, dict) and "loop" in train:
        train["loop_root"] = _root(train.get("loop_root"), folder)
    return doc


def _absolute(path: str, folder: str) -> str:
    if "\x00" in path:
        return path  # refused by the config's own check, with its key
    return os.path.normpath(os.path.join(folder, os.path.expanduser(path)))


def _root(root: object, folder: str) -> object:
    if root is None or root == "":
        return folder
    return _absolute(root, folder) if isinstance(root, str) else root


def code_named(config: Mapping[str, Any]) -> list[str]:
    """The "module:function" names a config (``ExperimentConfig.to_dict()`` or a TOML
    document) asks every worker to run, in ``CODE_KEYS`` order."""
    found = []
    for key in CODE_KEYS:
        section, _, name = key.partition(".")
        table = config.get(section)
        if isinstance(table, Mapping) and isinstance(table.get(name), str):
            found.append(table[name])
    return found


def module_allowed(spec: str, prefixes: Sequence[str]) -> bool:
    """Whether the module of ``spec`` ("module:function") is one of ``prefixes`` or lies
    below one (``lab`` allows ``lab`` and ``lab.models``, not ``laboratory``)."""
    module = spec.partition(":")[0]
    return any(module == p or module.startswith(p + ".") for p in prefixes)


def code_problem(config: Mapping[str, Any], prefixes: Sequence[str]) -> str | None:
    """Why a config's code may not run here (a module outside ``prefixes``, the
    ``--allow-code`` list), or None."""
    outside = [spec for spec in code_named(config) if not module_allowed(spec, prefixes)]
    if not outside:
        return None
    allowed = ", ".join(prefixes) if prefixes else "none"
    return (
        f"it runs code ({', '.join(outside)}) from outside the modules allowed here "
        f"(--allow-code: {allowed})"
    )


def roots_named(config: Mapping[str, Any]) -> dict[str, str]:
    """The folders a config imports its code from, by TOML key (``data.root``, ...)."""
    found = {}
    for section, name in (("data", "root"), ("model", "root"), ("train", "loop_root")):
        table = config.get(section)
        if isinstance(table, Mapping) and isinstance(table.get(name), str):
            found[f"{section}.{name}"] = table[name]
    return found


def files_named(config: Mapping[str, Any]) -> list[str]:
    """The data file a config reads, if any."""
    data = config.get("data")
    path = data.get("path") if isinstance(data, Mapping) else None
    return [path] if isinstance(path, str) else []


def own_data(data: Mapping[str, object]) -> bool:
    """Whether a config's ``[data]`` is the user's own (a file or a loader)."""
    return "path" in data or "loader" in data


def inspected_data(data: Mapping[str, object]) -> dict[str, object]:
    """``[data]`` with what reading the data tells filled in (task, shape, classes,
    fingerprint), after every check of the data; a stored fingerprint that differs is
    refused, naming both."""
    config = _trainer(lambda: data_from_dict(data, "data"))
    assert isinstance(config, FileData | LoaderData)
    from trainers.own import inspect_data  # numpy, pandas: only for a user's data

    filled: dict[str, object] = _trainer(lambda: data_to_dict(inspect_data(config)))
    return filled


def check_model(model: Mapping[str, object], data: Mapping[str, object]) -> None:
    """Build a factory model once and run it on two examples of the data (a model with
    searched arguments at both ends of their ranges)."""
    if "factory" not in model:
        return
    args = model.get("args")
    ranges = {}
    if isinstance(args, Mapping):
        ranges = {k: v for k, v in args.items() if isinstance(v, Mapping) and "low" in v}
    if ranges:
        assert isinstance(args, Mapping)
        for end in ("low", "high"):
            at = {k: r[end] for k, r in ranges.items()}
            _check_one({**model, "args": {**args, **at}}, data)
        return
    _check_one(model, data)


def _check_one(model: Mapping[str, object], data: Mapping[str, object]) -> None:
    config = _trainer(lambda: model_from_dict(model, "model"))
    if not isinstance(config, FactoryModel):
        return
    from trainers.networks import check_model as check  # imports torch, the user's module

    data_config = _trainer(lambda: data_from_dict(data, "data"))
    if isinstance(data_config, FileData | LoaderData):
        shape, n_out = data_config.shape, data_config.n_outputs
        _trainer(lambda: check(config, data_config, shape, n_out))
    else:
        n_in, n_out = data_config.n_inputs, data_config.n_outputs
        _trainer(lambda: check(config, None, (n_in,), n_out))


def check_loop(train: Mapping[str, object]) -> None:
    """Import a ``[train] loop`` (its module must import here, its function exist)."""
    loop, root = train.get("loop"), train.get("loop_root", "")
    if not isinstance(loop, str) or not loop:
        return
    from trainers.own import import_function  # imports the user's module

    _trainer(lambda: import_function(loop, str(root or ""), "train.loop"))


def _trainer(make: Any) -> Any:
    try:
        return make()
    except ConfigError as exc:
        raise ExperimentConfigError(exc.key, exc.detail) from None
