"""A stop signal landing anywhere in a PostgreSQL call surfaces as the stop, and the engine
(ours and Optuna's) goes on working: :mod:`storage.pg_cursor`."""

from __future__ import annotations

import os
import random
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

import psycopg
import pytest
from sqlalchemy import Engine, text

import storage
from storage.engine import make_engine
from storage.pg_cursor import InterruptSafeCursor, close_if_stuck
from tests.storage.backends import libpq_url


class _Stop(KeyboardInterrupt):
    pass


_landed: list[int] = []  # one entry per SIGUSR1 the handler has turned into a stop


def _raise_stop(signum: int, frame: FrameType | None) -> None:
    _landed.append(signum)
    raise _Stop


@contextmanager
def _stop_on_sigusr1() -> Iterator[None]:
    """SIGUSR1 raises :class:`_Stop` in the main thread, as :mod:`study.search.signals` raises its
    stop on SIGTERM."""
    previous = signal.signal(signal.SIGUSR1, _raise_stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGUSR1, previous)


def _interrupt_a_busy_engine(engine: Engine, rounds: int) -> list[str]:
    """Send SIGUSR1 at a random moment into a loop of checkouts (each pre-pinged), queries and
    commits, ``rounds`` times; after each, the engine must answer again. Returns what went
    wrong, one line per round."""
    rng = random.Random(1234)
    wrong: list[str] = []
    with _stop_on_sigusr1():
        for i in range(rounds):
            delay = rng.uniform(0.001, 0.03)
            timer = threading.Timer(delay, os.kill, (os.getpid(), signal.SIGUSR1))
            # Every moment from the timer's start to the signal's landing is inside this try,
            # so the stop never escapes the round, wherever a loaded machine delays it to.
            _landed.clear()
            try:
                timer.start()
                try:
                    while not _landed:  # a stop Python dropped ("Exception ignored") ends it
                        with engine.connect() as connection:
                            connection.execute(text("SELECT 1")).scalar()
                            connection.commit()
                except Exception as exc:  # the stop replaced by a database error
                    wrong.append(f"round {i}: {type(exc).__name__}: {str(exc).splitlines()[0]}")
                    while not _landed:  # the stop was not what failed: take it here
                        time.sleep(0.01)
            except _Stop:
                pass
            timer.join()  # it has fired: the stop was raised above
            try:
                with engine.connect() as connection:
                    assert connection.execute(text("SELECT 2")).scalar() == 2
            except Exception as exc:
                wrong.append(f"round {i}, after: {type(exc).__name__}: {exc}")
    return wrong


def test_an_interrupted_engine_raises_the_stop_and_goes_on(postgres_url: str) -> None:
    engine = make_engine(postgres_url)
    try:
        # Without the cursor about one round in four ended in "can't change 'autocommit' now:
        # connection in transaction status ACTIVE" from SQLAlchemy's pre-ping.
        assert _interrupt_a_busy_engine(engine, 150) == []
    finally:
        engine.dispose()


def test_optunas_engine_gets_the_cursor_too(postgres_url: str) -> None:
    with storage.open(postgres_url) as store:
        engine = store.optuna_storage().engine
        with engine.connect() as connection:
            raw = connection.connection.dbapi_connection
            assert isinstance(raw, psycopg.Connection)
            assert raw.cursor_factory is InterruptSafeCursor
        assert _interrupt_a_busy_engine(engine, 30) == []


def test_close_if_stuck_closes_only_a_connection_left_mid_query(postgres_url: str) -> None:
    with psycopg.connect(libpq_url(postgres_url), autocommit=True) as connection:
        assert not close_if_stuck(connection)  # idle
        with connection.transaction():
            connection.execute("SELECT 1")
            assert not close_if_stuck(connection)  # inside a transaction
        connection.pgconn.send_query(b"SELECT pg_sleep(0.2)")  # sent, its answer never read
        assert close_if_stuck(connection)
        assert connection.closed


def test_an_exception_leaves_the_connection_open(postgres_url: str) -> None:
    engine = make_engine(postgres_url)
    try:
        with engine.connect() as connection:
            raw = connection.connection.dbapi_connection
            with pytest.raises(Exception, match="division by zero"):
                connection.execute(text("SELECT 1/0"))
            assert isinstance(raw, psycopg.Connection) and not raw.closed
    finally:
        engine.dispose()
