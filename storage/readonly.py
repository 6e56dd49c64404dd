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

Limits, so that a query's time and memory are bounded whatever it computes:

- Time: ``timeout_s`` (at most :data:`MAX_TIMEOUT_S`). PostgreSQL's ``statement_timeout`` on
  the server; on SQLite the query runs in a worker thread that the caller interrupts at the
  deadline, and leaves behind if it does not stop within a second (see :func:`_run_sqlite`).
- Rows: ``max_rows`` (at most :data:`MAX_ROWS`), with ``truncated`` set when more existed.
- Bytes: a result holds at most :data:`RESULT_BYTES` of data (text and blobs by their length,
  any other value as 8 bytes), counted row by row as it is fetched: the rows before the one that
  would pass it are returned with ``truncated`` set, and a single row larger than that is an
  error. SQLite also refuses to build any one string or blob larger than that
  (``SQLITE_LIMIT_LENGTH``), so ``zeroblob(1e9)`` fails at once instead of taking a gigabyte.
  PostgreSQL builds a value up to its own 1 GB limit on the server, and a row is received whole
  before it can be counted.
"""

from __future__ import annotations

import sqlite3
import threading
import time
import urllib.parse
from collections.abc import Callable, Generator, Iterable
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

__all__ = ["MAX_ROWS", "MAX_TIMEOUT_S", "RESULT_BYTES", "QueryResult", "run_readonly"]

MAX_ROWS = 1_000_000  # the largest `max_rows` (--max-rows)
MAX_TIMEOUT_S = 3600.0  # the longest `timeout_s` (--timeout): an hour
RESULT_BYTES = 64 * 2**20  # data one result may hold; on SQLite also the size of any one value
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
    """What a query returned. ``columns`` are the names the database gave, duplicates included
    (``SELECT 1, 1``); blobs are ``bytes``."""

    columns: tuple[str, ...]
    rows: tuple[tuple[Any, ...], ...]
    # More rows existed than were returned: `max_rows` was reached, or, with fewer rows, the
    # next row would have taken the result past RESULT_BYTES.
    truncated: bool


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

    The time, rows and bytes of a result are bounded (see the module's doc): ``max_rows`` from
    1 to :data:`MAX_ROWS`, ``timeout_s`` above 0 and at most :data:`MAX_TIMEOUT_S`, and
    :data:`RESULT_BYTES` of data.

    Raises :class:`~storage.errors.ReadOnlyViolation` for anything that is not a read,
    :class:`~storage.errors.ReaderLoginError` when PostgreSQL offers no login that can only
    read, :class:`~storage.errors.QueryTimeout` after ``timeout_s`` seconds and
    :class:`~storage.errors.QueryError` when the database rejects the query or a value or row
    passes the byte limit.
    """
    if (
        isinstance(max_rows, bool)
        or not isinstance(max_rows, int)
        or not 1 <= max_rows <= MAX_ROWS
    ):
        raise QueryError(f"`max_rows` must be an int from 1 to {MAX_ROWS}, but got {max_rows!r}.")
    if (
        isinstance(timeout_s, bool)
        or not isinstance(timeout_s, int | float)
        or not 0 < timeout_s <= MAX_TIMEOUT_S
    ):
        raise QueryError(
            f"`timeout_s` must be a number of seconds above 0 and at most {MAX_TIMEOUT_S:g}, "
            f"but got {timeout_s!r}."
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
        raise _timeout(timeout_s)
    if isinstance(job.outcome, BaseException):
        raise job.outcome
    assert job.outcome is not None  # the worker ended: it set one or the other
    return job.outcome


_GRACE_S = 1.0  # how long an interrupted SQLite statement may take to stop before it is left


def _timeout(timeout_s: float) -> QueryTimeout:
    return QueryTimeout(
        f"The query stopped after {timeout_s:g} s (its time limit); add a LIMIT or a WHERE "
        "clause, or allow more time."
    )


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
            rows, truncated = _take(cursor, self.max_rows)  # one row per step
            cursor.close()
        except sqlite3.Error as exc:
            late = time.monotonic() >= deadline
            raise _sqlite_error(exc, path, denied, late, self.timeout_s) from exc
        except MemoryError as exc:
            raise _out_of_memory() from exc
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
        error = _timeout(timeout_s)
    elif "string or blob too big" in message:
        error = QueryError(
            f"The query made or read a string or blob larger than the {_LIMIT} a value or a "
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


_LIMIT = f"{RESULT_BYTES // 2**20} MiB"


def _take(rows: Iterable[Any], max_rows: int) -> tuple[list[tuple[Any, ...]], bool]:
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
                    f"{_LIMIT} a result of dynl2 sql may hold; select fewer or smaller columns "
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


def _out_of_memory() -> QueryError:
    return QueryError(
        "The query's result did not fit in this process's memory; select fewer or smaller "
        f"columns or rows (a result may hold {_LIMIT})."
    )


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
        with connection.cursor() as cursor:
            # stream() uses the extended protocol (one statement only) and fetches rows one
            # by one, so a huge result costs the rows kept, not the whole table.
            stream = cast(Generator[tuple[Any, ...], None, None], cursor.stream(sql))
            try:
                rows, truncated = _take(stream, max_rows)
                columns = tuple(d.name for d in cursor.description or ())
            finally:
                stream.close()  # cancels the query if rows are left unread
        if not rows:
            columns = _describe(connection, sql)
        return QueryResult(columns, tuple(rows), truncated)
    except MemoryError as exc:
        raise _out_of_memory() from exc
    except RecursionError as exc:  # psycopg decoding JSON nested thousands deep
        raise QueryError(
            "A value of the result is nested too deeply to decode (JSON thousands of levels "
            "deep); select it as text (::text) or a part of it."
        ) from exc
    except psycopg.errors.QueryCanceled as exc:
        raise _timeout(timeout_s) from exc
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
