"""Write a stored experiment config (plain JSON data) back as TOML, for the reproduce recipe.

The standard library reads TOML (``tomllib``) but does not write it, and the config's shape is
small: top-level tables of scalars, lists and inline range tables, plus ``[arms.NAME]`` tables.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")
_ORDER = ("experiment", "data", "model", "train", "search", "arms", "evaluate")
_FIRST = ("name", "dataset", "kind", "scheme", "low", "high", "log", "step")  # keys read first


def _items(body: Mapping[str, Any]) -> list[tuple[str, Any]]:
    first = [(k, body[k]) for k in _FIRST if k in body]
    return first + [(k, v) for k, v in body.items() if k not in _FIRST]


def to_toml(config: Mapping[str, Any]) -> str:
    """TOML text that ``tomllib.loads`` reads back equal to ``config`` (``None`` values are
    left out: TOML has no null, and the config parser reads absent as None)."""
    order = [k for k in _ORDER if k in config] + sorted(k for k in config if k not in _ORDER)
    # Top-level scalars must come before the first table header.
    lines = [
        f"{_key(k)} = {_value(config[k])}"
        for k in order
        if not isinstance(config[k], Mapping) and config[k] is not None
    ]
    for section in order:
        table = config[section]
        if not isinstance(table, Mapping):
            continue
        if section == "arms":
            for arm, body in table.items():
                lines.extend(_table(f"arms.{_key(arm)}", body))
        else:
            lines.extend(_table(_key(section), table))
    return "\n".join(lines).strip() + "\n"


def _table(header: str, body: Mapping[str, Any]) -> list[str]:
    lines = ["", f"[{header}]"]
    for key, value in _items(body):
        if value is not None:
            lines.append(f"{_key(key)} = {_value(value)}")
    return lines


def _key(key: str) -> str:
    return key if _BARE_KEY.match(key) else _string(key)


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return _string(value)
    if isinstance(value, Mapping):
        items = [f"{_key(k)} = {_value(v)}" for k, v in _items(value) if v is not None]
        return "{ " + ", ".join(items) + " }" if items else "{}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    raise TypeError(f"cannot write a {type(value).__name__} as TOML: {value!r}")


def _string(text: str) -> str:
    out = []
    for ch in text:
        if ch in ('"', "\\"):
            out.append("\\" + ch)
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'
