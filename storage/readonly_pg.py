"""``dynl2 sql`` on PostgreSQL: a login that can only read, in a read-only transaction.

The query runs on a fresh connection logged in as a role that can only read
(:func:`storage.pg_reader.open_reader`), inside ``BEGIN READ ONLY`` with ``SET LOCAL
statement_timeout``, through the extended protocol (exactly one statement), streamed row by row
into :func:`~storage.readonly_limits.take`. The transaction is always rolled back and the
connection closed.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    import psycopg

from storage.errors import QueryError, ReadOnlyViolation, StorageUnavailable
from storage.pg_reader import open_reader
from storage.readonly_limits import QueryResult, out_of_memory, take, timeout
from storage.sqlscan import ONLY
from storage.urls import first_line

__all__ = ["run_postgres"]


def run_postgres(
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
                rows, truncated = take(stream, max_rows)
                columns = tuple(d.name for d in cursor.description or ())
            finally:
                stream.close()  # cancels the query if rows are left unread
        if not rows:
            columns = _describe(connection, sql)
        return QueryResult(columns, tuple(rows), truncated)
    except MemoryError as exc:
        raise out_of_memory() from exc
    except RecursionError as exc:  # psycopg decoding JSON nested thousands deep
        raise QueryError(
            "A value of the result is nested too deeply to decode (JSON thousands of levels "
            "deep); select it as text (::text) or a part of it."
        ) from exc
    except psycopg.errors.QueryCanceled as exc:
        raise timeout(timeout_s) from exc
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
