"""The write side of the store: experiments, epochs, evaluations, suites and reports, checked
first.

Every value is validated before any SQL runs (:class:`~storage.errors.InvalidRecord` names the
argument), and each call is one transaction. Experiments, epochs, evaluations and suites are
written with the backend's native upsert (:func:`_insert`), so a retried call is harmless.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.dialects import mysql, postgresql, sqlite
from sqlalchemy.orm import Session

from storage import optuna_tables as ot
from storage.errors import ExperimentConflict, InvalidRecord, StorageError, SuiteConflict
from storage.records import EPOCH_METRICS, ExperimentInfo, SuiteInfo, check_name, check_replicate
from storage.schema import (
    SCHEMA_VERSION,
    Base,
    Epoch,
    Evaluation,
    Experiment,
    Report,
    Suite,
    SuiteExperiment,
    SuiteReport,
)
from storage.store.base import EVALUATION_TABLE_COLUMNS, StoreBase
from storage.store.rows import experiment_info, suite_infos

__all__ = ["StoreWrites"]

_MISSING = object()
_SEED_RANGE = range(-(2**63), 2**63)  # what the BIGINT column trainer_seed holds


class StoreWrites(StoreBase):
    """The writing methods of :class:`storage.Store`."""

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
            info = experiment_info(
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
            return experiment_info(row)

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
        trainer_seed: int | None = None,
        diverged: str | None = None,
    ) -> None:
        """Record the final evaluation of search ``replicate`` of ``arm`` on one seed;
        re-recording the same (arm, replicate, seed) replaces it.

        ``params`` are the searched parameters the run retrained, ``trainer_seed`` the seed it
        trained with, ``diverged`` why it diverged (None when it did not).
        """
        check_name(arm, "arm")
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise InvalidRecord(f"`seed` must be an int, but got {seed!r}.")
        check_replicate(replicate)
        if trainer_seed is not None and (
            isinstance(trainer_seed, bool)
            or not isinstance(trainer_seed, int)
            or trainer_seed not in _SEED_RANGE
        ):
            raise InvalidRecord(
                "`trainer_seed` must be an int from -2**63 to 2**63 - 1, or None, but got "
                f"{trainer_seed!r}."
            )
        if diverged is not None and not isinstance(diverged, str):
            raise InvalidRecord(f"`diverged` must be a string or None, but got {diverged!r}.")
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
            if not self._evaluation_columns(session) >= EVALUATION_TABLE_COLUMNS:
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
                "trainer_seed": trainer_seed,
                "diverged": diverged,
                "created": datetime.now(UTC),
                **values,
            }
            _insert(
                session,
                Evaluation,
                [row],
                conflict=("experiment_id", "arm", "replicate", "seed"),
                update=("params", "trainer_seed", "diverged", "created", *values),
            )

    # ------------------------------------------------------------------------ suites

    def create_suite(
        self,
        name: str,
        definition: Mapping[str, Any],
        members: Sequence[tuple[str, Mapping[str, Any]]],
    ) -> SuiteInfo:
        """Create suite ``name``: its ``definition`` (the suite file as parsed) and its
        experiments in order, as ``(experiment, factors)`` pairs (``factors``: dotted config
        key -> value). If it exists with an identical definition and experiments, the stored
        suite is returned, so a rerun resumes it.

        Both keep their order, which is compared too (the matrix's order makes the names).
        Raises :class:`~storage.errors.SuiteConflict` when the suite exists with anything else.
        Creators racing on one name all succeed, or get the conflict: the suite is stored once,
        with the experiments of the caller whose row went in (the others wait for its commit).
        """
        check_name(name, "suite")
        definition_json = _to_json(definition, "definition", sort_keys=False)
        rows = _suite_members(members)
        with self._session() as session:
            if not self._has_suites(session):
                raise StorageError(
                    f"{self._where()} was written by an older dynl2 (schema version below "
                    f"{SCHEMA_VERSION}) and was opened read-only; open it with create=True "
                    "(any dynl2 command that writes) to upgrade it before creating suites."
                )
            new = {"name": name, "definition": definition_json, "created": datetime.now(UTC)}
            _insert(session, Suite, [new])
            suite = session.scalars(select(Suite).where(Suite.name == name)).one()
            wanted: list[tuple[Any, ...]] = [
                (r["position"], r["experiment"], r["factors"]) for r in rows
            ]
            stored: list[tuple[Any, ...]] = [
                tuple(row)
                for row in session.execute(
                    select(
                        SuiteExperiment.position,
                        SuiteExperiment.experiment,
                        SuiteExperiment.factors,
                    )
                    .where(SuiteExperiment.suite_id == suite.id)
                    .order_by(SuiteExperiment.position)
                )
            ]
            if suite.definition != definition_json or (stored and stored != wanted):
                raise SuiteConflict(
                    f"Suite {name!r} already exists with a different definition; run it with "
                    "its original file or choose a new suite name."
                )
            if not stored:
                # The suite row is ours: one another caller made is seen only once committed,
                # and its experiments with it (one transaction; a suite has at least one).
                session.execute(
                    insert(SuiteExperiment), [{"suite_id": suite.id, **r} for r in rows]
                )
            return suite_infos(session, [suite])[0]

    def record_suite_report(
        self, name: str, path: str, summary: Mapping[str, Any], html: str
    ) -> int:
        """Keep a generated report of suite ``name`` (its HTML whole); returns its id."""
        return self._keep_report(
            lambda session, **row: SuiteReport(suite_id=self._suite_row(session, name).id, **row),
            path,
            summary,
            html,
        )

    # ----------------------------------------------------------------------- reports

    def record_report(
        self, experiment: str, path: str, summary: Mapping[str, Any], html: str
    ) -> int:
        """Keep a generated report (its HTML whole); returns its id."""
        return self._keep_report(
            lambda session, **row: Report(
                experiment_id=self._experiment_row(session, experiment).id, **row
            ),
            path,
            summary,
            html,
        )

    def _keep_report(
        self,
        make: Callable[..., Report | SuiteReport],
        path: str,
        summary: Mapping[str, Any],
        html: str,
    ) -> int:
        """One row of a reports table, made by ``make(session, created=, path=, summary=,
        html=)`` for its owner (an experiment or a suite); returns its id."""
        summary_json = _to_json(summary, "summary")
        with self._session() as session:
            row = make(
                session, created=datetime.now(UTC), path=path, summary=summary_json, html=html
            )
            session.add(row)
            session.flush()
            return row.id


# --------------------------------------------------------------------------- helpers


def _to_json(value: Mapping[str, Any], argument: str, *, sort_keys: bool = True) -> str:
    if not isinstance(value, Mapping):
        raise InvalidRecord(f"`{argument}` must be a mapping, but got {type(value).__name__}.")
    try:
        return json.dumps(dict(value), sort_keys=sort_keys, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise InvalidRecord(
            f"`{argument}` must be JSON-serialisable with finite numbers, but {exc}."
        ) from exc


def _suite_members(members: Sequence[tuple[str, Mapping[str, Any]]]) -> list[dict[str, Any]]:
    """The rows of ``dynl2_suite_experiments`` for ``members``, checked: at least one, each
    an ``(experiment, factors)`` pair, no experiment twice."""
    if isinstance(members, str | bytes) or not isinstance(members, Sequence):
        raise InvalidRecord(
            "`members` must be a sequence of (experiment, factors) pairs, but got "
            f"{type(members).__name__}."
        )
    if not members:
        raise InvalidRecord("`members` must list at least one experiment, but got none.")
    rows: list[dict[str, Any]] = []
    first: dict[str, int] = {}
    for position, member in enumerate(members):
        if isinstance(member, str | bytes) or not isinstance(member, Sequence) or len(member) != 2:
            shown = type(member).__name__
            if isinstance(member, Sequence):
                shown = f"a {shown} of length {len(member)}"
            raise InvalidRecord(
                f"`members[{position}]` must be an (experiment, factors) pair, but got {shown}."
            )
        experiment = check_name(member[0], f"members[{position}][0]")
        if experiment in first:
            raise InvalidRecord(
                f"`members[{position}][0]` names experiment {experiment!r}, as "
                f"`members[{first[experiment]}][0]` does; each experiment is in a suite once."
            )
        first[experiment] = position
        factors = _to_json(member[1], f"members[{position}][1]", sort_keys=False)
        rows.append({"position": position, "experiment": experiment, "factors": factors})
    return rows


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
