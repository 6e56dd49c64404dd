"""study.search.resilience: which errors are waited out, the backoff, the patience, the line."""

from __future__ import annotations

import sqlite3

import optuna
import psycopg
import pytest
from sqlalchemy.exc import IntegrityError, OperationalError

import storage
from study.errors import UsageError
from study.search.resilience import DatabaseAway, Patience, is_transient, retrying


def _wrapped(driver_error: Exception) -> Exception:
    """A driver error as SQLAlchemy raises it, inside Optuna's StorageInternalError."""
    try:
        try:
            raise OperationalError("SELECT 1", {}, driver_error)
        except OperationalError as exc:
            raise optuna.exceptions.StorageInternalError("commit failed") from exc
    except optuna.exceptions.StorageInternalError as outer:
        return outer


TRANSIENT = [
    _wrapped(psycopg.OperationalError("server closed the connection unexpectedly")),
    _wrapped(sqlite3.OperationalError("database is locked")),
    OperationalError("SELECT 1", {}, psycopg.errors.AdminShutdown("terminating connection")),
    storage.StorageUnavailable("Cannot connect"),
]
PERMANENT = [
    _wrapped(sqlite3.OperationalError("no such table: trials")),  # SQLite's OperationalError
    _wrapped(sqlite3.OperationalError('near "SELEC": syntax error')),
    IntegrityError("INSERT", {}, sqlite3.IntegrityError("UNIQUE constraint failed")),
    optuna.exceptions.UpdateFinishedTrialError("finished"),
    ValueError("a bug"),
]


@pytest.mark.parametrize("exc", TRANSIENT, ids=repr)
def test_transient(exc):
    assert is_transient(exc)


@pytest.mark.parametrize("exc", PERMANENT, ids=repr)
def test_permanent(exc):
    assert not is_transient(exc)


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds

    def __call__(self) -> float:
        return self.now


def test_waits_with_growing_pauses_and_carries_on():
    clock = FakeClock()
    failures = iter([TRANSIENT[0]] * 6)
    notes: list[str] = []

    def step() -> str:
        error = next(failures, None)
        if error is not None:
            raise error
        return "done"

    result = retrying(step, "testing", patience=Patience(60), note=notes.append,
                      sleep=clock.sleep, clock=clock)  # fmt: skip
    assert result == "done"
    assert len(clock.sleeps) == 6
    assert all(b > a for a, b in zip(clock.sleeps, clock.sleeps[1:], strict=False))
    assert max(clock.sleeps) <= 5.0 * 1.5
    assert len(notes) == 2
    assert "did not answer while testing" in notes[0] and "server closed" in notes[0]
    assert notes[1].startswith("the database answers again")


def test_gives_up_after_the_patience_with_one_line():
    clock = FakeClock()

    def step() -> None:
        raise TRANSIENT[0]

    with pytest.raises(DatabaseAway) as info:
        retrying(step, "claiming trials", patience=Patience(20), sleep=clock.sleep, clock=clock)
    message = str(info.value)
    assert "\n" not in message
    assert "did not answer for 20 s while claiming trials" in message
    assert "DYNL2_DB_PATIENCE=20" in message and "server closed the connection" in message
    assert 20 <= clock.now <= 21  # it never sleeps past the patience


def test_permanent_errors_are_raised_at_once():
    clock = FakeClock()

    def step() -> None:
        raise PERMANENT[0]

    with pytest.raises(optuna.exceptions.StorageInternalError):
        retrying(step, "x", patience=Patience(60), sleep=clock.sleep, clock=clock)
    assert clock.sleeps == []


@pytest.mark.parametrize(("text", "seconds"), [("", 300.0), ("0", 0.0), (" 2.5 ", 2.5)])
def test_patience_from_env(monkeypatch, text, seconds):
    monkeypatch.setenv("DYNL2_DB_PATIENCE", text)
    assert Patience.from_env().seconds == seconds


@pytest.mark.parametrize("text", ["-1", "nan", "inf", "soon", "1e9"])
def test_bad_patience_is_a_usage_error(monkeypatch, text):
    monkeypatch.setenv("DYNL2_DB_PATIENCE", text)
    with pytest.raises(UsageError, match="DYNL2_DB_PATIENCE"):
        Patience.from_env()
