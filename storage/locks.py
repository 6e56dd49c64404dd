"""A named lock shared by every process that uses one store, held for short critical sections.

Workers hold it only while they count an arm's trials and ask Optuna for the next one, so two
workers never both take an arm's last slot. It dies with its holder: PostgreSQL's
transaction-scoped advisory lock ends with the transaction that holds it (also through
PgBouncer in transaction mode), MySQL's GET_LOCK with the connection, and the SQLite lock file's
``flock`` with the process — a killed worker never leaves it held. A SQLite lock's file is
removed by its holder on release, so an idle store has none beside it (a killed holder's file
stays until the next holder of that name removes it).
"""

from __future__ import annotations

__all__ = ["named_lock", "try_named_lock"]

import contextlib
import fcntl
import hashlib
import os
import random
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Engine, text
from sqlalchemy.exc import OperationalError

from .engine import behind_pgbouncer
from .errors import StorageUnavailable
from .urls import backend_of, sqlite_path

_FIRST_POLL_S = 0.005  # behind PgBouncer: the first pause of a waiter between two tries
_LAST_POLL_S = 0.2  # and the longest (holders keep the lock for milliseconds)


def _key(name: str) -> int:
    """A stable signed 64-bit key for PostgreSQL's advisory locks."""
    digest = hashlib.sha256(name.encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


@contextmanager
def named_lock(url: str, engine: Engine, name: str, timeout_s: float = 600.0) -> Iterator[None]:
    """Hold the lock ``name`` on the store at ``url`` for the body of the ``with``.

    Waits as long as the holder needs on SQLite and PostgreSQL (holders keep it for
    milliseconds and a dead holder releases it); MySQL's GET_LOCK gives up after ``timeout_s``.
    """
    with _lock(url, engine, name, timeout_s, wait=True) as got:
        if not got:
            raise StorageUnavailable(f"could not take the lock {name!r} in {timeout_s:.0f} s")
        yield


@contextmanager
def try_named_lock(url: str, engine: Engine, name: str) -> Iterator[bool]:
    """Take the lock ``name`` if no one holds it, without waiting: yields whether it was
    taken (held for the body of the ``with`` when it was). For a long task only one process
    should do at a time (an agent evaluating an experiment): the holder's death releases it."""
    with _lock(url, engine, name, 0.0, wait=False) as got:
        yield got


@contextmanager
def _file_lock(lock_file: Path, wait: bool) -> Iterator[bool]:
    """``flock`` on ``lock_file``, which exists only while someone holds or waits for it: the
    holder removes it before letting go, so no file is left per name once the store is idle
    (every experiment name a service was sent used to leave one for good). A waiter that wins
    the lock on a file removed meanwhile holds nothing anyone else can see, so it checks that
    the path still names the file it locked, and tries again if not."""
    while True:
        fd = os.open(lock_file, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                yield False
                return
            try:
                current = os.stat(lock_file)
            except FileNotFoundError:
                continue  # removed by the holder before us: lock the new one
            if not os.path.samestat(current, os.fstat(fd)):
                continue
            try:
                yield True
            finally:
                # Removed while held: whoever opens the path next makes a new file, and a
                # waiter on this one sees it gone and tries again.
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(lock_file)
                fcntl.flock(fd, fcntl.LOCK_UN)
            return
        finally:
            os.close(fd)


@contextmanager
def _pg_lock(engine: Engine, key: int, wait: bool) -> Iterator[bool]:
    """A transaction-scoped advisory lock, held by one open transaction on a connection of its
    own for the body of the ``with`` and released by its commit. Not a session lock
    (``pg_advisory_lock``): behind PgBouncer in transaction mode a session lock and its unlock
    may land on two server connections, and a lock left on a pooled server connection outlives
    its holder. Behind PgBouncer a waiter polls (``pg_try_advisory_xact_lock``, then a
    pause with no transaction open) rather than block: a blocked waiter would hold a server
    connection, and with the pool's few all held by waiters the holder could not get the
    one its body needs. The transaction only waits: it reads nothing (no snapshot is kept), and a
    holder that dies ends it, which releases the lock, on the server and through PgBouncer."""
    polled = wait and behind_pgbouncer()
    call = "pg_advisory_xact_lock" if wait and not polled else "pg_try_advisory_xact_lock"
    pause = _FIRST_POLL_S
    with engine.connect() as conn:
        while True:
            got = conn.execute(text(f"SELECT {call}(:k)"), {"k": key}).scalar()
            if got is not False:
                break
            conn.rollback()  # between tries, PgBouncer's server connection serves others
            if not polled:
                yield False
                return
            time.sleep(pause * random.uniform(1.0, 1.5))
            pause = min(2 * pause, _LAST_POLL_S)
        try:
            yield True
        finally:
            try:
                conn.commit()  # ends the transaction, and the lock with it
            except OperationalError:
                # The connection is gone (server restart, network): its transaction ended and
                # took the lock along. Never hand it back to the pool half-known.
                conn.invalidate()


@contextmanager
def _lock(url: str, engine: Engine, name: str, timeout_s: float, wait: bool) -> Iterator[bool]:
    backend = backend_of(url)
    if backend == "sqlite":
        path = sqlite_path(url)
        assert path is not None
        lock_file = Path(f"{path}.{hashlib.sha256(name.encode()).hexdigest()[:12]}.dynl2-lock")
        with _file_lock(lock_file, wait) as held:
            yield held
        return
    if backend == "postgresql":
        with _pg_lock(engine, _key(name), wait) as held:
            yield held
        return
    with engine.connect() as conn:
        got = conn.execute(
            text("SELECT GET_LOCK(:n, :t)"), {"n": name[:64], "t": int(timeout_s)}
        ).scalar()
        if got != 1:
            yield False
            return
        try:
            yield True
        finally:
            conn.execute(text("SELECT RELEASE_LOCK(:n)"), {"n": name[:64]})
