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

The runners live in :mod:`storage.readonly_sqlite` and :mod:`storage.readonly_pg`, the limits
they share in :mod:`storage.readonly_limits`; this module checks the arguments and picks one.

Limits, so that a query's time and memory are bounded whatever it computes:

- Time: ``timeout_s`` (at most :data:`MAX_TIMEOUT_S`). PostgreSQL's ``statement_timeout`` on
  the server; on SQLite the query runs in a worker thread that the caller interrupts at the
  deadline, and leaves behind if it does not stop within a second
  (:func:`storage.readonly_sqlite.run_sqlite`).
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

from storage.errors import QueryError, StorageError, StorageURLError
from storage.readonly_limits import MAX_ROWS, MAX_TIMEOUT_S, RESULT_BYTES, QueryResult
from storage.readonly_pg import run_postgres
from storage.readonly_sqlite import run_sqlite
from storage.sqlscan import check_readonly_sql
from storage.urls import backend_of, masked_url, resolve_url, sqlite_path

__all__ = ["MAX_ROWS", "MAX_TIMEOUT_S", "RESULT_BYTES", "QueryResult", "run_readonly"]


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
        return run_sqlite(path, sql, max_rows=max_rows, timeout_s=float(timeout_s))
    if backend == "postgresql":
        check_readonly_sql(sql, "postgresql")
        return run_postgres(
            canonical, sql, max_rows=max_rows, timeout_s=float(timeout_s), reader_url=reader_url
        )
    raise StorageError(
        f"dynl2 sql supports SQLite and PostgreSQL stores, but {masked_url(canonical)!r} is "
        f"{backend}; query it with the database's own read-only client instead."
    )
