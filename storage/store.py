"""The store: dynl2's tables and Optuna's RDBStorage on one database URL.

Open it with :func:`open` (exported as ``storage.open``). Every method runs in one transaction
owned by :meth:`Store._session`, which commits, rolls back and turns driver errors into
:class:`~storage.errors.StorageError`. Callers get frozen dataclasses and DataFrames, never live
ORM rows.
"""

from __future__ import annotations

import errno
import json
import math
import os
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from types import TracebackType
from typing import TYPE_CHECKING, Any

import optuna
import pandas as pd  # type: ignore[import-untyped, unused-ignore]
import sqlalchemy
from sqlalchemy import Engine, inspect, select
from sqlalchemy.dialects import mysql, postgresql, sqlite
from sqlalchemy.exc import (
    DBAPIError,
    IntegrityError,
    NoSuchTableError,
    OperationalError,
    SQLAlchemyError,
)
from sqlalchemy.orm import Session, sessionmaker

from storage import optuna_tables as ot
from storage import reads
from storage.engine import engine_kwargs, make_engine
from storage.errors import (
    ExperimentConflict,
    ExperimentNotFound,
    InvalidRecord,
    ReportNotFound,
    StorageError,
    StorageUnavailable,
)
from storage.locks import named_lock
from storage.records import EPOCH_METRICS, ExperimentInfo, Tally, check_name, check_replicate
from storage.schema import (
    SCHEMA_VERSION,
    Base,
    Epoch,
    Evaluation,
    Experiment,
    Meta,
    Report,
)
from storage.urls import ENV_VAR, backend_of, first_line, masked_url, resolve_url, sqlite_path

if TYPE_CHECKING:
    from storage import migrations

__all__ = ["Store", "StoreVanished", "open"]

_NOT_FOUND_LIST_LIMIT = 10  # experiment names listed in an ExperimentNotFound message
_OPTUNA_OPEN_ATTEMPTS = 5  # tries to open Optuna's storage while other workers create it
_SCHEMA_LOCK = "dynl2:schema"  # the named lock held while dynl2's tables are created/upgraded


class StoreVanished(StorageError):
    """The SQLite file a store opened was deleted or replaced while it was in use: writes went
    to a file nobody can open any more. Not transient (:mod:`study.resilience` never retries
    it): the run stops with one line, exit status 1."""


def open(url: str | None = None, *, create: bool = True) -> Store:
    """Open the dynl2 store at ``url`` (see :func:`storage.urls.resolve_url`).

    With ``create`` (the default) missing tables are created: Optuna's first, then ours; a
    store an older dynl2 wrote is upgraded to this code's schema (:mod:`storage.migrations`).
    With ``create=False`` nothing is written: a missing SQLite file or a database without
    dynl2 tables raises :class:`~storage.errors.StorageUnavailable` /
    :class:`~storage.errors.StorageError`, which is what read-only commands want, and an
    older store is read as it is. A store newer than this code is refused either way.
    """
    canonical = resolve_url(url)
    path = sqlite_path(canonical)
    if path is not None and not create and not path.is_file():
        raise StorageUnavailable(
            f"There is no dynl2 database at {path}; check the storage URL or ${ENV_VAR}, "
            "or run an experiment first to create it."
        ) from FileNotFoundError(errno.ENOENT, "No such file", str(path))  # not worth a retry
    store = Store(canonical, make_engine(canonical, create_dirs=create))
    try:
        store._check_connection()
        if create:
            store.optuna_storage()  # creates Optuna's tables, which ours reference
            store._create_schema()
        store._check_schema_version()
        store._remember_file()
    except BaseException:
        store.close()
        raise
    return store


class Store:
    """dynl2's tables plus Optuna's RDBStorage on one database; use :func:`storage.open`."""

    def __init__(self, url: str, engine: Engine) -> None:
        self._url = url
        self._engine = engine
        self._sessions = sessionmaker(bind=engine, expire_on_commit=False)
        self._optuna: dict[tuple[int | None, int | None], optuna.storages.RDBStorage] = {}
        self._file: tuple[str, tuple[int, int]] | None = None  # SQLite: path, (device, inode)
        self._replicate_column = False  # seen dynl2_evaluations.replicate (schema version 3)

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

    def _remember_file(self) -> None:
        path = sqlite_path(self._url)
        if path is not None:
            found = os.stat(path)
            self._file = (str(path), (found.st_dev, found.st_ino))

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
            raise StoreVanished(
                f"the SQLite file {path} was deleted or replaced while dynl2 used it: what "
                "was written to it since is lost; stop anything else still using it, then "
                "restore the file from a backup or start the experiment again"
            )

    def __enter__(self) -> Store:
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
        store. SQLite connections get the same pragmas as ours (foreign keys ON, so deleting a
        study cascades to ``dynl2_epochs``).
        """
        key = (heartbeat_interval, grace_period)
        if key not in self._optuna:
            self._optuna[key] = self._new_optuna_storage(heartbeat_interval, grace_period)
        return self._optuna[key]

    def _new_optuna_storage(
        self, heartbeat_interval: int | None, grace_period: int | None
    ) -> optuna.storages.RDBStorage:
        for attempt in range(1, _OPTUNA_OPEN_ATTEMPTS + 1):
            try:
                # Once the tables exist, skip_table_creation saves a round of CREATE checks
                # and keeps `create=False` stores free of writes.
                return optuna.storages.RDBStorage(
                    self._url,
                    engine_kwargs=engine_kwargs(self._url),
                    heartbeat_interval=heartbeat_interval,
                    grace_period=grace_period,
                    skip_table_creation=bool(self._optuna) or self._has_table("trials"),
                )
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

    def _create_schema(self) -> None:
        """Bring dynl2's tables to this code's schema: create them in a new database, upgrade
        a store an older dynl2 wrote (:func:`storage.migrations.upgrade`).

        Workers often open one store at the same moment. A store that is already current
        costs one read and no lock; otherwise the change runs under the store's named lock,
        in one transaction, and the state is read again inside it: whoever waited for the
        lock finds the work done.
        """
        from storage import migrations  # imports alembic: only code that opens a store pays

        if self._schema_state().current:
            return
        with (
            self._schema_errors(),
            self.lock(_SCHEMA_LOCK),
            migrations.transaction(self._url, self._engine) as connection,
        ):
            state = migrations.read_state(connection)
            self._refuse_newer(state)
            if not state.current:
                migrations.upgrade(connection, state)

    def _check_schema_version(self) -> None:
        state = self._schema_state()
        if Meta.__tablename__ not in state.tables:
            raise StorageError(
                f"{self._where()} has no dynl2 tables; check the storage URL or ${ENV_VAR}, "
                "or run an experiment first to create them."
            )

    def _schema_state(self) -> migrations.SchemaState:
        """Where dynl2's tables stand (reads only); a store newer than this code is refused."""
        from storage import migrations

        with self._schema_errors(), self._engine.connect() as connection:
            state = migrations.read_state(connection)
        self._refuse_newer(state)
        return state

    def _refuse_newer(self, state: migrations.SchemaState) -> None:
        from storage import migrations

        if state.unknown_revision:
            raise StorageError(
                f"{self._where()} is at dynl2 schema revision {state.revision!r}, which this "
                f"dynl2 does not know (its newest is {migrations.head()!r}); upgrade dynl2 "
                "to use it."
            )
        if state.newer:
            raise StorageError(
                f"{self._where()} uses dynl2 schema version {state.schema_version}, newer than "
                f"the {SCHEMA_VERSION} this dynl2 understands; upgrade dynl2 to use it."
            )

    @contextmanager
    def _schema_errors(self) -> Iterator[None]:
        """Driver errors while reading or changing the schema, as one line naming the store."""
        try:
            yield
        except OperationalError as exc:
            raise StorageUnavailable(
                f"The database in {self._where()} could not check or upgrade dynl2's tables: "
                f"{first_line(exc.orig)}"
            ) from exc
        except SQLAlchemyError as exc:
            raise StorageError(
                f"The database in {self._where()} refused to check or upgrade dynl2's tables: "
                f"{first_line(exc)}"
            ) from exc

    def _has_replicate_column(self, session: Session) -> bool:
        """Whether ``dynl2_evaluations`` has ``replicate`` (schema version 3): a store an
        older dynl2 wrote, opened with ``create=False``, is read without upgrading it. Only a
        yes is kept: another process may upgrade the store while this one reads it."""
        if not self._replicate_column:
            try:
                columns = inspect(session.connection()).get_columns(Evaluation.__tablename__)
            except NoSuchTableError:
                return True  # the query itself will say the table is missing
            self._replicate_column = any(c["name"] == "replicate" for c in columns)
        return self._replicate_column

    # ------------------------------------------------------------------- experiments

    def create_experiment(self, name: str, config: Mapping[str, Any]) -> ExperimentInfo:
        """Create experiment ``name``, or return it if it exists with an identical config.

        Raises :class:`~storage.errors.ExperimentConflict` naming the top-level keys that
        differ when it exists with another config.
        """
        check_name(name, "experiment")
        config_json = _to_json(config, "config")
        now = datetime.now(UTC)
        with self._session() as session:
            _insert(session, Experiment, [{"name": name, "config": config_json, "created": now}])
            info = _experiment_info(
                session.scalars(select(Experiment).where(Experiment.name == name)).one()
            )
        wanted = json.loads(config_json)
        if info.config != wanted:
            differing = sorted(
                key
                for key in set(info.config) | set(wanted)
                if info.config.get(key, _MISSING) != wanted.get(key, _MISSING)
            )
            raise ExperimentConflict(
                f"Experiment {name!r} already exists with a different config (top-level keys "
                f"that differ: {', '.join(differing)}); resume it with its original config "
                "or choose a new experiment name."
            )
        return info

    def update_experiment_config(self, name: str, config: Mapping[str, Any]) -> ExperimentInfo:
        """Replace the stored config of experiment ``name`` (the caller decides which changes
        are allowed: dynl2 lets a rerun raise ``search.replicates`` and ``evaluate.seeds``)."""
        check_name(name, "experiment")
        config_json = _to_json(config, "config")
        with self._session() as session:
            row = self._experiment_row(session, name)
            row.config = config_json
            session.flush()
            return _experiment_info(row)

    def get_experiment(self, name: str) -> ExperimentInfo:
        with self._session() as session:
            return _experiment_info(self._experiment_row(session, name))

    def experiments(self) -> pd.DataFrame:
        """DataFrame of all experiments: id, name, created (UTC), config (dict)."""
        with self._session() as session:
            return reads.experiments_frame(session)

    def arms(self, experiment: str) -> list[str]:
        """Sorted arm names of the Optuna studies named ``EXPERIMENT/ARM``."""
        with self._session() as session:
            self._experiment_row(session, experiment)
            return sorted({arm for arm, _ in reads.arm_studies(session, experiment).values()})

    def _experiment_row(self, session: Session, name: str) -> Experiment:
        row = session.scalars(select(Experiment).where(Experiment.name == name)).one_or_none()
        if row is not None:
            return row
        known = list(
            session.scalars(
                select(Experiment.name).order_by(Experiment.id).limit(_NOT_FOUND_LIST_LIMIT + 1)
            )
        )
        if not known:
            listing = "the store has no experiments yet"
        elif len(known) > _NOT_FOUND_LIST_LIMIT:
            listing = f"known experiments include {', '.join(known[:_NOT_FOUND_LIST_LIMIT])}"
        else:
            listing = f"known experiments: {', '.join(known)}"
        raise ExperimentNotFound(f"No experiment named {name!r} in {self._where()} ({listing}).")

    # ------------------------------------------------------------------------ epochs

    def record_epochs(
        self, trial_id: int, rows: Sequence[Mapping[str, float | int | None]]
    ) -> None:
        """Record per-epoch metrics of one Optuna trial, in one transaction.

        Each row needs ``epoch`` (an int >= 1) and may carry any of
        :data:`~storage.records.EPOCH_METRICS`; missing metrics are stored as NULL, and so is
        NaN. Recording an epoch again replaces the earlier row (last write wins), so a retried
        call is harmless.
        """
        self.record_epochs_many({trial_id: rows})

    def record_epochs_many(
        self, rows: Mapping[int, Sequence[Mapping[str, float | int | None]]]
    ) -> None:
        """:meth:`record_epochs` for several trials (``{trial_id: rows}``), in one transaction:
        all of them or none."""
        checked: list[dict[str, Any]] = []
        for trial_id, trial_rows in rows.items():
            if isinstance(trial_id, bool) or not isinstance(trial_id, int):
                raise InvalidRecord(f"`trial_id` must be an int, but got {trial_id!r}.")
            by_epoch: dict[int, dict[str, Any]] = {}
            for index, row in enumerate(trial_rows):
                one = _epoch_row(row, index)
                by_epoch[one["epoch"]] = {"trial_id": trial_id, **one}
            checked.extend(by_epoch.values())
        if not checked:
            return
        with self._session() as session:
            wanted = {row["trial_id"] for row in checked}
            found = set(
                session.scalars(
                    select(ot.trials.c.trial_id).where(ot.trials.c.trial_id.in_(wanted))
                )
            )
            missing = sorted(wanted - found)
            if missing:
                raise InvalidRecord(
                    f"`trial_id` {missing[0]} is not a trial in {self._where()}; record epochs "
                    "only for trials of studies created through Store.optuna_storage()."
                )
            _insert(session, Epoch, checked, conflict=("trial_id", "epoch"), update=EPOCH_METRICS)

    def epochs(self, experiment: str, arm: str | None = None) -> pd.DataFrame:
        """DataFrame of every recorded epoch (see ``storage.records.EPOCH_COLUMNS``)."""
        with self._session() as session:
            self._experiment_row(session, experiment)
            return reads.epochs_frame(session, experiment, arm)

    # ------------------------------------------------------------------- evaluations

    def record_evaluation(
        self,
        experiment: str,
        arm: str,
        seed: int,
        params: Mapping[str, Any],
        *,
        replicate: int = 1,
        test_loss: float | None,
        test_acc: float | None = None,
        val_loss: float | None = None,
        val_acc: float | None = None,
        seconds: float | None = None,
    ) -> None:
        """Record the final evaluation of search ``replicate`` of ``arm`` on one seed;
        re-recording the same (arm, replicate, seed) replaces it."""
        check_name(arm, "arm")
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise InvalidRecord(f"`seed` must be an int, but got {seed!r}.")
        check_replicate(replicate)
        metrics = {
            "test_loss": test_loss,
            "test_acc": test_acc,
            "val_loss": val_loss,
            "val_acc": val_acc,
            "seconds": seconds,
        }
        values = {name: _metric(value, name) for name, value in metrics.items()}
        params_json = _to_json(params, "params")
        with self._session() as session:
            experiment_id = self._experiment_row(session, experiment).id
            if not self._has_replicate_column(session):
                raise StorageError(
                    f"{self._where()} was written by an older dynl2 (schema version below "
                    f"{SCHEMA_VERSION}) and was opened read-only; open it with create=True "
                    "(any dynl2 command that writes) to upgrade it before recording evaluations."
                )
            row = {
                "experiment_id": experiment_id,
                "arm": arm,
                "replicate": replicate,
                "seed": seed,
                "params": params_json,
                "created": datetime.now(UTC),
                **values,
            }
            _insert(
                session,
                Evaluation,
                [row],
                conflict=("experiment_id", "arm", "replicate", "seed"),
                update=("params", "created", *values),
            )

    def evaluated_seeds(self, experiment: str, arm: str, replicate: int = 1) -> set[int]:
        """Seeds already evaluated for search ``replicate`` of ``arm`` (so a resumed run skips
        them)."""
        check_replicate(replicate)
        with self._session() as session:
            experiment_id = self._experiment_row(session, experiment).id
            query = select(Evaluation.seed).where(
                Evaluation.experiment_id == experiment_id, Evaluation.arm == arm
            )
            if self._has_replicate_column(session):
                query = query.where(Evaluation.replicate == replicate)
            elif replicate != 1:
                return set()  # an older store holds replicate 1 only
            return set(session.scalars(query))

    def evaluations(self, experiment: str) -> pd.DataFrame:
        """DataFrame of final evaluations (see ``storage.records.EVALUATION_COLUMNS``), by
        arm, replicate and seed; a store an older dynl2 wrote reads as replicate 1."""
        with self._session() as session:
            experiment_id = self._experiment_row(session, experiment).id
            return reads.evaluations_frame(
                session, experiment_id, replicate_column=self._has_replicate_column(session)
            )

    # ----------------------------------------------------------------------- reports

    def record_report(
        self, experiment: str, path: str, summary: Mapping[str, Any], html: str
    ) -> int:
        """Keep a generated report (its HTML whole); returns its id."""
        summary_json = _to_json(summary, "summary")
        with self._session() as session:
            row = Report(
                experiment_id=self._experiment_row(session, experiment).id,
                created=datetime.now(UTC),
                path=path,
                summary=summary_json,
                html=html,
            )
            session.add(row)
            session.flush()
            return row.id

    def reports(self, experiment: str | None = None) -> pd.DataFrame:
        """DataFrame of stored reports (id, experiment, created, path, summary), newest first."""
        columns = ["id", "experiment", "created", "path", "summary"]
        if not self._has_table(Report.__tablename__):  # a store from before reports existed
            return pd.DataFrame(columns=columns)
        with self._session() as session:
            query = (
                select(Report.id, Experiment.name, Report.created, Report.path, Report.summary)
                .join(Experiment, Experiment.id == Report.experiment_id)
                .order_by(Report.created.desc(), Report.id.desc())
            )
            if experiment is not None:
                self._experiment_row(session, experiment)
                query = query.where(Experiment.name == experiment)
            rows = [
                (*r[:4], reads.stored_json(r[4], f"the summary of report {r[0]} in dynl2_reports"))
                for r in session.execute(query)
            ]
        return pd.DataFrame(rows, columns=columns)

    def latest_report(self, experiment: str) -> tuple[str, str]:
        """(HTML, original path) of the newest stored report of ``experiment``."""
        with self._session() as session:
            experiment_id = self._experiment_row(session, experiment).id
            row = None
            if self._has_table(Report.__tablename__):
                row = session.execute(
                    select(Report.html, Report.path)
                    .where(Report.experiment_id == experiment_id)
                    .order_by(Report.created.desc(), Report.id.desc())
                    .limit(1)
                ).first()
        if row is None:
            raise ReportNotFound(
                f"No report of experiment {experiment!r} is stored in {self._where()}; "
                f"make one with: dynl2 report {experiment}"
            )
        return row[0], row[1]

    # ------------------------------------------------------------------------ trials

    def without_heartbeat(self, trial_ids: Sequence[int]) -> list[int]:
        """Those of ``trial_ids`` that have no row in Optuna's ``trial_heartbeats`` yet."""
        if not trial_ids:
            return []
        heartbeats = ot.trial_heartbeats.c
        with self._session() as session:
            beating = set(
                session.scalars(
                    select(heartbeats.trial_id).where(heartbeats.trial_id.in_(list(trial_ids)))
                )
            )
        return [trial_id for trial_id in trial_ids if trial_id not in beating]

    def trial_tallies(self, experiment: str, result_attr: str) -> dict[tuple[str, int], Tally]:
        """``{(arm, replicate): Tally}``: each search's trials counted by state and by the user
        attribute ``result_attr``, with the best values, in one query. Searches without a study
        yet are absent."""
        with self._session() as session:
            return reads.tallies(session, experiment, result_attr)

    def trials(self, experiment: str, arm: str | None = None) -> pd.DataFrame:
        """DataFrame of the Optuna trials of ``EXPERIMENT/ARM`` studies, read with SQL.

        Columns: ``storage.records.TRIAL_COLUMNS``. Test metrics are not joined here; they
        live in :meth:`evaluations`, keyed by arm and seed.
        """
        with self._session() as session:
            self._experiment_row(session, experiment)
            return reads.trials_frame(session, experiment, arm)


# --------------------------------------------------------------------------- helpers

_MISSING = object()


def _quiet_rollback(session: Session) -> None:
    # If the connection is gone the rollback fails too; the original error is the one to report.
    with suppress(SQLAlchemyError):
        session.rollback()


def _to_json(value: Mapping[str, Any], argument: str) -> str:
    if not isinstance(value, Mapping):
        raise InvalidRecord(f"`{argument}` must be a mapping, but got {type(value).__name__}.")
    try:
        return json.dumps(dict(value), sort_keys=True, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise InvalidRecord(
            f"`{argument}` must be JSON-serialisable with finite numbers, but {exc}."
        ) from exc


def _metric(value: object, name: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidRecord(f"`{name}` must be a number or None, but got {value!r}.")
    number = float(value)
    # SQLite cannot store NaN (it becomes NULL); do the same everywhere so backends agree.
    return None if math.isnan(number) else number


def _epoch_row(row: Mapping[str, float | int | None], index: int) -> dict[str, Any]:
    if not isinstance(row, Mapping):
        raise InvalidRecord(f"`rows[{index}]` must be a mapping, but got {type(row).__name__}.")
    unknown = sorted(set(row) - {"epoch", *EPOCH_METRICS})
    if unknown:
        raise InvalidRecord(
            f"`rows[{index}]` has unknown keys {unknown}; allowed keys are 'epoch' and "
            f"{', '.join(repr(m) for m in EPOCH_METRICS)}."
        )
    epoch = row.get("epoch")
    if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 1:
        raise InvalidRecord(
            f"`rows[{index}]['epoch']` must be an int >= 1 (epochs are 1-based), "
            f"but got {epoch!r}."
        )
    checked: dict[str, Any] = {"epoch": epoch}
    for metric in EPOCH_METRICS:
        checked[metric] = _metric(row.get(metric), f"rows[{index}][{metric!r}]")
    return checked


def _insert(
    session: Session,
    model: type[Base],
    rows: list[dict[str, Any]],
    *,
    conflict: Sequence[str] = (),
    update: Sequence[str] = (),
) -> None:
    """INSERT ``rows``; on a unique conflict update the ``update`` columns, or skip the row.

    Each backend's native upsert keeps this one atomic statement, so concurrent writers of the
    same key never see an IntegrityError.
    """
    dialect = session.get_bind().dialect.name
    if dialect == "mysql":
        mysql_stmt = mysql.insert(model)
        if update:
            mysql_stmt = mysql_stmt.on_duplicate_key_update(
                {column: mysql_stmt.inserted[column] for column in update}
            )
        else:
            mysql_stmt = mysql_stmt.prefix_with("IGNORE")
        session.execute(mysql_stmt, rows)
        return
    if dialect not in ("sqlite", "postgresql"):
        raise StorageError(f"dynl2 does not support the {dialect!r} database dialect.")
    stmt = sqlite.insert(model) if dialect == "sqlite" else postgresql.insert(model)
    index = list(conflict) or None
    if update:
        stmt = stmt.on_conflict_do_update(
            index_elements=index, set_={column: stmt.excluded[column] for column in update}
        )
    else:
        stmt = stmt.on_conflict_do_nothing(index_elements=index)
    session.execute(stmt, rows)


def _experiment_info(row: Experiment) -> ExperimentInfo:
    config = reads.experiment_config(row.config, row.name)
    return ExperimentInfo(id=row.id, name=row.name, config=config, created=row.created)
