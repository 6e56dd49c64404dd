"""One arm of an experiment: a regularization scheme, its fixed settings and searched ranges.

An arm's settings are its scheme's own fields (:data:`trainers.schemes.SCHEMES`), typed by
their annotations: the scheme's parameters, which a study may search, and ``apply`` and
``biases``, which it holds fixed.
"""

from __future__ import annotations

import functools
import json
import re
import types
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from study.config.ranges import Range, Unknown, field_types, field_words, split_params
from study.config.reader import ExperimentConfigError
from trainers._fields import describe
from trainers.schemes import SCHEMES, scheme_parameters

NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
NAME_RULE = "1 to 64 letters (A-Z, a-z), digits, '-' or '_'"


@dataclass(frozen=True)
class ArmConfig:
    """One arm: a regularization scheme with fixed settings and searched ranges. Validated and
    made canonical here, with full TOML keys (``arms.dynamic.floor``)."""

    name: str  # letters, digits, '-', '_' (1 to 64): also the Optuna study's suffix
    scheme: str  # a trainers scheme (trainers.SCHEMES)
    fixed: Mapping[str, object]  # scheme settings held constant (read-only after init)
    # Scheme parameters searched (Optuna names: the bare field), each a Range or its table
    # {low, high, ...}; read-only Ranges after init.
    ranges: Mapping[str, Range]

    def __post_init__(self) -> None:
        check_name("arms", self.name, "arm name")
        prefix = f"arms.{self.name}"
        scheme = _scheme_name(f"{prefix}.scheme", self.scheme)
        both = sorted(set(self.fixed) & set(self.ranges))
        if both:
            raise ExperimentConfigError(
                f"{prefix}.{both[0]}", "given both as a fixed value and as a range"
            )
        fixed, ranges = split_params(
            prefix,
            {**self.fixed, **self.ranges},
            scheme_fields(scheme),
            _not_taken(scheme),
            scheme_words(scheme),
        )
        object.__setattr__(self, "fixed", types.MappingProxyType(fixed))
        object.__setattr__(self, "ranges", types.MappingProxyType(ranges))
        _check_floor_ceiling(self)

    def __hash__(self) -> int:  # the mappings are read-only views, so hash the content
        return hash(json.dumps(self.to_dict(), sort_keys=True))

    def to_dict(self) -> dict[str, object]:
        return {
            "scheme": self.scheme,
            **self.fixed,
            **{name: r.to_dict() for name, r in self.ranges.items()},
        }


@functools.cache
def scheme_fields(scheme: str) -> Mapping[str, type]:
    """A scheme's settings and their types: its parameters (searchable), then its fixed-only
    settings (apply, biases, and a schedule's shape)."""
    cls = SCHEMES[scheme]
    return field_types(cls, (*scheme_parameters(scheme), *cls.settings))


@functools.cache
def scheme_words(scheme: str) -> Mapping[str, tuple[str, ...]]:
    """The words a scheme's numeric settings take in place of a number: ``alpha = "lr"``."""
    cls = SCHEMES[scheme]
    return field_words(cls, (*scheme_parameters(scheme), *cls.settings))


def check_name(key: str, value: object, what: str) -> None:
    """Refuse a name that is not :data:`NAME_RULE`: names become study names and file names."""
    if not isinstance(value, str) or not NAME.fullmatch(value):
        raise ExperimentConfigError(key, f"an {what} is {NAME_RULE}, got {describe(value)}")


def _scheme_name(key: str, value: object) -> str:
    if not isinstance(value, str) or value not in SCHEMES:
        raise ExperimentConfigError(
            key, f"unknown scheme {describe(value)}; allowed: {', '.join(SCHEMES)}"
        )
    return value


def _not_taken(scheme: str) -> Unknown:
    def error(key: str, name: str) -> ExperimentConfigError:
        takes = ", ".join(scheme_fields(scheme))
        return ExperimentConfigError(
            key, f"scheme {scheme!r} does not take {describe(name)}; it takes {takes}"
        )

    return error


def _check_floor_ceiling(arm: ArmConfig) -> None:
    """Reject any arm where some sampled floor could exceed some sampled ceiling."""
    settings = scheme_fields(arm.scheme)
    if "floor" not in settings or "ceiling" not in settings:
        return

    def extreme(name: str, end: Literal["low", "high"]) -> tuple[float | None, str]:
        if name in arm.ranges:
            value = getattr(arm.ranges[name], end)
            return float(value), f"{name}'s {end} {value!r}"
        if name in arm.fixed:
            value = arm.fixed[name]
            assert isinstance(value, float)  # typed by split_params
            return value, f"{name} = {value!r}"
        default = getattr(SCHEMES[arm.scheme], name)  # a dataclass field's default
        return default, f"the default {name} {default!r}"

    top_floor, floor_text = extreme("floor", "high")
    bottom_ceiling, ceiling_text = extreme("ceiling", "low")
    if top_floor is None or bottom_ceiling is None or top_floor <= bottom_ceiling:
        return
    given = "floor" if ("floor" in arm.fixed or "floor" in arm.ranges) else "ceiling"
    raise ExperimentConfigError(
        f"arms.{arm.name}.{given}",
        f"floor must never exceed ceiling, but {floor_text} is above {ceiling_text}",
    )
