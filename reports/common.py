"""Small helpers every section of a report reads with: numbers, plurals, search names."""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the helpers take frames, but one arm's result (reports.arms) takes none
    import pandas as pd  # type: ignore[import-untyped, unused-ignore]

__all__ = [
    "RESULT_ATTR",
    "duration_text",
    "finite",
    "kv_text",
    "label",
    "mean_seconds",
    "param_lines",
    "plural",
    "value_text",
]

RESULT_ATTR = "dynl2_result"  # the trial attribute dynl2's workers set: complete, pruned, ...


def finite(value: object) -> float | None:
    """``value`` as a float, or None when it is missing, NaN or infinite."""
    if value is None or _is_na(value):
        return None
    number = float(value)  # type: ignore[arg-type]
    return number if math.isfinite(number) else None


def _is_na(value: object) -> bool:
    """Whether ``value`` is pandas' missing value, which exists only once pandas is imported:
    asked without importing it."""
    pandas = sys.modules.get("pandas")
    return pandas is not None and value is pandas.NA


def mean_seconds(values: pd.Series) -> float | None:
    """The mean of the finite, non-negative timings in ``values``; None when there is none."""
    numbers = [x for x in (finite(v) for v in values) if x is not None and x >= 0]
    return math.fsum(numbers) / len(numbers) if numbers else None


def plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def label(arm: str, replicate: int, replicates: int) -> str:
    """A search as the report names it: the arm, or ``ARM/R`` with more than one replicate
    (as ``dynl2 status`` does, ``study.search.studies.label``)."""
    return arm if replicates == 1 else f"{arm}/{replicate}"


_UNITS: tuple[tuple[float, str, Callable[[float], str]], ...] = (
    (86400.0, "days", lambda x: f"{x:.1f}"),
    (3600.0, "h", lambda x: f"{x:.1f}"),
    (60.0, "min", lambda x: f"{x:.0f}"),
)


def duration_text(seconds: float) -> str:
    """``45 s``, ``3 min``, ``2.5 h``, ``1.2 days``."""
    for size, name, shown in _UNITS:
        if seconds >= 2 * size or (size == 60.0 and seconds >= size):
            return f"{shown(seconds / size)} {name}"
    return f"{seconds:.0f} s"


def value_text(value: Any) -> str:
    """A parameter's value as the report writes it: floats to 4 significant digits."""
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, Mapping):
        return "{" + kv_text(value) + "}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(value_text(v) for v in value) + "]"
    return str(value)


def kv_text(mapping: Mapping[str, Any]) -> str:
    """``key=value, ...`` as plain text (a template escapes it)."""
    return ", ".join(f"{k}={value_text(v)}" for k, v in mapping.items())


def param_lines(mapping: Mapping[str, Any]) -> list[str]:
    """``key=value``, one a line, rounded as the report rounds (:func:`value_text`)."""
    return [f"{k}={value_text(v)}" for k, v in mapping.items()]
