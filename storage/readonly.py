"""The read-only door: run a user's SQL against the store without letting it change anything.

Modelled on datasette: the connection is read-only from the start, each query has a time
limit, and rows are capped with a ``truncated`` flag. Layers, each sufficient on its own for
writes:

- SQLite: ``mode=ro`` URI (a missing file is an error, never a new empty file),
  ``PRAGMA query_only``, an authorizer that allows reads only (no ATTACH, no VACUUM INTO, no
  pragma that sets anything, no ``load_extension``), and a progress handler for the time limit.
- PostgreSQL: a fresh connection whose *login* can only read (:mod:`storage.pg_reader`: the
  store's own login if it can do no more, else the dedicated role ``dynl2 sql-setup`` creates;
  a superuser's session is never used, since SQL the scanner cannot see could switch it back
  with ``set_config('role', ...)``), ``BEGIN READ ONLY``, ``SET LOCAL statement_timeout``. The
  query goes through the extended protocol, which accepts exactly one statement. The
  transaction is always rolled back and the connection closed.
- Both: :func:`storage.sqlscan.check_readonly_sql` refuses non-queries up front with a clear
  message.
"""

from __future__ import annotations

import math
import sqlite3
import time
import urllib.parse
from collections.abc import Callable, Generator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    import psycopg

from storage.errors import (
    QueryError,
    QueryTimeout,
    ReadOnlyViolation,
    StorageError,
    StorageUnavailable,
    StorageURLError,
)
from storage.pg_reader import open_reader
from storage.sqlscan import ONLY, check_readonly_sql
from storage.urls import backend_of, first_line, masked_url, resolve_url, sqlite_path

__all__ = ["QueryResult", "run_readonly"]

_PROGRESS_EVERY = 1000  # SQLite VM instructions between two looks at the clock

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


@dataclass(frozen=True)
class QueryResult:
    columns: tuple[str, ...]
    rows: tuple[tuple[Any, ...], ...]
    truncated: bool  # more rows existed than max_rows


def run_readonly(
    url: str | None,
    sql: str,
    *,
    max_rows: int = 1000,
    timeout_s: float = 10.0,
    reader_url: str | None = None,
) -> QueryResult:
    """Run one read-only query on the store at ``url`` and return at most ``max_rows`` rows.

    On PostgreSQL the query runs logged in as a role that can only read: ``reader_url`` (else
    ``$DYNL2_SQL_URL``) when given, else the store URL's login if it can do no more, else the
    role :func:`storage.set_up_reader` creates (see :func:`storage.pg_reader.open_reader`).

    Raises :class:`~storage.errors.ReadOnlyViolation` for anything that is not a read,
    :class:`~storage.errors.ReaderLoginError` when PostgreSQL offers no login that can only
    read, :class:`~storage.errors.QueryTimeout` after ``timeout_s`` seconds and
    :class:`~storage.errors.QueryError` when the database rejects the query.
    """
    if isinstance(max_rows, bool) or not isinstance(max_rows, int) or max_rows < 1:
        raise QueryError(f"`max_rows` must be an int >= 1, but got {max_rows!r}.")
    if not isinstance(timeout_s, int | float) or not 0 < timeout_s < math.inf:
        raise QueryError(
            f"`timeout_s` must be a finite number of seconds > 0, but got {timeout_s!r}."
        )
    if not isinstance(sql, str):
        raise QueryError(f"`sql` must be a string, but got {type(sql).__name__}.")
    canonical = resolve_url(url)
    backend = backend_of(canonical)
    if backend == "sqlite":
        if reader_url is not None:
            raise StorageURLError(
                f"`reader_url` is for PostgreSQL stores, but {masked_url(canonical)!r} is a "
                "SQLite file, which dynl2 sql opens read-only without one; leave it out."
            )
        path = sqlite_path(canonical)
        assert path is not None  # a canonical SQLite URL always names a file
        check_readonly_sql(sql, "sqlite")
        return _run_sqlite(path, sql, max_rows=max_rows, timeout_s=float(timeout_s))
    if backend == "postgresql":
        check_readonly_sql(sql, "postgresql")
        return _run_postgres(
            canonical, sql, max_rows=max_rows, timeout_s=float(timeout_s), reader_url=reader_url
        )
    raise StorageError(
        f"dynl2 sql supports SQLite and PostgreSQL stores, but {masked_url(canonical)!r} is "
        f"{backend}; query it with the database's own read-only client instead."
    )


# ----------------------------------------------------------------------------- SQLite


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


def _run_sqlite(path: Path, sql: str, *, max_rows: int, timeout_s: float) -> QueryResult:
    if not path.is_file():
        raise StorageUnavailable(
            f"There is no database file at {path}; check the storage URL or run an "
            "experiment first."
        )
    uri = f"file:{urllib.parse.quote(str(path))}?mode=ro"
    try:
        connection = sqlite3.connect(uri, uri=True, timeout=timeout_s)
    except sqlite3.Error as exc:
        raise StorageUnavailable(f"Cannot open the SQLite file {path} read-only: {exc}.") from exc
    denied: list[str] = []
    deadline = time.monotonic() + timeout_s
    try:
        connection.execute("PRAGMA query_only=ON").close()
        connection.set_authorizer(_sqlite_authorizer(denied))
        connection.set_progress_handler(lambda: int(time.monotonic() > deadline), _PROGRESS_EVERY)
        cursor = connection.execute(sql)
        rows = cursor.fetchmany(max_rows + 1)
        columns = tuple(d[0] for d in cursor.description or ())
        cursor.close()
    except sqlite3.Error as exc:
        if denied:
            raise ReadOnlyViolation(
                f"dynl2 sql is read-only: {denied[0]} is not allowed ({ONLY})."
            ) from exc
        if time.monotonic() > deadline and "interrupt" in str(exc).lower():
            raise QueryTimeout(
                f"The query stopped after {timeout_s:g} s (its time limit); add a LIMIT or "
                "a WHERE clause, or allow more time."
            ) from exc
        message = str(exc)
        if "not a database" in message or "malformed" in message:
            raise StorageUnavailable(
                f"The SQLite file {path} is damaged or not a database: {message}."
            ) from exc
        if "readonly" in message or "read-only" in message or "one statement" in message:
            raise ReadOnlyViolation(f"dynl2 sql is read-only: {message} ({ONLY}).") from exc
        raise QueryError(f"SQLite rejected the query: {message}.") from exc
    finally:
        connection.close()
    return QueryResult(columns, tuple(tuple(r) for r in rows[:max_rows]), len(rows) > max_rows)


# ------------------------------------------------------------------------- PostgreSQL


def _run_postgres(
    url: str, sql: str, *, max_rows: int, timeout_s: float, reader_url: str | None = None
) -> QueryResult:
    connection = open_reader(url, reader_url)  # a login that can only read, or refused
    try:
        return _query_postgres(connection, sql, max_rows=max_rows, timeout_s=timeout_s)
    finally:
        connection.close()  # also ends the READ ONLY transaction: nothing is ever committed


def _query_postgres(
    connection: psycopg.Connection[Any], sql: str, *, max_rows: int, timeout_s: float
) -> QueryResult:
    import psycopg  # deferred: psycopg is the optional `postgres` extra

    timeout_ms = max(1, round(timeout_s * 1000))
    try:
        connection.execute("BEGIN TRANSACTION READ ONLY")
        connection.execute(f"SET LOCAL statement_timeout = {timeout_ms}")
        connection.execute(f"SET LOCAL idle_in_transaction_session_timeout = {timeout_ms + 1000}")
        rows: list[tuple[Any, ...]] = []
        with connection.cursor() as cursor:
            # stream() uses the extended protocol (one statement only) and fetches rows one
            # by one, so a huge result costs max_rows rows of memory, not the whole table.
            stream = cast(Generator[tuple[Any, ...], None, None], cursor.stream(sql))
            columns: tuple[str, ...] = ()
            try:
                for row in stream:
                    columns = columns or tuple(d.name for d in cursor.description or ())
                    rows.append(row)
                    if len(rows) > max_rows:
                        break
            finally:
                stream.close()  # cancels the query if rows are left unread
        if not rows:
            columns = _describe(connection, sql)
        return QueryResult(columns, tuple(rows[:max_rows]), len(rows) > max_rows)
    except psycopg.errors.QueryCanceled as exc:
        raise QueryTimeout(
            f"The query stopped after {timeout_s:g} s (its time limit); add a LIMIT or a "
            "WHERE clause, or allow more time."
        ) from exc
    except psycopg.errors.InsufficientPrivilege as exc:
        # The reader role may run no function that touches server files or other sessions,
        # may not switch roles, and reads only the tables it was granted.
        hint = ""
        if str(exc).startswith("permission denied for table"):
            hint = "; a table added by a new owner needs `dynl2 sql-setup` again"
        raise ReadOnlyViolation(
            f"dynl2 sql is read-only: {first_line(exc)} ({ONLY}, as a role that may only "
            f"read{hint})."
        ) from exc
    except (
        psycopg.errors.ReadOnlySqlTransaction,
        psycopg.errors.ModifyingSqlDataNotPermitted,
        psycopg.errors.ProhibitedSqlStatementAttempted,  # dblink, for a role without password
    ) as exc:
        raise ReadOnlyViolation(f"dynl2 sql is read-only: {first_line(exc)} ({ONLY}).") from exc
    except psycopg.errors.SyntaxError as exc:
        if "multiple commands" in str(exc):
            raise ReadOnlyViolation(
                f"dynl2 sql is read-only: run one statement at a time ({ONLY})."
            ) from exc
        raise QueryError(f"PostgreSQL rejected the query: {first_line(exc)}") from exc
    except psycopg.OperationalError as exc:
        raise StorageUnavailable(f"The PostgreSQL server failed: {first_line(exc)}") from exc
    except psycopg.Error as exc:
        raise QueryError(f"PostgreSQL rejected the query: {first_line(exc)}") from exc
    finally:
        if not connection.closed and not connection.broken:
            try:
                connection.execute("ROLLBACK")
            except psycopg.Error:
                connection.close()


def _describe(connection: psycopg.Connection[Any], sql: str) -> tuple[str, ...]:
    """Column names of a query without running it (stream() drops them for empty results)."""
    from psycopg import pq

    encoding = connection.info.encoding
    pgconn = connection.pgconn
    prepared = pgconn.prepare(b"", sql.encode(encoding))  # the unnamed statement
    if prepared.status != pq.ExecStatus.COMMAND_OK:
        return ()
    described = pgconn.describe_prepared(b"")
    if described.status != pq.ExecStatus.COMMAND_OK:
        return ()
    names = (described.fname(i) for i in range(described.nfields))
    return tuple(name.decode(encoding) if name is not None else "?column?" for name in names)
