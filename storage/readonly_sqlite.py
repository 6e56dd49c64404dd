"""``dynl2 sql`` on SQLite: a read-only connection, an authorizer, and a deadline.

The file is opened with a ``mode=ro`` URI (a missing file is an error, never a new empty
file), with ``PRAGMA query_only``, an authorizer that allows reads only (no ATTACH, no VACUUM
INTO, no pragma that sets anything, no ``load_extension``), ``SQLITE_LIMIT_LENGTH`` at
:data:`~storage.readonly_limits.RESULT_BYTES`, and a progress handler plus an interrupt from
the caller for the time limit (see :func:`run_sqlite`).
"""

from __future__ import annotations

import sqlite3
import threading
import time
import urllib.parse
from collections.abc import Callable
from pathlib import Path

from storage.errors import (
    QueryError,
    ReadOnlyViolation,
    StorageError,
    StorageUnavailable,
)
from storage.readonly_limits import (
    LIMIT,
    RESULT_BYTES,
    QueryResult,
    out_of_memory,
    take,
    timeout,
)
from storage.sqlscan import ONLY

__all__ = ["run_sqlite"]

_PROGRESS_EVERY = 1000  # SQLite VM instructions between two looks at the clock
_GRACE_S = 1.0  # how long an interrupted SQLite statement may take to stop before it is left

# SQLite authorizer action codes (https://sqlite.org/c3ref/c_alter_table.html).
_SQLITE_PRAGMA = 19
_SQLITE_READ = 20
_SQLITE_SELECT = 21
_SQLITE_FUNCTION = 31
_SQLITE_RECURSIVE = 33
_SQLITE_ACTION_NAMES = dict(
    enumerate(
        (
            "CREATE INDEX",
            "CREATE TABLE",
            "CREATE TEMP INDEX",
            "CREATE TEMP TABLE",
            "CREATE TEMP TRIGGER",
            "CREATE TEMP VIEW",
            "CREATE TRIGGER",
            "CREATE VIEW",
            "DELETE",
            "DROP INDEX",
            "DROP TABLE",
            "DROP TEMP INDEX",
            "DROP TEMP TABLE",
            "DROP TEMP TRIGGER",
            "DROP TEMP VIEW",
            "DROP TRIGGER",
            "DROP VIEW",
            "INSERT",
            "PRAGMA",
            "READ",
            "SELECT",
            "TRANSACTION",
            "UPDATE",
            "ATTACH",
            "DETACH",
            "ALTER TABLE",
            "REINDEX",
            "ANALYZE",
            "CREATE VTABLE",
            "DROP VTABLE",
            "FUNCTION",
            "SAVEPOINT",
            "RECURSIVE",
        ),
        start=1,
    )
)
# Pragmas that only describe the schema; anything else may set state, so it is refused.
_READ_PRAGMAS = frozenset(
    {
        "table_info",
        "table_xinfo",
        "table_list",
        "index_list",
        "index_info",
        "index_xinfo",
        "foreign_key_list",
    }
)
_DENIED_SQLITE_FUNCTIONS = frozenset(
    {"load_extension", "fts3_tokenizer", "readfile", "writefile", "edit"}
)


def _sqlite_authorizer(denied: list[str]) -> Callable[..., int]:
    def authorize(
        action: int, arg1: str | None, arg2: str | None, db: str | None, source: str | None
    ) -> int:
        if action in (_SQLITE_SELECT, _SQLITE_READ, _SQLITE_RECURSIVE):
            return sqlite3.SQLITE_OK
        if action == _SQLITE_FUNCTION and (arg2 or "").lower() not in _DENIED_SQLITE_FUNCTIONS:
            return sqlite3.SQLITE_OK
        if action == _SQLITE_PRAGMA and (arg1 or "").lower() in _READ_PRAGMAS:
            return sqlite3.SQLITE_OK
        if action == _SQLITE_PRAGMA:
            setting = f" = {arg2}" if arg2 is not None else ""
            denied.append(f"PRAGMA {arg1}{setting}")
        elif action == _SQLITE_FUNCTION:
            denied.append(f"the function {arg2}()")
        else:
            target = " ".join(a for a in (arg1, arg2) if a)
            name = _SQLITE_ACTION_NAMES.get(action, f"action {action}")
            denied.append(f"{name} {target}".strip())
        return sqlite3.SQLITE_DENY

    return authorize


def run_sqlite(path: Path, sql: str, *, max_rows: int, timeout_s: float) -> QueryResult:
    """Run the query in a thread of its own and wait at most ``timeout_s`` for it.

    At the deadline this thread interrupts the statement: SQLite looks at the interrupt flag
    at every loop, where the progress handler looks at the clock only every thousand VM
    instructions (and one instruction such as ``randomblob(5e7)`` can take most of a second:
    a thousand of them ran 139 s past a 10 s limit). A few built-in functions can spend far
    longer in one call, where no flag is looked at (``printf('%.*c', 1e9, 'x')``, ``instr``
    and ``trim`` on two large strings): the worker is then left to finish on its own and the
    caller gets :class:`QueryTimeout` all the same, ``_GRACE_S`` after the deadline.
    """
    if not path.is_file():
        raise StorageUnavailable(
            f"There is no database file at {path}; check the storage URL or run an "
            "experiment first."
        )
    deadline = time.monotonic() + timeout_s
    job = _SqliteJob(path, sql, max_rows, timeout_s, deadline)
    worker = threading.Thread(target=job.run, name="dynl2-sql", daemon=True)
    worker.start()
    worker.join(max(0.0, deadline - time.monotonic()))
    if worker.is_alive():
        job.interrupt()
        worker.join(_GRACE_S)
    if worker.is_alive():  # inside one long call: left behind, it closes when that ends
        raise timeout(timeout_s)
    if isinstance(job.outcome, BaseException):
        raise job.outcome
    assert job.outcome is not None  # the worker ended: it set one or the other
    return job.outcome


class _SqliteJob:
    """One query on its own read-only connection, run by :meth:`run` in a worker thread."""

    def __init__(
        self, path: Path, sql: str, max_rows: int, timeout_s: float, deadline: float
    ) -> None:
        self.path, self.sql, self.max_rows = path, sql, max_rows
        self.timeout_s, self.deadline = timeout_s, deadline
        self.outcome: QueryResult | BaseException | None = None
        self._lock = threading.Lock()  # interrupt() never meets a closed connection
        self._connection: sqlite3.Connection | None = None

    def interrupt(self) -> None:
        with self._lock:
            if self._connection is not None:
                self._connection.interrupt()

    def run(self) -> None:
        try:
            self.outcome = self._query()
        except BaseException as exc:  # handed to the waiting thread
            self.outcome = exc

    def _query(self) -> QueryResult:
        path, deadline = self.path, self.deadline
        uri = f"file:{urllib.parse.quote(str(path))}?mode=ro"
        try:
            connection = sqlite3.connect(uri, uri=True, timeout=self.timeout_s)
        except sqlite3.Error as exc:
            raise StorageUnavailable(
                f"Cannot open the SQLite file {path} read-only: {exc}."
            ) from exc
        with self._lock:
            self._connection = connection
        denied: list[str] = []
        try:
            connection.execute("PRAGMA query_only=ON").close()
            # No string or blob, computed or stored, may be larger than a whole result.
            connection.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, RESULT_BYTES)
            connection.text_factory = _text
            connection.set_authorizer(_sqlite_authorizer(denied))
            connection.set_progress_handler(
                lambda: int(time.monotonic() > deadline), _PROGRESS_EVERY
            )
            cursor = connection.execute(self.sql)
            columns = tuple(d[0] for d in cursor.description or ())
            rows, truncated = take(cursor, self.max_rows)  # one row per step
            cursor.close()
        except sqlite3.Error as exc:
            late = time.monotonic() >= deadline
            raise _sqlite_error(exc, path, denied, late, self.timeout_s) from exc
        except MemoryError as exc:
            raise out_of_memory() from exc
        finally:
            with self._lock:
                self._connection = None
                connection.close()
        return QueryResult(columns, tuple(rows), truncated)


def _sqlite_error(
    exc: sqlite3.Error, path: Path, denied: list[str], late: bool, timeout_s: float
) -> StorageError:
    """Our error for what SQLite raised."""
    error: StorageError
    message = str(exc)
    if denied:
        error = ReadOnlyViolation(f"dynl2 sql is read-only: {denied[0]} is not allowed ({ONLY}).")
    elif late and "interrupt" in message.lower():
        error = timeout(timeout_s)
    elif "string or blob too big" in message:
        error = QueryError(
            f"The query made or read a string or blob larger than the {LIMIT} a value or a "
            "result of dynl2 sql may hold (SQLite: string or blob too big); select a part of "
            "it with substr(), or its length()."
        )
    elif "not a database" in message or "malformed" in message:
        error = StorageUnavailable(
            f"The SQLite file {path} is damaged or not a database: {message}."
        )
    elif "readonly" in message or "read-only" in message or "one statement" in message:
        error = ReadOnlyViolation(f"dynl2 sql is read-only: {message} ({ONLY}).")
    else:
        error = QueryError(f"SQLite rejected the query: {message}.")
    return error


def _text(data: bytes) -> str:
    """SQLite TEXT as str; bytes that are not UTF-8 become U+FFFD instead of an error."""
    return data.decode("utf-8", "replace")
