"""A rough SQL scanner for the read-only door: first keyword, statement count, risky names.

This is defence in depth, not the guard itself: on SQLite the authorizer and ``mode=ro`` are
the guard, on PostgreSQL the ``READ ONLY`` transaction and a login that may only read (see
:mod:`storage.pg_reader`) are. The scan exists for clear messages; it cannot see SQL that a
function runs from a string (``ts_stat``, ``xpath_table``), which only privileges can stop.

It strips comments and string literals (so ``SELECT '; DROP TABLE t'`` is one harmless
statement) and keeps the text of quoted identifiers as names (so ``"pg_read_file"(...)`` is
still seen).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from storage.errors import QueryError, ReadOnlyViolation

__all__ = ["Dialect", "ScannedSQL", "check_readonly_sql", "scan"]

Dialect = Literal["sqlite", "postgresql"]

_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_$]*")
_DOLLAR_TAG = re.compile(r"\$(?:[A-Za-z_][A-Za-z0-9_]*)?\$")

ALLOWED_FIRST = {
    "sqlite": ("SELECT", "WITH", "EXPLAIN", "VALUES", "PRAGMA"),
    "postgresql": ("SELECT", "WITH", "EXPLAIN", "VALUES", "SHOW", "TABLE"),
}

# Unquoted keywords that only occur in statements that write, change the schema or the session.
FORBIDDEN_WORDS = frozenset(
    {
        "ALTER",
        "ATTACH",
        "CALL",
        "COPY",
        "CREATE",
        "DELETE",
        "DETACH",
        "DROP",
        "GRANT",
        "INSERT",
        "INTO",
        "MERGE",
        "REINDEX",
        "REVOKE",
        "TRUNCATE",
        "UPDATE",
        "VACUUM",
    }
)

# PostgreSQL functions that read or write server files, run SQL text of their own (which the
# scan cannot see), change settings or roles, signal other sessions, or take locks the workers
# wait on (advisory locks). Not the guard: on PostgreSQL that is the login dynl2 sql queries
# as, which may only read (storage/pg_reader.py); this list gives the common cases a message.
FORBIDDEN_PG_FUNCTION_PREFIXES = (
    "cursor_to_xml",
    "dblink",
    "lo_",
    "lowrite",
    "pg_advisory",
    "pg_cancel_backend",
    "pg_create_",
    "pg_drop_replication_slot",
    "pg_file_",
    "pg_import_system_collations",
    "pg_logical_",
    "pg_ls_",
    "pg_notify",
    "pg_promote",
    "pg_read_",
    "pg_reload_conf",
    "pg_replication_origin_",
    "pg_rotate_logfile",
    "pg_stat_file",
    "pg_stat_reset",
    "pg_switch_wal",
    "pg_terminate_backend",
    "pg_try_advisory",
    "query_to_xml",
    "set_config",
)

ONLY = "only SELECT/WITH/EXPLAIN queries"


@dataclass(frozen=True)
class ScannedSQL:
    words: tuple[str, ...]  # unquoted words, upper-cased, in order
    names: tuple[str, ...]  # unquoted words and quoted identifiers, lower-cased
    statements: int  # non-empty statements separated by ';'
    unicode_escapes: bool  # PostgreSQL U&'...' / U&"..." seen (they can spell any name)


def _skip_quoted(sql: str, start: int, quote: str, *, backslashes: bool) -> tuple[int, str]:
    """Index just past the literal opening at ``start`` and its text; doubled quotes escape."""
    i = start + 1
    text: list[str] = []
    while i < len(sql):
        ch = sql[i]
        if backslashes and ch == "\\":
            text.append(sql[i : i + 2])
            i += 2
            continue
        if ch == quote:
            if sql.startswith(quote * 2, i):
                text.append(quote)
                i += 2
                continue
            return i + 1, "".join(text)
        text.append(ch)
        i += 1
    return len(sql), "".join(text)  # unterminated: the database will reject it


def _skip_block_comment(sql: str, start: int, *, nested: bool) -> int:
    depth = 0
    i = start
    while i < len(sql):
        if sql.startswith("/*", i):
            depth = depth + 1 if nested or depth == 0 else depth
            i += 2
        elif sql.startswith("*/", i):
            depth -= 1
            i += 2
            if depth == 0:
                return i
        else:
            i += 1
    return len(sql)


def scan(sql: str, dialect: Dialect) -> ScannedSQL:
    pg = dialect == "postgresql"
    words: list[str] = []
    names: list[str] = []
    statements = 0
    current_has_tokens = False
    unicode_escapes = False
    i = 0
    while i < len(sql):
        ch = sql[i]
        if sql.startswith("--", i):
            newline = sql.find("\n", i)
            i = len(sql) if newline < 0 else newline + 1
            continue
        if sql.startswith("/*", i):
            # PostgreSQL nests block comments, SQLite does not.
            i = _skip_block_comment(sql, i, nested=pg)
            continue
        if ch == ";":
            statements += current_has_tokens
            current_has_tokens = False
            i += 1
            continue
        if ch.isspace():
            i += 1
            continue
        current_has_tokens = True
        if ch == "'":
            # E'...' strings on PostgreSQL take backslash escapes (E'\'' is one quote).
            escaped = pg and bool(words) and sql[i - 1 : i] in ("E", "e") and words[-1] == "E"
            if escaped:
                words.pop()
                names.pop()
            i, _ = _skip_quoted(sql, i, "'", backslashes=escaped)
            continue
        if ch == '"' or (not pg and ch in "`["):
            closing = {"`": "`", "[": "]"}.get(ch, '"')
            if closing == "]":
                end = sql.find("]", i + 1)
                end = len(sql) if end < 0 else end + 1
                text = sql[i + 1 : end - 1]
                i = end
            else:
                i, text = _skip_quoted(sql, i, closing, backslashes=False)
            names.append(text.lower())
            continue
        if pg and ch == "$":
            tag = _DOLLAR_TAG.match(sql, i)
            if tag is not None:
                close = sql.find(tag.group(), tag.end())
                i = len(sql) if close < 0 else close + len(tag.group())
                continue
        if pg and sql[i : i + 2].upper() == "U&" and sql[i + 2 : i + 3] in ("'", '"'):
            unicode_escapes = True
            i += 2
            continue
        word = _WORD.match(sql, i)
        if word is not None:
            words.append(word.group().upper())
            names.append(word.group().lower())
            i = word.end()
            continue
        i += 1
    statements += current_has_tokens
    return ScannedSQL(tuple(words), tuple(names), statements, unicode_escapes)


def check_readonly_sql(sql: str, dialect: Dialect) -> ScannedSQL:
    """Refuse anything but one read-only query, with a message that says why."""
    scanned = scan(sql, dialect)
    if scanned.statements == 0:
        raise QueryError("`sql` is empty; give one SELECT query.")
    if scanned.statements > 1:
        raise ReadOnlyViolation(
            f"dynl2 sql is read-only: run one statement at a time, but got "
            f"{scanned.statements} statements separated by ';'."
        )
    first = scanned.words[0] if scanned.words else ""
    if first not in ALLOWED_FIRST[dialect]:
        shown = first or "this statement"
        raise ReadOnlyViolation(f"dynl2 sql is read-only: {shown} is not allowed ({ONLY}).")
    for word in scanned.words:
        if word in FORBIDDEN_WORDS:
            raise ReadOnlyViolation(f"dynl2 sql is read-only: {word} is not allowed ({ONLY}).")
    if dialect == "postgresql":
        if scanned.unicode_escapes:
            raise ReadOnlyViolation(
                "dynl2 sql is read-only: Unicode-escaped names and strings (U&'...') are not "
                "allowed; write the text plainly."
            )
        for name in scanned.names:
            if name.startswith(FORBIDDEN_PG_FUNCTION_PREFIXES):
                raise ReadOnlyViolation(
                    f"dynl2 sql is read-only: the server function {name} is not allowed "
                    "(it can touch server files, settings or other sessions)."
                )
    return scanned
