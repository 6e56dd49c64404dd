"""Reading an experiment config file: one bounded reader, safe on any path and any bytes.

A config is a few kilobytes of TOML. :func:`read_config` refuses, each with one
:class:`ExperimentConfigError` line, before ``tomllib`` sees the text:

- a path that is not a regular file (``/dev/zero``, ``/dev/urandom``, a FIFO, a socket, a
  folder), checked with ``stat`` before opening and with ``fstat`` on what was opened, which is
  opened non-blocking, so a FIFO swapped in between cannot block the read;
- more than :data:`MAX_CONFIG_BYTES` (the read stops there, whatever the size claims);
- nesting deeper than :data:`MAX_DEPTH` levels: tables, dotted keys, arrays and inline tables
  together, measured by a scan of the text (:func:`check_text`). ``tomllib`` recurses once per
  bracket (100k brackets: ``RecursionError``) and spends time and memory quadratic in the length
  of a dotted key (a 200 KB file with a 100k-part key: 23 GB);
- an integer TOML cannot hold (64-bit), which ``tomllib`` would turn into a Python integer of
  any size, or refuse with a traceback past 4300 digits;
- a float that is not zero as written but below the smallest normal float: dynl2 treats
  subnormal numbers as zero (``trainers.flush_denormals``), so ``5e-324`` would be read as
  ``0.0`` and then reported as something the user never wrote.
"""

from __future__ import annotations

import functools
import os
import re
import stat
import struct
import sys
import tomllib
from collections.abc import Callable
from typing import Any, NoReturn, TypeVar

from study.errors import StudyError

MAX_CONFIG_BYTES = 256 * 1024  # a config is kilobytes; the examples are under 2 KiB
MAX_DEPTH = 16  # levels of nesting; a dynl2 config needs 4 (arms.NAME.PARAM.low)
SMALLEST_NORMAL = sys.float_info.min  # 2.2250738585072014e-308


def is_subnormal(value: float) -> bool:
    """Whether ``value`` is a subnormal float, read from its bits: once
    ``trainers.flush_denormals`` has set the CPU's denormals-are-zero flag, comparing one with
    0 says they are equal."""
    bits: int = struct.unpack("<Q", struct.pack("<d", value))[0]
    return bits & 0x7FF0_0000_0000_0000 == 0 and bits & 0x000F_FFFF_FFFF_FFFF != 0


T = TypeVar("T")


class ExperimentConfigError(StudyError, ValueError):
    """The experiment config is not valid. ``key`` is the TOML key (``arms.dynamic.floor``), or
    the file's path when the file itself cannot be read or parsed."""

    def __init__(self, key: str, detail: str) -> None:
        super().__init__(f"{_clip(key, 120)}: {_clip(detail, 400)}")
        self.key = key
        self.detail = detail

    def __reduce__(self) -> tuple[Any, ...]:  # picklable: raised inside worker processes too
        return (type(self), (self.key, self.detail))


def _clip(text: str, most: int) -> str:
    """A hostile key or value is never echoed in full: one line stays readable."""
    return text if len(text) <= most else text[: most - 3] + "..."


def read_config(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The TOML document at ``path``, read within the limits above."""
    where = os.fspath(path)
    return parse_config_text(read_config_text(where), where)


def read_config_text(path: str | os.PathLike[str]) -> str:
    """The text of the config file at ``path``: a regular file (not a device, FIFO or socket)
    of at most :data:`MAX_CONFIG_BYTES`, in UTF-8."""
    return _read_text(os.fspath(path))


def parse_config_text(text: str, where: str) -> dict[str, Any]:
    """The TOML document ``text`` (from ``where``: a file, a request body), parsed within the
    limits above; its size is the caller's to check against :data:`MAX_CONFIG_BYTES`. A UTF-8
    byte order mark at the start (some Windows editors write one) is not part of the TOML."""
    text = text.removeprefix("\ufeff")
    check_text(text, where)
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ExperimentConfigError(where, f"invalid TOML: {exc}") from None
    except (RecursionError, ValueError) as exc:  # a backstop: check_text refuses these first
        raise ExperimentConfigError(where, f"cannot parse it: {_clip(str(exc), 200)}") from None


# --------------------------------------------------------------------------------------------
# The file.

_KINDS = (
    (stat.S_ISCHR, "a character device (like /dev/zero)"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISSOCK, "a socket"),
)


def _read_text(where: str) -> str:
    status = _os_call(where, lambda: os.stat(where))
    _check_kind(where, status.st_mode)
    if status.st_size > MAX_CONFIG_BYTES:
        raise ExperimentConfigError(where, _too_large(f"is {status.st_size} bytes"))
    flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_CLOEXEC", 0)
    fd = _os_call(where, lambda: os.open(where, flags))
    try:
        _check_kind(where, os.fstat(fd).st_mode)  # what was opened, if it changed since stat
        chunks: list[bytes] = []
        size = 0
        while True:
            chunk = _os_call(where, functools.partial(os.read, fd, MAX_CONFIG_BYTES + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
            if size > MAX_CONFIG_BYTES:  # it grew, or claims a size it does not have (/proc)
                raise ExperimentConfigError(where, _too_large("is larger than that"))
    finally:
        os.close(fd)
    raw = b"".join(chunks)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ExperimentConfigError(where, f"not UTF-8 text (byte {exc.start})") from None


def _too_large(what: str) -> str:
    return (
        f"{what}; a config file may be at most {MAX_CONFIG_BYTES} bytes "
        f"({MAX_CONFIG_BYTES // 1024} KiB)"
    )


def _check_kind(where: str, mode: int) -> None:
    if stat.S_ISREG(mode):
        return
    if stat.S_ISDIR(mode):
        raise ExperimentConfigError(where, "is a directory, not a TOML file")
    kind = next((name for test, name in _KINDS if test(mode)), "not a file")
    raise ExperimentConfigError(
        where, f"is {kind}, not a regular file; give the path of a TOML file"
    )


def _os_call(where: str, call: Callable[[], T]) -> T:
    """``call()``, its OSError as one line about ``where``."""
    try:
        return call()
    except FileNotFoundError:
        raise ExperimentConfigError(where, "no such file") from None
    except NotADirectoryError:
        raise ExperimentConfigError(where, "no such file (a part of the path is a file)") from None
    except IsADirectoryError:
        raise ExperimentConfigError(where, "is a directory, not a TOML file") from None
    except OSError as exc:
        raise ExperimentConfigError(where, f"cannot read it: {exc.strerror or exc}") from None
    except ValueError:  # os.stat refuses a NUL character
        raise ExperimentConfigError(
            where, "cannot read it: the path holds a NUL character"
        ) from None


# --------------------------------------------------------------------------------------------
# The text: a scan of TOML's structure that reads each character once and keeps no more than
# MAX_DEPTH of anything, so it is linear in the text and safe on any input. It only measures:
# what it cannot follow is left to tomllib's error message (see _unreadable).

_WS = re.compile(r"[ \t\r]*")
_GAP = re.compile(r"(?:[ \t\r\n]+|#[^\n]*)*")  # whitespace, line breaks and comments
_COMMENT = re.compile(r"#[^\n]*")
_BARE = re.compile(r"[A-Za-z0-9_-]+")
_BASIC = re.compile(r'"(?:[^"\\\n]|\\.)*"')
_LITERAL = re.compile(r"'[^'\n]*'")
_ML_BASIC = re.compile(r'"""(?:[^"\\]|\\[\s\S]|"{1,2}(?!"))*"{3,5}')
_ML_LITERAL = re.compile(r"'''(?:[^']|'{1,2}(?!'))*'{3,5}")
_SCALAR = re.compile(r"[^,\[\]{}#\n\r\"']+")  # a number, a boolean, a date (may hold a space)
_DECIMAL = re.compile(r"[+-]?[0-9](?:_?[0-9])*")
_PREFIXED = re.compile(r"0(?:x[0-9A-Fa-f](?:_?[0-9A-Fa-f])*|o[0-7](?:_?[0-7])*|b[01](?:_?[01])*)")
_FLOAT = re.compile(
    r"[+-]?[0-9](?:_?[0-9])*(?:\.[0-9](?:_?[0-9])*)?(?:[eE][+-]?[0-9](?:_?[0-9])*)?"
)
_INT64 = (-(2**63), 2**63 - 1)


def check_text(text: str, where: str) -> None:
    """Refuse TOML text nested deeper than MAX_DEPTH, or holding numbers TOML or dynl2 cannot
    represent, before tomllib parses it (see the module's docstring)."""
    _Scan(text, where).run()


_State = Callable[[], "_State | None"]  # each state of the scan returns the next


class _Scan:
    def __init__(self, text: str, where: str) -> None:
        self.text = text
        self.where = where
        self.pos = 0
        # Open arrays and inline tables: (bracket, level of the value, its key path).
        self.stack: list[tuple[str, int, tuple[str, ...]]] = []
        self.table: tuple[int, tuple[str, ...]] = (0, ())  # the [table] the lines are in
        self.value_at: tuple[int, tuple[str, ...]] = (0, ())  # the next value's level and key

    def run(self) -> None:
        state: _State | None = self.key
        while state is not None:
            state = state()

    # -- states: each returns the next one, or None at the end --------------------------------

    def key(self) -> _State | None:
        """Where a key may start: a line outside brackets, or inside an inline table."""
        self._skip(_GAP)
        if self.pos >= len(self.text):
            return None if not self.stack else self._unreadable()
        if self.stack:
            if self.text[self.pos] == "}":  # {} or a trailing comma
                return self._close("{")
            _, level, path = self.stack[-1]
        elif self.text[self.pos] == "[":
            return self._header()
        else:
            level, path = self.table
        parts = self._key_parts()
        if parts is None:
            return self._unreadable()
        self._deep(level + len(parts))
        self._skip(_WS)
        if not self.text.startswith("=", self.pos):
            return self._unreadable()
        self.pos += 1
        self.value_at = (level + len(parts), path + parts)
        return self.value

    def value(self) -> _State | None:
        in_array = bool(self.stack) and self.stack[-1][0] == "["
        self._skip(_GAP if in_array else _WS)
        if self.pos >= len(self.text):
            return self._unreadable()
        char = self.text[self.pos]
        level, path = self.value_at
        if char == "[":
            self._deep(level + 1)
            self.stack.append(("[", level, path))
            self.pos += 1
            self.value_at = (level + 1, path)
            return self.value
        if char == "{":
            self.stack.append(("{", level, path))
            self.pos += 1
            return self.key
        if char == "]" and in_array:  # [] or a trailing comma
            return self._close("[")
        if char in "\"'":
            match = self._string()
            if match is None:
                return self._unreadable()
            self.pos = match.end()
            return self.after
        match = _SCALAR.match(self.text, self.pos)
        if match is None:
            return self._unreadable()
        self._number(match.group().strip(), path)
        self.pos = match.end()
        return self.after

    def after(self) -> _State | None:
        """After a value: the end of the line, or a comma or a closing bracket."""
        if not self.stack:
            self._skip(_WS)
            comment = _COMMENT.match(self.text, self.pos)
            if comment:
                self.pos = comment.end()
            if self.pos >= len(self.text):
                return None
            if self.text[self.pos] != "\n":
                return self._unreadable()
            return self.key
        self._skip(_GAP)
        if self.pos >= len(self.text):
            return self._unreadable()
        bracket, level, path = self.stack[-1]
        char = self.text[self.pos]
        if char == ",":
            self.pos += 1
            if bracket == "{":
                return self.key
            self.value_at = (level + 1, path)
            return self.value
        return self._close(bracket)

    # -- pieces -------------------------------------------------------------------------------

    def _skip(self, pattern: re.Pattern[str]) -> None:
        """Move past what ``pattern`` (which may match nothing) matches here."""
        self.pos = _end(pattern.match(self.text, self.pos))

    def _close(self, bracket: str) -> _State:
        closing = "]" if bracket == "[" else "}"
        if self.text[self.pos] != closing or not self.stack or self.stack[-1][0] != bracket:
            return self._unreadable()
        self.stack.pop()
        self.pos += 1
        return self.after

    def _header(self) -> _State:
        double = self.text.startswith("[[", self.pos)
        self.pos += 2 if double else 1
        parts = self._key_parts()
        if parts is None:
            return self._unreadable()
        level = len(parts) + double  # an array of tables adds the array's level
        self._deep(level)
        self._skip(_WS)
        closing = "]]" if double else "]"
        if not self.text.startswith(closing, self.pos):
            return self._unreadable()
        self.pos += len(closing)
        self.table = (level, parts)
        return self.after

    def _key_parts(self) -> tuple[str, ...] | None:
        """A dotted key's parts (at most MAX_DEPTH + 1 are read), or None."""
        parts: list[str] = []
        while True:
            self._skip(_WS)
            match = (_BASIC if self.text.startswith('"', self.pos) else _LITERAL).match(
                self.text, self.pos
            ) or _BARE.match(self.text, self.pos)
            if match is None:
                return None
            part = match.group()
            parts.append(part[1:-1] if part[0] in "\"'" else part)
            self.pos = match.end()
            if len(parts) > MAX_DEPTH:
                return tuple(parts)  # deep enough to refuse; the rest is never read
            dot = _end(_WS.match(self.text, self.pos))
            if not self.text.startswith(".", dot):
                return tuple(parts)
            self.pos = dot + 1

    def _string(self) -> re.Match[str] | None:
        for opening, pattern in (('"""', _ML_BASIC), ("'''", _ML_LITERAL)):
            if self.text.startswith(opening, self.pos):
                return pattern.match(self.text, self.pos)
        pattern = _BASIC if self.text[self.pos] == '"' else _LITERAL
        return pattern.match(self.text, self.pos)

    def _deep(self, level: int) -> None:
        if level > MAX_DEPTH:
            raise ExperimentConfigError(
                self.where,
                f"line {self._line()}: nested more than {MAX_DEPTH} levels deep (tables, "
                f"dotted keys, arrays and inline tables together); a dynl2 config needs 4, "
                "as in arms.NAME.PARAM.low",
            )

    def _number(self, token: str, path: tuple[str, ...]) -> None:
        if len(token) <= 18 and "e" not in token and "E" not in token:
            return  # the common case, fast: neither a 64-bit overflow nor a subnormal float
        problem = number_problem(token)
        if problem is not None:
            key = ".".join(path) or self.where
            raise ExperimentConfigError(key, f"{problem} (line {self._line()})")

    def _unreadable(self) -> NoReturn:
        """The scan cannot follow the text here. tomllib reads left to right and stops at its
        first error, so the text up to this line gives its message; everything before this
        point has been measured already."""
        end = self.text.find("\n", self.pos)
        head = self.text if end < 0 else self.text[: end + 1]
        try:
            tomllib.loads(head)
        except tomllib.TOMLDecodeError as exc:
            raise ExperimentConfigError(self.where, f"invalid TOML: {exc}") from None
        except (RecursionError, ValueError) as exc:
            raise ExperimentConfigError(
                self.where, f"cannot parse it: {_clip(str(exc), 200)}"
            ) from None
        raise ExperimentConfigError(self.where, f"invalid TOML: cannot read line {self._line()}")

    def _line(self) -> int:
        return self.text.count("\n", 0, self.pos) + 1


def _end(match: re.Match[str] | None) -> int:
    assert match is not None  # the patterns passed here match the empty string
    return match.end()


def number_problem(token: str) -> str | None:
    """What is wrong with a number as written (TOML or a command-line flag), or None: an
    integer outside 64 bits, or a float that is not zero but below the smallest normal float,
    which dynl2 would read as 0."""
    if _DECIMAL.fullmatch(token):
        digits = sum(c.isdigit() for c in token)
        if digits > 19 or not _INT64[0] <= int(token.replace("_", "")) <= _INT64[1]:
            shown = token if len(token) <= 24 else f"{token[:20]}... ({digits} digits)"
            return f"{shown} is not a 64-bit integer, the largest TOML holds"
        return None
    if _PREFIXED.fullmatch(token):
        body = token[2:].replace("_", "")
        if len(body) > 64 or int(body, {"x": 16, "o": 8, "b": 2}[token[1]]) > _INT64[1]:
            return f"{_clip(token, 24)} is not a 64-bit integer, the largest TOML holds"
        return None
    if _FLOAT.fullmatch(token):
        mantissa = re.split(r"[eE]", token)[0]
        value = float(token.replace("_", ""))
        if any(c in "123456789" for c in mantissa) and abs(value) < SMALLEST_NORMAL:
            return (
                f"{_clip(token, 40)} is below the smallest normal float ({SMALLEST_NORMAL!r}); "
                "dynl2 treats such numbers as 0, so write 0 or a larger number"
            )
    return None
