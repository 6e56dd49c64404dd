"""Small helpers every section of a report reads with: numbers, plurals, search names."""

from __future__ import annotations

import math

import pandas as pd  # type: ignore[import-untyped, unused-ignore]

__all__ = ["RESULT_ATTR", "finite", "label", "plural"]

RESULT_ATTR = "dynl2_result"  # the trial attribute dynl2's workers set: complete, pruned, ...


def finite(value: object) -> float | None:
    """``value`` as a float, or None when it is missing, NaN or infinite."""
    if value is None or value is pd.NA:
        return None
    number = float(value)  # type: ignore[arg-type]
    return number if math.isfinite(number) else None


def plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def label(arm: str, replicate: int, replicates: int) -> str:
    """A search as the report names it: the arm, or ``ARM/R`` with more than one replicate
    (as ``dynl2 status`` does, ``study.search.studies.label``)."""
    return arm if replicates == 1 else f"{arm}/{replicate}"
