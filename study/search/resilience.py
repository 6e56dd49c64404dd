"""Riding out a database that goes away for a while: retry with backoff, then give up clearly.

A PostgreSQL server restarts, a network link drops, a SQLite file stays locked past its busy
timeout: each surfaces as a driver *operational* error (SQLAlchemy's ``OperationalError``,
Optuna's ``StorageInternalError`` wrapping one, our ``StorageUnavailable``). A worker that has
joined an experiment retries each database step that failed that way, waiting 0.1 s, 0.2 s, ...
up to 5 s between tries (with jitter, so workers do not knock in step), and carries on where it
was once the database answers. If it stays away longer than the *patience* (``$DYNL2_DB_PATIENCE``
seconds, default 300) the worker stops with :class:`DatabaseAway`: one line, exit status 1; its
running trial keeps a stale heartbeat and is retried by whoever runs next.

A server that refuses a connection for want of slots (SQLSTATE 53300 ``too_many_connections``:
"sorry, too many clients already", "too many connections for role/database", "remaining
connection slots are reserved"; 53400 ``configuration_limit_exceeded``) is an outage of the same
kind: a shared cluster full for now, whose slots free up as other clients leave. So is a pool
that had no free connection within its timeout (SQLAlchemy's ``TimeoutError``, see
:data:`storage.engine.POOL_TIMEOUT_S`). docs/connections.md sizes the budget.

Every step wrapped here must be safe to run twice, since a failure may come after the database
applied it (a lost acknowledgement): the call sites pass upserts, reads and ``tell`` with
``skip_if_finished``. Errors that are not about reaching the database (a constraint, a bug) are
never retried.
"""

from __future__ import annotations

import random
import sqlite3
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TypeVar

import optuna
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from storage import StorageUnavailable, masked_text
from study.config import env
from study.errors import StudyError

__all__ = [
    "DEFAULT_PATIENCE_S",
    "PATIENCE_ENV",
    "DatabaseAway",
    "Patience",
    "driver_message",
    "is_transient",
    "retrying",
    "slots_full",
]

T = TypeVar("T")

PATIENCE_ENV = "DYNL2_DB_PATIENCE"
DEFAULT_PATIENCE_S = 300.0  # a server restart or failover takes seconds to a minute or two


class DatabaseAway(StudyError):
    """The database did not answer for longer than the patience (exit status 1)."""


@dataclass(frozen=True)
class Patience:
    seconds: float = DEFAULT_PATIENCE_S  # how long one step may keep failing before giving up
    first_wait: float = 0.1  # seconds before the first retry, doubled after each failure
    max_wait: float = 5.0  # the longest pause between two tries

    @classmethod
    def from_env(cls) -> Patience:
        """``$DYNL2_DB_PATIENCE`` seconds (tests use a few), else the default; checked by
        :func:`study.config.env.db_patience`."""
        seconds = env.db_patience()
        return cls() if seconds is None else cls(seconds)


def is_transient(exc: BaseException) -> bool:
    """Whether ``exc`` (or what caused it) says the database could not be reached or used
    for now, rather than that the request itself was wrong."""
    for current in _causes(exc):
        if isinstance(current, PoolTimeout):
            return True  # every connection of the pool busy for its whole timeout
        if isinstance(current, DBAPIError):
            if current.connection_invalidated:
                return True
            return current.orig is not None and _transient_driver_error(current.orig)
        if _transient_driver_error(current):
            return True
        if isinstance(current, optuna.exceptions.UpdateFinishedTrialError):
            return False  # the database answered, and said no
        if isinstance(current, StorageUnavailable) and current.__cause__ is None:
            return True  # raised by us about reaching the database, with no driver error
    return False


def _causes(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and what caused it, each once: ``__cause__``, else ``__context__``."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


# SQLite reports a syntax error or a missing table as an OperationalError too: only these
# messages are about the file being unavailable for now.
_SQLITE_TRANSIENT = ("locked", "busy", "disk i/o", "unable to open")


# The server's "no slot for you now": SQLSTATEs, and the words for a refusal at connection
# time, where libpq gives no SQLSTATE.
_SLOTS_SQLSTATES = frozenset({"53300", "53400"})
_SLOTS_WORDS = ("too many clients", "too many connections", "connection slots are reserved")


def slots_full(exc: BaseException) -> bool:
    """Whether ``exc`` (or what caused it) is the server refusing a connection for want of
    slots (``max_connections``, a role's or a database's ``CONNECTION LIMIT``)."""
    for current in _causes(exc):
        inner = getattr(current, "orig", None) or current
        if getattr(inner, "sqlstate", None) in _SLOTS_SQLSTATES:
            return True
        if _transient_driver_error(inner) and any(w in str(inner).lower() for w in _SLOTS_WORDS):
            return True
    return False


def _transient_driver_error(exc: BaseException) -> bool:
    kind = type(exc)
    if getattr(exc, "sqlstate", None) in _SLOTS_SQLSTATES:
        return True  # psycopg names these OperationalError too; said here whatever the class
    if isinstance(exc, sqlite3.OperationalError):
        return any(word in str(exc).lower() for word in _SQLITE_TRANSIENT)
    # psycopg and pymysql: OperationalError is the connection failing (refused, closed by the
    # server, the server shutting down), never the statement. Matched by name: both are
    # optional dependencies.
    return kind.__module__.startswith(("psycopg", "pymysql")) and any(
        base.__name__ == "OperationalError" for base in kind.__mro__
    )


def retrying(
    step: Callable[[], T],
    what: str,
    *,
    patience: Patience | None = None,
    note: Callable[[str], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> T:
    """Run ``step``; while it fails with a transient database error, wait and run it again.

    ``what`` names the step for messages ("recording a trial's epochs"). ``note`` hears one
    line when the database stops answering and one when it is back. After ``patience``
    seconds of failures, raises :class:`DatabaseAway` naming the step and the last error.
    """
    patience = patience or Patience.from_env()
    wait = patience.first_wait
    first_failure: float | None = None
    while True:
        try:
            result = step()
        except Exception as exc:
            if not is_transient(exc):
                raise
            now = clock()
            if first_failure is None:
                first_failure = now
                if note is not None:
                    why = "had no connection free" if slots_full(exc) else "did not answer"
                    note(
                        f"the database {why} while {what} ({driver_message(exc)}); "
                        f"retrying for up to {patience.seconds:g} s"
                    )
            if now - first_failure >= patience.seconds:
                raise DatabaseAway(
                    f"the database did not answer for {now - first_failure:.0f} s while {what} "
                    f"(limit {PATIENCE_ENV}={patience.seconds:g} s): {driver_message(exc)}"
                ) from exc
            left = first_failure + patience.seconds - now
            sleep(min(wait * random.uniform(1.0, 1.5), left))
            wait = min(2 * wait, patience.max_wait)
            continue
        if first_failure is not None and note is not None:
            note(f"the database answers again after {clock() - first_failure:.1f} s")
        return result


def driver_message(exc: BaseException) -> str:
    """The first line of the innermost driver message (SQLAlchemy appends SQL and links;
    Optuna's StorageInternalError hides the driver's words behind a generic sentence), with
    any URL or ``password=`` in it masked."""
    inner: BaseException = exc
    while inner.__cause__ is not None:
        inner = inner.__cause__
    text = str(getattr(inner, "orig", None) or inner).strip()
    return masked_text(text.splitlines()[0]) if text else type(inner).__name__
