"""Strict conversion of plain mappings (TOML, JSON, CLI flags) into frozen config dataclasses.

Unknown keys and wrong types are rejected with the key's full name, e.g.
``scheme.alpha: expected a number, got 'abc'``. Each config class validates its own ranges in
``__post_init__``.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import types
import typing
from collections.abc import Mapping
from typing import Any, TypeVar

from .errors import ConfigError

T = TypeVar("T")


def describe(value: object) -> str:
    """``repr(value)`` cut to 60 characters: a hostile value is never echoed in full."""
    try:
        text = repr(value)
    except ValueError:  # an integer past Python's 4300-digit limit for str()
        return f"an integer of {value.bit_length()} bits" if isinstance(value, int) else "?"
    return text if len(text) <= 60 else text[:57] + "..."


def convert(key: str, value: object, annotation: Any) -> object:
    """Check ``value`` against a field annotation and return it in canonical form."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(annotation)
        if value is None and type(None) in options:
            return None
        inner = [o for o in options if o is not type(None)]
        if len(inner) == 1:
            return convert(key, value, inner[0])
        literal = [o for o in inner if typing.get_origin(o) is typing.Literal]
        numeric = [o for o in inner if o not in literal]
        if literal and numeric in ([float], [int]):  # float | Literal["lr"]: a number or a word
            words = [w for o in literal for w in typing.get_args(o)]
            if isinstance(value, str) and value in words:
                return value
            if isinstance(value, str | bool) or not isinstance(value, int | float):
                allowed = " or ".join(f'"{w}"' for w in words)
                raise ConfigError(key, f"expected a number or {allowed}, got {describe(value)}")
            return convert(key, value, numeric[0])
        raise TypeError(f"unsupported annotation {annotation!r}")  # internal: never user input
    if annotation is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(key, f"expected true or false, got {describe(value)}")
    if annotation is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise ConfigError(key, f"expected a whole number, got {describe(value)}")
    if annotation is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            number = float(value)
            if not math.isfinite(number):
                raise ConfigError(key, f"expected a finite number, got {describe(value)}")
            return number
        raise ConfigError(key, f"expected a number, got {describe(value)}")
    if annotation is str:
        if isinstance(value, str):
            return value
        raise ConfigError(key, f"expected a string, got {describe(value)}")
    if origin is tuple:
        (item_type, _ellipsis) = typing.get_args(annotation)
        if isinstance(value, (list, tuple)):
            return tuple(convert(f"{key}[{i}]", v, item_type) for i, v in enumerate(value))
        raise ConfigError(key, f"expected a list, got {describe(value)}")
    raise TypeError(f"unsupported annotation {annotation!r}")  # internal: never user input


@functools.cache
def _fields_of(cls: type) -> tuple[dict[str, Any], list[str]]:
    """A config class's type hints and its init fields' names, worked out once per class
    (``typing.get_type_hints`` takes some 0.7 ms; a fused group builds a config per member)."""
    return typing.get_type_hints(cls), [f.name for f in dataclasses.fields(cls) if f.init]


def from_mapping(cls: type[T], data: Mapping[str, object], prefix: str, skip: str = "") -> T:
    """Build dataclass ``cls`` from ``data``; ``skip`` names a discriminator key to ignore."""
    if not isinstance(data, Mapping):
        raise ConfigError(prefix, f"expected a table of settings, got {describe(data)}")
    assert dataclasses.is_dataclass(cls)
    hints, names = _fields_of(cls)
    unknown = [k for k in data if k != skip and k not in names]
    if unknown:
        owner = getattr(cls, "name", prefix)
        allowed = ", ".join(names) if names else "none"
        raise ConfigError(
            _join(prefix, str(unknown[0])),
            f"{owner!r} has no setting {unknown[0]!r}; its settings: {allowed}",
        )
    kwargs = {k: convert(_join(prefix, k), v, hints[k]) for k, v in data.items() if k != skip}
    try:
        return cls(**kwargs)
    except ConfigError as exc:
        raise ConfigError(_join(prefix, exc.key), exc.detail) from None


def from_tagged(
    registry: Mapping[str, type[T]],
    data: Mapping[str, object],
    prefix: str,
    tag: str,
    default: str,
    what: str,
) -> T:
    """Build the config class that ``data[tag]`` names in ``registry`` (a dataset, a model, a
    scheme), from the rest of ``data``; an unknown name lists the allowed ones."""
    if not isinstance(data, Mapping):
        raise ConfigError(prefix, f"expected a table of settings, got {describe(data)}")
    name = data.get(tag, default)
    if not isinstance(name, str) or name not in registry:
        allowed = ", ".join(registry)
        raise ConfigError(_join(prefix, tag), f"unknown {what} {name!r}; allowed: {allowed}")
    return from_mapping(registry[name], data, prefix, skip=tag)


def to_mapping(obj: object) -> dict[str, object]:
    """The dataclass as plain JSON-ready values (tuples become lists)."""
    assert dataclasses.is_dataclass(obj) and not isinstance(obj, type)
    out: dict[str, object] = {}
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        out[f.name] = list(value) if isinstance(value, tuple) else value
    return out


def _join(prefix: str, key: str) -> str:
    return f"{prefix}.{key}" if prefix else key
