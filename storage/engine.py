"""SQLAlchemy engines configured for many worker processes sharing one database.

SQLite gets WAL journaling (readers never block the writer), a 30 s busy timeout (writers queue
instead of failing with "database is locked") and foreign keys ON (so our ``ON DELETE CASCADE``
runs when Optuna deletes a study). PostgreSQL and MySQL get ``pool_pre_ping`` so a worker that
sat idle through a long epoch does not trip over a connection the server has closed, and
PostgreSQL's connections a cursor that closes them when a stop signal leaves them mid-query
(:mod:`storage.pg_cursor`).

Connections to a database server are a budget (docs/connections.md). Every PostgreSQL
connection names its process in ``application_name`` (``dynl2 worker HOST:PID``), so
``pg_stat_activity`` counts them per process, and each engine's pool is bounded
(:func:`pool_kwargs`): a thread that finds it full waits for a connection rather than opening
another. Behind a pooler in transaction mode (PgBouncer, ``$DYNL2_PGBOUNCER=1``) nothing may
outlive a transaction: psycopg's server-side prepared statements are turned off and a read-only
engine makes each transaction read-only instead of its session.
"""

from __future__ import annotations

import logging
import os
import socket
import sqlite3
import sys
from pathlib import Path
from typing import Any

import sqlalchemy
from sqlalchemy import Engine
from sqlalchemy.engine import make_url

from storage.errors import StorageUnavailable, StorageURLError
from storage.urls import backend_of, masked_url, resolve_url, sqlite_path

__all__ = [
    "APP_NAME_MAX",
    "PGBOUNCER_ENV",
    "POOL_OVERFLOW",
    "POOL_SIZE",
    "POOL_TIMEOUT_S",
    "PROCESS_CONNECTIONS",
    "SQLITE_BUSY_TIMEOUT_S",
    "application_name",
    "behind_pgbouncer",
    "engine_kwargs",
    "make_engine",
    "names_itself",
    "pool_kwargs",
    "set_process_kind",
]

SQLITE_BUSY_TIMEOUT_S = 30  # seconds a writer waits for the lock before giving up
CONNECT_TIMEOUT_S = 10  # seconds to wait for a database server to answer

# The pool of each engine on a database server (dynl2's own and Optuna's, per store): at most
# POOL_SIZE + POOL_OVERFLOW connections at once; a thread that finds them all busy waits up to
# POOL_TIMEOUT_S for one. Two cover what a process does at once: dynl2's engine holds a named
# lock's transaction while the body reads or writes on a second; Optuna's serves the main
# thread and a worker's heartbeat thread. docs/connections.md gives the budget per process.
POOL_SIZE = 2  # connections kept open between transactions
POOL_OVERFLOW = 0  # more opened when all are busy, closed again when returned
POOL_TIMEOUT_S = 60.0  # seconds a thread waits for a free connection before failing
# The most one process holds on a server per store it has open: dynl2's engine and Optuna's.
PROCESS_CONNECTIONS = 2 * (POOL_SIZE + POOL_OVERFLOW)

PGBOUNCER_ENV = "DYNL2_PGBOUNCER"  # "1": the URL names a pooler in transaction mode
APP_NAME_MAX = 63  # PostgreSQL keeps the first 63 bytes of application_name

_kind: str | None = None  # set by set_process_kind, else guessed from the command line


def set_process_kind(kind: str | None) -> None:
    """Name what this process is (``"serve"``, ``"worker"``) in the ``application_name`` of the
    connections it opens from now on; ``None`` goes back to the command's verb."""
    global _kind
    _kind = kind


def _command_verb() -> str | None:
    """The verb of a ``dynl2 VERB`` or ``python -m study VERB`` command line."""
    program = Path(sys.argv[0]) if sys.argv and sys.argv[0] else None
    if program is None:
        return None
    ours = program.name == "dynl2" or (
        program.name == "__main__.py" and program.parent.name == "study"
    )
    if not ours:
        return None
    verb = next((a for a in sys.argv[1:] if not a.startswith("-")), None)
    return verb if verb is not None and verb.isidentifier() else None


def application_name(kind: str | None = None) -> str:
    """``dynl2 KIND HOST:PID``: how a connection names its process on the server (KIND: the
    process kind set with :func:`set_process_kind`, else the CLI verb, else ``python``). Never
    holds a secret: the verb, the host name and the process id only."""
    kind = kind or _kind or _command_verb() or "python"
    pid = f":{os.getpid()}"
    head = f"dynl2 {kind} "
    host = socket.gethostname()[: max(0, APP_NAME_MAX - len(head) - len(pid))]
    return (head + host + pid).encode()[:APP_NAME_MAX].decode(errors="ignore")


def behind_pgbouncer() -> bool:
    """Whether ``$DYNL2_PGBOUNCER`` says the database URL names a pooler in transaction mode
    (``1``; ``0`` or unset: a server, or a pooler in session mode)."""
    value = os.environ.get(PGBOUNCER_ENV, "").strip()
    if value not in ("", "0", "1"):
        raise StorageURLError(
            f"The environment variable {PGBOUNCER_ENV} must be 1 (the storage URL names "
            f"PgBouncer in transaction pooling mode) or 0, but got {value!r}."
        )
    return value == "1"


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
    PostgreSQL by ``default_transaction_read_only`` (behind PgBouncer, which refuses that
    startup option and would not keep it, by ``BEGIN READ ONLY`` for each transaction),
    MySQL/MariaDB by a read-only session. Pool bounds are apart (:func:`pool_kwargs`): the
    migrations use these with a pool of their own.
    """
    backend = backend_of(url)
    if backend == "sqlite":
        factory = ReadOnlySQLiteConnection if read_only else Dynl2SQLiteConnection
        return {"connect_args": {"timeout": SQLITE_BUSY_TIMEOUT_S, "factory": factory}}
    if backend == "postgresql":
        from storage.pg_cursor import InterruptSafeCursor  # psycopg is an optional extra

        pooled = behind_pgbouncer()
        args: dict[str, Any] = {
            "connect_timeout": CONNECT_TIMEOUT_S,
            "cursor_factory": InterruptSafeCursor,
        }
        if not names_itself(url):
            args["application_name"] = application_name()
        if pooled:
            # A statement psycopg prepares on one server connection is unknown on the next
            # one PgBouncer hands out ("prepared statement _pg3_0 does not exist").
            args["prepare_threshold"] = None
        kwargs: dict[str, Any] = {"pool_pre_ping": True, "connect_args": args}
        if read_only:
            # psycopg's read_only: each transaction starts BEGIN READ ONLY.
            kwargs["execution_options"] = {"postgresql_readonly": True}
            if not pooled:  # the session's default too, for whatever runs outside one
                args["options"] = "-c default_transaction_read_only=on"
        return kwargs
    args = {"connect_timeout": CONNECT_TIMEOUT_S}
    if read_only:
        args["init_command"] = "SET SESSION TRANSACTION READ ONLY"
    return {
        "pool_pre_ping": True,
        "pool_recycle": 3600,  # below MySQL's default wait_timeout of 8 h
        "connect_args": args,
    }


def names_itself(url: str) -> bool:
    """Whether the user named the connections already: ``?application_name=`` in the URL or
    libpq's ``$PGAPPNAME``, which dynl2's own name would override."""
    return "application_name" in make_url(url).query or bool(os.environ.get("PGAPPNAME"))


def pool_kwargs(url: str) -> dict[str, Any]:
    """The pool bounds for ``create_engine`` on a database server: at most :data:`POOL_SIZE`
    + :data:`POOL_OVERFLOW` connections, and a thread that finds them busy waits for one
    (:data:`POOL_TIMEOUT_S`). SQLite (a file, no connection budget) keeps SQLAlchemy's."""
    if backend_of(url) == "sqlite":
        return {}
    return {"pool_size": POOL_SIZE, "max_overflow": POOL_OVERFLOW, "pool_timeout": POOL_TIMEOUT_S}


def make_engine(
    url: str | None = None,
    *,
    create_dirs: bool = True,
    read_only: bool = False,
) -> Engine:
    """Create an engine for ``url`` (resolved with :func:`storage.urls.resolve_url`).

    With ``create_dirs`` the parent folder of a SQLite file is created; the file itself is
    created by SQLite on the first connection. With ``read_only`` its connections refuse
    writes (:func:`engine_kwargs`). On a server its pool is bounded (:func:`pool_kwargs`).
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
            canonical,
            **engine_kwargs(canonical, read_only=read_only),
            **pool_kwargs(canonical),
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
