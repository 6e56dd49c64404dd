"""Typed parameters: the fixed values and searched ranges an experiment gives a trainer field.

A setting's type is the trainer dataclass's own annotation (:func:`field_types`), and a fixed
value is converted by the trainer's own :func:`trainers._fields.convert`; the study adds only
what a config file needs before that: one message for anything that is not a finite, normal
number (:func:`number`), and :class:`Range`, the table ``{low, high, log, step}`` that Optuna
searches. :func:`split_params` applies both to a table of settings (``[train]``, an arm) and
returns its canonical fixed values and ranges; :func:`distribution` is how Optuna searches a
range.
"""

from __future__ import annotations

import math
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from study.config.reader import SMALLEST_NORMAL, ExperimentConfigError, is_subnormal
from trainers._fields import convert, describe
from trainers.errors import ConfigError

if TYPE_CHECKING:
    from optuna.distributions import BaseDistribution

MAX_STEPS = 1_000_000_000  # grid points of a range with a step (Optuna counts them in Decimal)
_SCALARS = (bool, int, float, str)  # the field types a config file may set

# What a table's unknown setting raises: (its TOML key, its name) -> the error.
Unknown = Callable[[str, str], ExperimentConfigError]


@dataclass(frozen=True)
class Range:
    """A range Optuna searches: ``trial.suggest_float`` or, when ``integer``, ``suggest_int``."""

    low: float  # smallest value (included)
    high: float  # largest value (included)
    log: bool = False  # sample uniformly in log space (needs low > 0)
    step: float | None = None  # grid spacing from low; None = continuous (integers: 1)
    integer: bool = False  # whole numbers only (a TOML range whose low and high are integers)

    def __post_init__(self) -> None:
        problem = _range_problem(self)
        if problem is not None:
            raise ExperimentConfigError("range", problem)

    def to_dict(self) -> dict[str, object]:
        """``{low, high, log[, step]}``; integer ranges keep integer bounds, so
        :meth:`from_dict` restores ``integer``."""
        out: dict[str, object] = {"low": self.low, "high": self.high, "log": self.log}
        if self.step is not None:
            out["step"] = self.step
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, object], key: str = "range") -> Range:
        """Parse ``{low, high, log = false, step = optional}``; errors name ``key``."""
        if not isinstance(data, Mapping):
            raise ExperimentConfigError(key, f"expected a range table, got {describe(data)}")
        allowed = ("low", "high", "log", "step")
        for name in data:
            if name not in allowed:
                raise ExperimentConfigError(
                    f"{key}.{name}",
                    f"a range has no setting {name!r}; it takes {', '.join(allowed)}",
                )
        for name in ("low", "high"):
            if name not in data:
                raise ExperimentConfigError(
                    f"{key}.{name}",
                    "missing; a range needs low and high, e.g. { low = 1e-4, high = 1.0, "
                    "log = true }",
                )
        low = number(f"{key}.low", data["low"])
        high = number(f"{key}.high", data["high"])
        log = data.get("log", False)
        if not isinstance(log, bool):
            raise ExperimentConfigError(f"{key}.log", f"expected true or false, got {log!r}")
        step = data.get("step")
        if step is not None:
            step = number(f"{key}.step", step)
        integer = isinstance(low, int) and isinstance(high, int)
        if integer and isinstance(step, float):
            if not step.is_integer():
                raise ExperimentConfigError(
                    f"{key}.step", f"an integer range needs a whole step, got {step!r}"
                )
            step = int(step)
        if not integer:
            low, high = float(low), float(high)
            step = None if step is None else float(step)
        return _rekeyed(key, lambda: cls(low, high, log, step, integer))


def distribution(r: Range) -> BaseDistribution:
    """The Optuna distribution that searches ``r``: what each arm's study is created with, and
    what validation builds, so that whatever Optuna refuses is refused before anything is
    written."""
    # Imported here: Optuna takes a tenth of a second to import, and the config is read by
    # verbs that never search.
    from optuna.distributions import FloatDistribution, IntDistribution

    if r.integer:
        return IntDistribution(int(r.low), int(r.high), log=r.log, step=int(r.step or 1))
    return FloatDistribution(r.low, r.high, log=r.log, step=r.step)


def field_types(cls: type, names: Iterable[str]) -> Mapping[str, type]:
    """The scalar type (bool, int, float or str) of each named field of dataclass ``cls``, read
    from its annotations. ``X | None`` counts as ``X``: TOML has no null, and an absent
    setting keeps the trainer's default. ``float | Literal["lr"]`` counts as ``float``: its
    words are :func:`field_words`'."""
    hints = typing.get_type_hints(cls)
    out: dict[str, type] = {}
    for name in names:
        options = [
            a
            for a in typing.get_args(hints[name])
            if a is not type(None) and typing.get_origin(a) is not typing.Literal
        ]
        kind = options[0] if len(options) == 1 else hints[name]
        assert kind in _SCALARS, (cls, name, hints[name])  # the trainers' settings are scalars
        out[name] = kind
    return types.MappingProxyType(out)


# What a word a numeric setting takes in place of a number means, for its one-line errors.
WORD_MEANINGS = types.MappingProxyType({"lr": "the learning rate"})


def field_words(cls: type, names: Iterable[str]) -> Mapping[str, tuple[str, ...]]:
    """The words a numeric field of ``cls`` takes in place of a number (``alpha = "lr"``: the
    ``Literal`` of its annotation), for the fields that take any."""
    hints = typing.get_type_hints(cls)
    out: dict[str, tuple[str, ...]] = {}
    for name in names:
        words = tuple(
            str(word)
            for a in typing.get_args(hints[name])
            if typing.get_origin(a) is typing.Literal
            for word in typing.get_args(a)
        )
        if words:
            out[name] = words
    return types.MappingProxyType(out)


def words_text(words: Iterable[str]) -> str:
    """``"lr" (the learning rate)``: the words a setting takes, for an error's line."""
    return " or ".join(
        f'"{w}" ({WORD_MEANINGS[w]})' if w in WORD_MEANINGS else f'"{w}"' for w in words
    )


def split_params(
    prefix: str,
    items: Mapping[str, object],
    kinds: Mapping[str, type],
    unknown: Unknown,
    words: Mapping[str, tuple[str, ...]] | None = None,
) -> tuple[dict[str, object], dict[str, Range]]:
    """Canonical fixed values and ranges (a :class:`Range` or its table) of the settings
    ``items``, each of the type ``kinds`` gives; a name ``kinds`` lacks raises ``unknown``.
    A numeric setting that ``words`` lists also takes those words as fixed values."""
    fixed: dict[str, object] = {}
    ranges: dict[str, Range] = {}
    for name, value in items.items():
        key = f"{prefix}.{name}"
        if name not in kinds:
            raise unknown(key, name)
        kind = kinds[name]
        allowed = (words or {}).get(name, ())
        if allowed and isinstance(value, str):
            if value not in allowed:
                raise ExperimentConfigError(
                    key,
                    f"expected a number, a range {{ low, high }} or {words_text(allowed)}, "
                    f"got {describe(value)}",
                )
            fixed[name] = value
            continue
        if isinstance(value, (Range, Mapping)):
            if kind not in (int, float):
                wanted = "true or false" if kind is bool else "a string"
                raise ExperimentConfigError(
                    key, f"only numeric settings take a range; {name} takes {wanted}"
                )
            rng = value if isinstance(value, Range) else Range.from_dict(value, key)
            ranges[name] = _as_kind(key, name, rng, kind)
        else:
            fixed[name] = typed_value(key, value, kind)
    return fixed, ranges


def typed_value(key: str, value: object, kind: type) -> object:
    """``value`` as a setting of type ``kind``, converted as the trainer converts it."""
    if kind in (int, float):
        # First the file's own rules for numbers: "ten" for epochs is "not a number" (not
        # "not a whole number", as the trainer would say), and a subnormal float is refused.
        number(key, value)
    try:
        return convert(key, value, kind)
    except ConfigError as exc:
        raise ExperimentConfigError(exc.key, exc.detail) from None


def bounded(key: str, value: object, low: int, high: int) -> int:
    """``value`` as a whole number from ``low`` to ``high``."""
    whole = typed_value(key, value, int)
    assert isinstance(whole, int)
    if not low <= whole <= high:
        raise ExperimentConfigError(key, f"must be between {low} and {high}, got {whole!r}")
    return whole


def number(key: str, value: object) -> int | float:
    """``value`` if it is a finite number that is not subnormal (dynl2 reads those as 0)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ExperimentConfigError(key, f"expected a number, got {describe(value)}")
    if not math.isfinite(value):
        raise ExperimentConfigError(key, f"expected a finite number, got {value!r}")
    if isinstance(value, float) and is_subnormal(value):
        raise ExperimentConfigError(
            key,
            f"{value!r} is below the smallest normal float ({SMALLEST_NORMAL!r}); dynl2 treats "
            "such numbers as 0, so write 0 or a larger number",
        )
    return value


def _as_kind(key: str, name: str, rng: Range, kind: type) -> Range:
    """Integer bounds on a float setting make a float range; whole float bounds on an integer
    setting make an integer range; fractional bounds on an integer setting are an error."""
    if kind is float:
        step = None if rng.step is None else float(rng.step)
        return _rekeyed(key, lambda: Range(float(rng.low), float(rng.high), rng.log, step))
    if rng.integer:
        return rng
    bounds = [rng.low, rng.high] + ([] if rng.step is None else [rng.step])
    if not all(float(b).is_integer() for b in bounds):
        raise ExperimentConfigError(
            key,
            f"{name} takes whole numbers, so its range needs whole low, high (and step), "
            f"got low={rng.low!r}, high={rng.high!r}",
        )
    step = None if rng.step is None else int(rng.step)
    return _rekeyed(key, lambda: Range(int(rng.low), int(rng.high), rng.log, step, True))


def _rekeyed(key: str, make: Callable[[], Range]) -> Range:
    """``make()``, its error keyed by the range's TOML key instead of ``range``."""
    try:
        return make()
    except ExperimentConfigError as exc:
        raise ExperimentConfigError(key, exc.detail) from None


def _range_problem(r: Range) -> str | None:
    """What is wrong with a range, or None."""
    for name in ("low", "high", "step"):
        value = getattr(r, name)
        if value is None and name == "step":
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return f"{name} must be a number, got {describe(value)}"
        if not math.isfinite(value):
            return f"{name} must be a finite number, got {value!r}"
        if isinstance(value, float) and is_subnormal(value):
            return f"{name} {value!r} is below the smallest normal float, which dynl2 reads as 0"
        if r.integer and not isinstance(value, int):
            return f"an integer range needs a whole {name}, got {value!r}"
    if not isinstance(r.log, bool):
        return f"log must be true or false, got {describe(r.log)}"
    if not r.low < r.high:
        return f"low must be below high, got low={r.low!r}, high={r.high!r}"
    if r.log and r.low <= 0:
        return f"a log range needs low > 0, got low={r.low!r}"
    if r.step is not None:
        if r.log:
            return "step cannot be combined with log = true"
        if not r.step > 0:
            return f"step must be > 0, got {r.step!r}"
        count = (r.high - r.low) / r.step
        if not count <= MAX_STEPS:
            return (
                f"step {r.step!r} makes {count:.3g} steps from low to high; at most {MAX_STEPS} "
                "(leave step out for a continuous range)"
            )
        if abs(count - round(count)) > 1e-9 * max(1.0, count):
            return (
                f"high - low must be a whole number of steps, got low={r.low!r}, "
                f"high={r.high!r}, step={r.step!r}"
            )
    return None
