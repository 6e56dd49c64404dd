"""The bounds of a ``dynl2 sql`` result, shared by the SQLite and the PostgreSQL runner.

A result holds at most ``max_rows`` rows (at most :data:`MAX_ROWS`) and :data:`RESULT_BYTES`
of data, counted row by row as it is fetched (:func:`take`); a query runs at most
:data:`MAX_TIMEOUT_S`. See :mod:`storage.readonly` for how each database enforces them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from storage.errors import QueryError, QueryTimeout

__all__ = [
    "LIMIT",
    "MAX_ROWS",
    "MAX_TIMEOUT_S",
    "RESULT_BYTES",
    "QueryResult",
    "out_of_memory",
    "take",
    "timeout",
]

MAX_ROWS = 1_000_000  # the largest `max_rows` (--max-rows)
MAX_TIMEOUT_S = 3600.0  # the longest `timeout_s` (--timeout): an hour
RESULT_BYTES = 64 * 2**20  # data one result may hold; on SQLite also the size of any one value
LIMIT = f"{RESULT_BYTES // 2**20} MiB"  # RESULT_BYTES, as messages say it


@dataclass(frozen=True)
class QueryResult:
    """What a query returned. ``columns`` are the names the database gave, duplicates included
    (``SELECT 1, 1``); blobs are ``bytes``."""

    columns: tuple[str, ...]
    rows: tuple[tuple[Any, ...], ...]
    # More rows existed than were returned: `max_rows` was reached, or, with fewer rows, the
    # next row would have taken the result past RESULT_BYTES.
    truncated: bool


def take(rows: Iterable[Any], max_rows: int) -> tuple[list[tuple[Any, ...]], bool]:
    """At most ``max_rows`` rows and :data:`RESULT_BYTES` of them, and whether more were left."""
    taken: list[tuple[Any, ...]] = []
    used = 0
    for row in rows:
        if len(taken) == max_rows:
            return taken, True
        size = _size(row)
        if used + size > RESULT_BYTES:
            if not taken:
                raise QueryError(
                    f"The first row of the result holds {size / 2**20:.0f} MiB, more than the "
                    f"{LIMIT} a result of dynl2 sql may hold; select fewer or smaller columns "
                    "(substr(), length())."
                )
            return taken, True
        used += size
        taken.append(tuple(row))
    return taken, False


def _size(value: Any) -> int:
    """Bytes of a row or value as the result limit counts them: text and blobs by length, any
    other value 8, containers (PostgreSQL arrays and JSON) by their items. No recursion: a
    JSON value may nest deeper than Python's stack."""
    total, pending = 0, [value]
    while pending:
        item = pending.pop()
        if isinstance(item, str | bytes | bytearray):
            total += len(item)
        elif isinstance(item, memoryview):
            total += item.nbytes
        elif isinstance(item, dict):
            total += 8
            pending.extend(item.keys())
            pending.extend(item.values())
        elif isinstance(item, list | tuple):
            total += 8
            pending.extend(item)
        else:
            total += 8
    return total


def timeout(timeout_s: float) -> QueryTimeout:
    """The error for a query stopped at its time limit."""
    return QueryTimeout(
        f"The query stopped after {timeout_s:g} s (its time limit); add a LIMIT or a WHERE "
        "clause, or allow more time."
    )


def out_of_memory() -> QueryError:
    """The error for a result that did not fit in memory."""
    return QueryError(
        "The query's result did not fit in this process's memory; select fewer or smaller "
        f"columns or rows (a result may hold {LIMIT})."
    )
