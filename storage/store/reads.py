"""The read side of the store: experiments, trials, epochs, evaluations, suites and reports.

Each method runs its queries (:mod:`storage.store.rows`) in one transaction and hands back a
frozen dataclass or a DataFrame with a fixed column list. A store an older dynl2 wrote, opened with
``create=False``, is read as it is, never upgraded.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd  # type: ignore[import-untyped, unused-ignore]
from sqlalchemy import inspect, select
from sqlalchemy.orm import Session

from storage import optuna_tables as ot
from storage.errors import ReportNotFound
from storage.records import ExperimentInfo, StoredReport, SuiteInfo, Tally, check_replicate
from storage.schema import Evaluation, Experiment, Report, Suite, SuiteReport
from storage.store import rows
from storage.store.base import StoreBase

__all__ = ["StoreReads"]

_ID_RANGE = (-(2**63), 2**63 - 1)  # what an id column holds (a signed 64-bit integer)


def _has_reports(session: Session) -> bool:
    """Whether ``dynl2_reports`` exists (a store from before reports has none), asked on the
    transaction's own connection: a database gone meanwhile fails inside the transaction,
    where :meth:`StoreBase._session` says so as a :class:`StorageUnavailable`, not as the
    driver's raw error."""
    return inspect(session.connection()).has_table(Report.__tablename__)


class StoreReads(StoreBase):
    """The reading methods of :class:`storage.Store`."""

    # ------------------------------------------------------------------- experiments

    def get_experiment(self, name: str) -> ExperimentInfo:
        with self._session() as session:
            return rows.experiment_info(self._experiment_row(session, name))

    def experiments(self) -> pd.DataFrame:
        """DataFrame of all experiments: id, name, created (UTC), config (dict)."""
        with self._session() as session:
            return rows.experiments_frame(session)

    def experiment_list(self) -> pd.DataFrame:
        """DataFrame of all experiments: id, name, created (UTC), without their configs. A
        listing that reads each experiment on its own (``dynl2 serve``'s) uses it, so that one
        damaged config fails that experiment's read only, not the listing."""
        with self._session() as session:
            return rows.experiment_list_frame(session)

    def arms(self, experiment: str) -> list[str]:
        """Sorted arm names of the Optuna studies named ``EXPERIMENT/ARM``."""
        with self._session() as session:
            self._experiment_row(session, experiment)
            return sorted({arm for arm, _ in rows.arm_studies(session, experiment).values()})

    # ------------------------------------------------------------------------ epochs

    def epochs(self, experiment: str, arm: str | None = None) -> pd.DataFrame:
        """DataFrame of every recorded epoch (see ``storage.records.EPOCH_COLUMNS``)."""
        with self._session() as session:
            self._experiment_row(session, experiment)
            return rows.epochs_frame(session, experiment, arm)

    # ------------------------------------------------------------------- evaluations

    def evaluated_seeds(self, experiment: str, arm: str, replicate: int = 1) -> set[int]:
        """Seeds already evaluated for search ``replicate`` of ``arm`` (so a resumed run skips
        them)."""
        check_replicate(replicate)
        with self._session() as session:
            experiment_id = self._experiment_row(session, experiment).id
            query = select(Evaluation.seed).where(
                Evaluation.experiment_id == experiment_id, Evaluation.arm == arm
            )
            if "replicate" in self._evaluation_columns(session):
                query = query.where(Evaluation.replicate == replicate)
            elif replicate != 1:
                return set()  # an older store holds replicate 1 only
            return set(session.scalars(query))

    def evaluations(self, experiment: str) -> pd.DataFrame:
        """DataFrame of final evaluations (see ``storage.records.EVALUATION_COLUMNS``), by
        arm, replicate and seed; a store an older dynl2 wrote reads as the upgrade would leave
        it (replicate 1, ``trainer_seed`` and ``diverged`` out of ``params``)."""
        with self._session() as session:
            experiment_id = self._experiment_row(session, experiment).id
            return rows.evaluations_frame(
                session, experiment_id, self._evaluation_columns(session)
            )

    # ----------------------------------------------------------------------- reports

    def reports(self, experiment: str | None = None) -> pd.DataFrame:
        """DataFrame of stored reports (id, experiment, created, path, summary), newest first."""
        columns = ["id", "experiment", "created", "path", "summary"]
        with self._session() as session:  # its errors too are the store's, translated
            if not _has_reports(session):  # a store from before reports existed
                return pd.DataFrame(columns=columns)
            query = (
                select(Report.id, Experiment.name, Report.created, Report.path, Report.summary)
                .join(Experiment, Experiment.id == Report.experiment_id)
                .order_by(Report.created.desc(), Report.id.desc())
            )
            if experiment is not None:
                self._experiment_row(session, experiment)
                query = query.where(Experiment.name == experiment)
            found = [
                (
                    *r[:4],
                    rows.stored_json(r[4], f"the summary of report {r[0]} in dynl2_reports"),
                )
                for r in session.execute(query)
            ]
        return pd.DataFrame(found, columns=columns)

    def report(self, report_id: int) -> StoredReport:
        """Stored report ``report_id`` whole; raises :class:`ReportNotFound` when there is none
        of that id."""
        row = None
        # An id no integer column holds (the SQLite driver raises OverflowError past 64 bits)
        # is no stored report's: the same answer as any other id not stored.
        if _ID_RANGE[0] <= report_id <= _ID_RANGE[1]:
            with self._session() as session:
                if _has_reports(session):  # a store from before reports has none
                    row = session.execute(
                        select(
                            Report.id,
                            Experiment.name,
                            Report.created,
                            Report.path,
                            Report.summary,
                            Report.html,
                        )
                        .join(Experiment, Experiment.id == Report.experiment_id)
                        .where(Report.id == report_id)
                    ).first()
        if row is None:
            raise ReportNotFound(f"No report with id {report_id} is stored in {self._where()}")
        summary = rows.stored_json(row[4], f"the summary of report {row[0]} in dynl2_reports")
        return StoredReport(row[0], row[1], row[2], row[3], summary, row[5])

    def latest_report(self, experiment: str) -> tuple[str, str]:
        """(HTML, original path) of the newest stored report of ``experiment``."""
        with self._session() as session:
            experiment_id = self._experiment_row(session, experiment).id
            row = None
            if _has_reports(session):
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

    # ------------------------------------------------------------------------ suites

    def suite(self, name: str) -> SuiteInfo:
        """Suite ``name`` with its experiments in order; raises
        :class:`~storage.errors.SuiteNotFound` when the store has none of that name."""
        with self._session() as session:
            return rows.suite_infos(session, [self._suite_row(session, name)])[0]

    def suites(self) -> list[SuiteInfo]:
        """Every suite with its experiments, oldest first."""
        with self._session() as session:
            if not self._has_suites(session):  # a store from before suites
                return []
            found = list(session.scalars(select(Suite).order_by(Suite.created, Suite.id)))
            return rows.suite_infos(session, found)

    def suite_reports(self, name: str | None = None) -> pd.DataFrame:
        """DataFrame of stored suite reports (id, suite, created, path, summary), newest first;
        of suite ``name`` only when given."""
        columns = ["id", "suite", "created", "path", "summary"]
        with self._session() as session:
            if name is not None:
                self._suite_row(session, name)
            elif not self._has_suites(session):  # a store from before suites
                return pd.DataFrame(columns=columns)
            query = (
                select(
                    SuiteReport.id,
                    Suite.name,
                    SuiteReport.created,
                    SuiteReport.path,
                    SuiteReport.summary,
                )
                .join(Suite, Suite.id == SuiteReport.suite_id)
                .order_by(SuiteReport.created.desc(), SuiteReport.id.desc())
            )
            if name is not None:
                query = query.where(Suite.name == name)
            where = "the summary of suite report {} in dynl2_suite_reports"
            found = [
                (*r[:4], rows.stored_json(r[4], where.format(r[0])))
                for r in session.execute(query)
            ]
        return pd.DataFrame(found, columns=columns)

    def latest_suite_report(self, name: str) -> tuple[str, str]:
        """(HTML, original path) of the newest stored report of suite ``name``."""
        with self._session() as session:
            suite_id = self._suite_row(session, name).id
            row = session.execute(
                select(SuiteReport.html, SuiteReport.path)
                .where(SuiteReport.suite_id == suite_id)
                .order_by(SuiteReport.created.desc(), SuiteReport.id.desc())
                .limit(1)
            ).first()
        if row is None:
            raise ReportNotFound(
                f"No report of suite {name!r} is stored in {self._where()}; "
                f"make one with: dynl2 suite report {name}"
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
            return rows.tallies(session, experiment, result_attr)

    def trials(self, experiment: str, arm: str | None = None) -> pd.DataFrame:
        """DataFrame of the Optuna trials of ``EXPERIMENT/ARM`` studies, read with SQL.

        Columns: ``storage.records.TRIAL_COLUMNS``. Test metrics are not joined here; they
        live in :meth:`evaluations`, keyed by arm and seed.
        """
        with self._session() as session:
            self._experiment_row(session, experiment)
            return rows.trials_frame(session, experiment, arm)
