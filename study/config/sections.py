"""From a parsed TOML document to the fields of :class:`study.config.experiment.ExperimentConfig`.

This module only reshapes. It checks what exists in the file alone: sections and setting names
that are no field, a section or an arm that is not a table, what is missing. Every value goes,
as written, to the frozen dataclass that owns its rule (:class:`~study.config.arms.ArmConfig`,
:class:`~study.config.search.SearchConfig`, ...), which validates it once; a table among a
section's or an arm's settings is a range (:class:`~study.config.ranges.Range`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import fields
from typing import Any

from study.config.arms import NAME_RULE, ArmConfig
from study.config.reader import ExperimentConfigError
from study.config.search import SEARCH_KEYS, EvaluateConfig, SearchConfig
from trainers._fields import describe
from trainers.schemes import SCHEMES

SECTIONS = ("experiment", "data", "model", "train", "search", "arms", "evaluate")


def experiment_fields(mapping: Mapping[str, Any]) -> dict[str, Any]:
    """``ExperimentConfig``'s fields, by name, from a parsed TOML document (or
    ``ExperimentConfig.to_dict``'s output)."""
    if not isinstance(mapping, Mapping):
        raise ExperimentConfigError("config", f"expected a table, got {describe(mapping)}")
    _no_unknown("", mapping, SECTIONS, "section")
    if "experiment" not in mapping:
        raise ExperimentConfigError(
            "experiment", 'missing; start the file with [experiment] and name = "..."'
        )
    experiment = _section(mapping, "experiment")
    _no_unknown("experiment", experiment, ("name", "seed"), "setting")
    if "name" not in experiment:
        raise ExperimentConfigError("experiment.name", f"missing; a name is {NAME_RULE}")
    train_fixed, train_ranges = _split(_section(mapping, "train"))
    return {
        "name": experiment["name"],
        "seed": experiment.get("seed", 0),
        "data": _section(mapping, "data"),
        "model": _section(mapping, "model"),
        "train_fixed": train_fixed,
        "train_ranges": train_ranges,
        "search": SearchConfig(**_settings(mapping, "search", SEARCH_KEYS)),
        "arms": _arms(mapping),
        "evaluate": EvaluateConfig(
            **_settings(mapping, "evaluate", tuple(f.name for f in fields(EvaluateConfig)))
        ),
    }


def _arms(mapping: Mapping[str, Any]) -> tuple[ArmConfig, ...]:
    if "arms" not in mapping:
        raise ExperimentConfigError(
            "arms", 'missing; add at least one arm, e.g. [arms.dynamic] with scheme = "dynamic"'
        )
    arms = mapping["arms"]
    if not isinstance(arms, Mapping):
        raise ExperimentConfigError(
            "arms", f"expected tables like [arms.dynamic], got {describe(arms)}"
        )
    out = []
    for name, table in arms.items():
        key = f"arms.{name}"
        if not isinstance(table, Mapping):
            raise ExperimentConfigError(
                key, f"expected a table of settings, got {describe(table)}"
            )
        if "scheme" not in table:
            raise ExperimentConfigError(
                f"{key}.scheme", f"missing; every arm names its scheme: {', '.join(SCHEMES)}"
            )
        fixed, ranges = _split({k: v for k, v in table.items() if k != "scheme"})
        out.append(ArmConfig(name, table["scheme"], fixed, ranges))
    return tuple(out)


def _split(settings: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Fixed values, and ranges: the settings written as tables (``{ low = 1, high = 4 }``)."""
    fixed = {k: v for k, v in settings.items() if not isinstance(v, Mapping)}
    return fixed, {k: v for k, v in settings.items() if isinstance(v, Mapping)}


def _section(mapping: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    value = mapping.get(name, {})
    if not isinstance(value, Mapping):
        raise ExperimentConfigError(
            name, f"expected a table [{name}] of settings, got {describe(value)}"
        )
    return value


def _settings(mapping: Mapping[str, Any], name: str, keys: tuple[str, ...]) -> dict[str, Any]:
    table = _section(mapping, name)
    _no_unknown(name, table, keys, "setting")
    return dict(table)


def _no_unknown(
    prefix: str, table: Mapping[str, Any], allowed: tuple[str, ...], what: str
) -> None:
    for key in table:
        if key not in allowed:
            where = f"[{prefix}] has" if prefix else "the config has"
            key_name = f"{prefix}.{key}" if prefix else str(key)
            raise ExperimentConfigError(
                key_name, f"{where} no {what} {describe(key)}; allowed: {', '.join(allowed)}"
            )
