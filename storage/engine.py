"""SQLAlchemy engines configured for many worker processes sharing one database.

SQLite gets WAL journaling (readers never block the writer), a 30 s busy timeout (writers queue
instead of failing with "database is locked") and foreign keys ON (so our ``ON DELETE CASCADE``
runs when Optuna deletes a study). PostgreSQL and MySQL get ``pool_pre_ping`` so a worker that
sat idle through a long epoch does not trip over a connection the server has closed, and
PostgreSQL's connections a cursor that closes them when a stop signal leaves them mid-query
(:mod:`storage.pg_cursor`).
"""

from __future__ import annotations

import logging
import sqlite3
from typing import Any

import sqlalchemy
from sqlalchemy import Engine

from storage.errors import StorageUnavailable
from storage.urls import backend_of, masked_url, resolve_url, sqlite_path

__all__ = ["SQLITE_BUSY_TIMEOUT_S", "engine_kwargs", "make_engine"]

SQLITE_BUSY_TIMEOUT_S = 30  # seconds a writer waits for the lock before giving up
CONNECT_TIMEOUT_S = 10  # seconds to wait for a database server to answer


class Dynl2SQLiteConnection(sqlite3.Connection):
    """A ``sqlite3`` connection that sets our pragmas as soon as it opens.

    Why a connection factory rather than a SQLAlchemy ``connect`` event listener: the same
    settings must apply to Optuna's own engine inside ``RDBStorage``, which we can only reach
    through ``engine_kwargs``; those kwargs are also what ``RDBStorage`` keeps when it is
    pickled into a worker process, and a class (unlike a listener on one engine) survives that.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # busy_timeout first: switching a fresh file to WAL takes a lock other workers may
        # hold. WAL is a property of the file (set once, kept); the rest are per connection.
        self.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_S * 1000}").close()
        self.execute("PRAGMA journal_mode=WAL").close()
        self.execute("PRAGMA foreign_keys=ON").close()
        # NORMAL is the documented pairing with WAL: durable against application crashes,
        # and may lose the last commits only on power loss, for far fewer fsyncs per epoch.
        self.execute("PRAGMA synchronous=NORMAL").close()


class ReadOnlySQLiteConnection(Dynl2SQLiteConnection):
    """The same connection, refusing every write (``PRAGMA query_only``): the read-only door
    of a process that must never change the store (``dynl2 serve``'s reads)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.execute("PRAGMA query_only=ON").close()


def engine_kwargs(url: str, *, read_only: bool = False) -> dict[str, Any]:
    """Keyword arguments for ``create_engine`` (ours and Optuna's RDBStorage) for ``url``.

    With ``read_only`` every connection refuses writes: SQLite by ``PRAGMA query_only``,
    PostgreSQL by ``default_transaction_read_only``, MySQL/MariaDB by a read-only session.
    """
    backend = backend_of(url)
    if backend == "sqlite":
        factory = ReadOnlySQLiteConnection if read_only else Dynl2SQLiteConnection
        return {"connect_args": {"timeout": SQLITE_BUSY_TIMEOUT_S, "factory": factory}}
    if backend == "postgresql":
        from storage.pg_cursor import InterruptSafeCursor  # psycopg is an optional extra

        args: dict[str, Any] = {
            "connect_timeout": CONNECT_TIMEOUT_S,
            "cursor_factory": InterruptSafeCursor,
        }
        if read_only:
            args["options"] = "-c default_transaction_read_only=on"
        return {"pool_pre_ping": True, "connect_args": args}
    args = {"connect_timeout": CONNECT_TIMEOUT_S}
    if read_only:
        args["init_command"] = "SET SESSION TRANSACTION READ ONLY"
    return {
        "pool_pre_ping": True,
        "pool_recycle": 3600,  # below MySQL's default wait_timeout of 8 h
        "connect_args": args,
    }


def make_engine(
    url: str | None = None, *, create_dirs: bool = True, read_only: bool = False
) -> Engine:
    """Create an engine for ``url`` (resolved with :func:`storage.urls.resolve_url`).

    With ``create_dirs`` the parent folder of a SQLite file is created; the file itself is
    created by SQLite on the first connection. With ``read_only`` its connections refuse
    writes (:func:`engine_kwargs`).
    """
    canonical = resolve_url(url)
    path = sqlite_path(canonical)
    if path is not None and create_dirs:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageUnavailable(
                f"Cannot create the folder {path.parent} for the SQLite file: "
                f"{exc.strerror or exc}; choose a writable place for the storage URL."
            ) from exc
    try:
        engine = sqlalchemy.create_engine(
            canonical, **engine_kwargs(canonical, read_only=read_only)
        )
    except ImportError as exc:  # the driver is an optional extra (psycopg) or not ours (pymysql)
        raise StorageUnavailable(
            f"The database driver {exc.name!r} for {masked_url(canonical)!r} is not installed; "
            f"install it (pip install {exc.name}) or use another storage URL."
        ) from exc
    quiet_pool_interrupts(engine)
    return engine


class _NoInterrupts(logging.Filter):
    """Drops the pool's "Exception during reset or similar" record of an interrupt."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return exc is None or isinstance(exc, Exception)


_NO_INTERRUPTS = _NoInterrupts()


def quiet_pool_interrupts(engine: Engine) -> None:
    r"""Keep the traceback of an interrupt out of ``engine``'s pool log.

    SQLAlchemy's pool logs "Exception during reset or similar" at ERROR, with the traceback,
    for any exception raised while it returns a connection (a rollback on check-in, a
    connection collected by the garbage collector), then raises a ``KeyboardInterrupt`` again
    (an ``Exception`` it swallows). dynl2's stop signals are ``KeyboardInterrupt``\ s: one landing
    there goes on to the code that handles stops, and its traceback on stderr would only call
    an ordinary stop a failure. Exceptions are still logged. The pool's logger is one per pool
    class, so this also covers Optuna's engines of the same class."""
    logger = engine.pool.logger
    target = getattr(logger, "logger", logger)  # an echoing pool wraps the class's logger
    if isinstance(target, logging.Logger) and _NO_INTERRUPTS not in target.filters:
        target.addFilter(_NO_INTERRUPTS)
