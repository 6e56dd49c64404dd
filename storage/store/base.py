"""What every part of the store stands on: the connection, its transactions, the lock, Optuna.

:class:`StoreBase` is the part of :class:`storage.Store` that its reads
(:mod:`storage.store.reads`) and writes (:mod:`storage.store.writes`) share. Every method of the
store runs in one transaction owned by :meth:`StoreBase._session`, which commits, rolls back and
turns driver errors into :class:`~storage.errors.StorageError`. Callers get frozen dataclasses
and DataFrames, never live ORM rows.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from types import TracebackType
from typing import Self

import optuna
import sqlalchemy
from sqlalchemy import Engine, inspect, select
from sqlalchemy.exc import (
    DBAPIError,
    IntegrityError,
    NoSuchTableError,
    OperationalError,
    SQLAlchemyError,
)
from sqlalchemy.orm import Session, sessionmaker

from storage.engine import engine_kwargs, pool_kwargs, quiet_pool_interrupts
from storage.errors import ExperimentNotFound, StorageError, StorageUnavailable, SuiteNotFound
from storage.locks import named_lock, try_named_lock
from storage.schema import Evaluation, Experiment, Suite
from storage.urls import backend_of, first_line, masked_url, sqlite_path

__all__ = ["EVALUATION_TABLE_COLUMNS", "StoreBase", "StoreVanished"]

# The columns of dynl2_evaluations at this code's schema version.
EVALUATION_TABLE_COLUMNS = frozenset(Evaluation.__table__.columns.keys())

_NOT_FOUND_LIST_LIMIT = 10  # names listed in an ExperimentNotFound or SuiteNotFound message
_OPTUNA_OPEN_ATTEMPTS = 5  # tries to open Optuna's storage while other workers create it


class StoreVanished(StorageError):
    """The SQLite file a store opened was deleted or replaced while it was in use: writes went
    to a file nobody can open any more. Not transient (:mod:`study.search.resilience` never retries
    it): the run stops with one line, exit status 1."""


class StoreBase:
    """The connection, transactions, lock and Optuna storage of :class:`storage.Store`."""

    def __init__(self, url: str, engine: Engine, *, read_only: bool = False) -> None:
        self._url = url
        self._engine = engine
        self._read_only = read_only  # Optuna's engine refuses writes too
        self._sessions = sessionmaker(bind=engine, expire_on_commit=False)
        self._optuna: dict[tuple[int | None, int | None], optuna.storages.RDBStorage] = {}
        self._file: tuple[str, tuple[int, int]] | None = None  # SQLite: path, (device, inode)
        self._evaluations_current = False  # seen every column of EVALUATION_TABLE_COLUMNS
        self._suites_present = False  # seen the suite tables (revision 0004)

    # ----------------------------------------------------------------------- lifecycle

    @property
    def url(self) -> str:
        """The canonical URL (may contain a password: use :attr:`display_url` in messages)."""
        return self._url

    @property
    def display_url(self) -> str:
        return masked_url(self._url)

    @property
    def backend(self) -> str:
        """``sqlite``, ``postgresql`` or ``mysql``."""
        return backend_of(self._url)

    @property
    def engine(self) -> Engine:
        return self._engine

    def close(self) -> None:
        """Release every connection this store holds (ours and Optuna's)."""
        for rdb in self._optuna.values():
            rdb.remove_session()
            rdb.engine.dispose()
        self._optuna.clear()
        self._engine.dispose()

    @contextmanager
    def lock(self, name: str) -> Iterator[None]:
        """Hold the named lock shared by every process on this store (see storage.locks).

        For short critical sections only: workers hold it while they count an arm's trials
        and ask Optuna for the next one, never while training. Each claim starts here, so
        it checks first that the SQLite file is still the one opened (:meth:`check_file`).
        """
        self.check_file()
        with named_lock(self._url, self._engine, name):
            yield

    @contextmanager
    def try_lock(self, name: str) -> Iterator[bool]:
        """Take the named lock if it is free, without waiting; yields whether it was taken.
        Unlike :meth:`lock`, for a long task one process should do alone (it dies with its
        holder, so a killed holder frees it)."""
        self.check_file()
        with try_named_lock(self._url, self._engine, name) as got:
            yield got

    def _remember_file(self) -> None:
        path = sqlite_path(self._url)
        if path is not None:
            try:
                found = os.stat(path)
            except FileNotFoundError:  # deleted between the connection and this look
                raise self._vanished(str(path)) from None
            self._file = (str(path), (found.st_dev, found.st_ino))

    @staticmethod
    def _vanished(path: str) -> StoreVanished:
        return StoreVanished(
            f"the SQLite file {path} was deleted or replaced while dynl2 used it: what "
            "was written to it since is lost; stop anything else still using it, then "
            "restore the file from a backup or start the experiment again"
        )

    def check_file(self) -> None:
        """SQLite: raise :class:`StoreVanished` if the file this store opened is gone or is
        another file now. Open connections keep writing to a deleted file without an error,
        and a new one creates an empty file in its place: either way what is written is lost.
        A ``stat``, so cheap enough for every transaction. Other backends: nothing to check."""
        if self._file is None:
            return
        path, identity = self._file
        try:
            found = os.stat(path)
        except FileNotFoundError:
            found = None
        except OSError:
            return  # cannot tell (a permission changed): the database itself will say
        if found is None or (found.st_dev, found.st_ino) != identity:
            raise self._vanished(path)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Store({self.display_url!r})"

    def optuna_storage(
        self, heartbeat_interval: int | None = None, grace_period: int | None = None
    ) -> optuna.storages.RDBStorage:
        """Optuna's RDBStorage on this store's database, for ``optuna.create_study`` & co.

        One instance per ``(heartbeat_interval, grace_period)`` is kept and closed with the
        store; they share one engine (:func:`_sibling`), so Optuna's connections stay within
        one pool however many a process asks for. SQLite connections get the same pragmas as
        ours (foreign keys ON, so deleting a study cascades to ``dynl2_epochs``); a server's,
        the same name and pool bounds
        (:func:`storage.engine.pool_kwargs`).
        """
        key = (heartbeat_interval, grace_period)
        if key not in self._optuna:
            first = next(iter(self._optuna.values()), None)
            self._optuna[key] = (
                self._new_optuna_storage(heartbeat_interval, grace_period)
                if first is None
                else _sibling(first, heartbeat_interval, grace_period)
            )
        return self._optuna[key]

    def _new_optuna_storage(
        self, heartbeat_interval: int | None, grace_period: int | None
    ) -> optuna.storages.RDBStorage:
        for attempt in range(1, _OPTUNA_OPEN_ATTEMPTS + 1):
            try:
                # Once the tables exist, skip_table_creation saves a round of CREATE checks
                # and keeps `create=False` stores free of writes.
                optuna_storage = optuna.storages.RDBStorage(
                    self._url,
                    engine_kwargs={
                        **engine_kwargs(self._url, read_only=self._read_only),
                        **pool_kwargs(self._url),
                    },
                    heartbeat_interval=heartbeat_interval,
                    grace_period=grace_period,
                    skip_table_creation=(
                        bool(self._optuna) or self._read_only or self._has_table("trials")
                    ),
                )
                quiet_pool_interrupts(optuna_storage.engine)
                return optuna_storage
            except (IntegrityError, OperationalError) as exc:
                # Workers opening a fresh database together race in Optuna's CREATE TABLE
                # and alembic stamp (UNIQUE constraint failed: alembic_version); the loser
                # finds everything in place on the next attempt.
                if attempt == _OPTUNA_OPEN_ATTEMPTS:
                    raise StorageError(
                        f"Optuna could not open its tables in {self._where()}: {first_line(exc)}"
                    ) from exc
                time.sleep(0.05 * attempt)
            except (SQLAlchemyError, RuntimeError) as exc:
                raise StorageError(
                    f"Optuna could not open its tables in {self._where()}: {first_line(exc)}"
                ) from exc
        raise AssertionError("unreachable: the loop returns or raises")

    # ------------------------------------------------------------------ transactions

    @contextmanager
    def _session(self) -> Iterator[Session]:
        """One transaction: commit on success, roll back on any error, wrap driver errors."""
        self.check_file()
        session = self._sessions()
        try:
            yield session
            session.commit()
        except BaseException as exc:
            _quiet_rollback(session)
            if isinstance(exc, OperationalError):
                raise StorageUnavailable(
                    f"The database in {self._where()} could not complete the operation: "
                    f"{first_line(exc.orig)}"
                ) from exc
            if isinstance(exc, DBAPIError):
                raise StorageError(
                    f"The database in {self._where()} refused the operation: "
                    f"{first_line(exc.orig)}"
                ) from exc
            raise
        finally:
            session.close()

    def _where(self) -> str:
        path = sqlite_path(self._url)
        if path is not None:
            return f"the SQLite file {path}"
        url = self._engine.url
        port = f":{url.port}" if url.port else ""
        return f"database {url.database!r} on the {self.backend} server {url.host}{port}"

    def _check_connection(self) -> None:
        try:
            with self._engine.connect() as connection:
                connection.execute(sqlalchemy.text("SELECT 1"))
        except SQLAlchemyError as exc:
            raise StorageUnavailable(
                f"Cannot connect to {self._where()}: {first_line(exc)}"
            ) from exc

    def _has_table(self, name: str) -> bool:
        return inspect(self._engine).has_table(name)

    def _evaluation_columns(self, session: Session) -> frozenset[str]:
        """The columns ``dynl2_evaluations`` has. A store an older dynl2 wrote, opened with
        ``create=False``, is read without upgrading it: it lacks the columns added since
        (``replicate``: revision 0002; ``trainer_seed`` and ``diverged``: 0003). Only the
        current shape is remembered: another process may upgrade the store while this one
        reads it, never the other way."""
        if self._evaluations_current:
            return EVALUATION_TABLE_COLUMNS
        try:
            columns = inspect(session.connection()).get_columns(Evaluation.__tablename__)
        except NoSuchTableError:
            return EVALUATION_TABLE_COLUMNS  # the query itself will say the table is missing
        found = frozenset(column["name"] for column in columns)
        self._evaluations_current = found >= EVALUATION_TABLE_COLUMNS
        return found

    def _experiment_row(self, session: Session, name: str) -> Experiment:
        row = session.scalars(select(Experiment).where(Experiment.name == name)).one_or_none()
        if row is not None:
            return row
        known = list(
            session.scalars(
                select(Experiment.name).order_by(Experiment.id).limit(_NOT_FOUND_LIST_LIMIT + 1)
            )
        )
        listing = _listing(known, "the store has no experiments yet", "known experiments")
        raise ExperimentNotFound(f"No experiment named {name!r} in {self._where()} ({listing}).")

    def _has_suites(self, session: Session) -> bool:
        """Whether the suite tables exist. A store an older dynl2 wrote (before revision 0004),
        opened with ``create=False``, is read without upgrading it: it has none, and reads as
        a store without suites. Only their presence is remembered: a store is upgraded while
        this one reads it, never the other way."""
        if not self._suites_present:
            self._suites_present = inspect(session.connection()).has_table(Suite.__tablename__)
        return self._suites_present

    def _suite_row(self, session: Session, name: str) -> Suite:
        known: list[str] = []
        if self._has_suites(session):
            row = session.scalars(select(Suite).where(Suite.name == name)).one_or_none()
            if row is not None:
                return row
            known = list(
                session.scalars(
                    select(Suite.name).order_by(Suite.id).limit(_NOT_FOUND_LIST_LIMIT + 1)
                )
            )
        listing = _listing(known, "no suites yet", "suites")
        raise SuiteNotFound(f"No suite named {name!r} in {self._where()}; {listing}")


def _sibling(
    first: optuna.storages.RDBStorage, heartbeat_interval: int | None, grace_period: int | None
) -> optuna.storages.RDBStorage:
    """An RDBStorage like ``first`` (the same engine, sessions and schema check) with other
    heartbeat settings. A second ``RDBStorage(...)`` would open an engine and a pool of its
    own: a worker reads the studies through one and beats through another, and its connection
    budget would grow by a pool. ``copy.copy`` would not do: RDBStorage's pickling state drops
    the engine, and a copy makes a new one. The heartbeat settings are plain attributes read on
    each use; they are checked as RDBStorage's constructor checks them."""
    if heartbeat_interval is not None and heartbeat_interval <= 0:
        raise ValueError("The value of `heartbeat_interval` should be a positive integer.")
    if grace_period is not None and grace_period <= 0:
        raise ValueError("The value of `grace_period` should be a positive integer.")
    sibling = object.__new__(type(first))
    sibling.__dict__.update(first.__dict__)
    sibling.heartbeat_interval = heartbeat_interval
    sibling.grace_period = grace_period
    sibling.heartbeat_stale_trial_callback = None
    sibling.failed_trial_callback = None
    return sibling


def _quiet_rollback(session: Session) -> None:
    # If the connection is gone the rollback fails too; the original error is the one to report.
    with suppress(SQLAlchemyError):
        session.rollback()


def _listing(known: list[str], none: str, what: str) -> str:
    """The names a not-found message lists: ``none``, ``WHAT: a, b``, or the first
    :data:`_NOT_FOUND_LIST_LIMIT` as ``WHAT include a, b, ...``."""
    if not known:
        return none
    if len(known) > _NOT_FOUND_LIST_LIMIT:
        return f"{what} include {', '.join(known[:_NOT_FOUND_LIST_LIMIT])}"
    return f"{what}: {', '.join(known)}"
