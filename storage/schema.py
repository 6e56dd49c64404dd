"""dynl2's own tables, next to Optuna's in the same database, all prefixed ``dynl2_``.

These models are the schema at the newest migration (``storage/migrations``): a new database
gets them from :func:`create_schema`, after Optuna's ``RDBStorage`` has created its tables
(``dynl2_epochs.trial_id`` references Optuna's ``trials.trial_id``), and is stamped at the
newest revision; an older store is upgraded by the migrations. Alembic records our revision in
``dynl2_alembic_version``, and ``dynl2_meta`` keeps the ``schema_version`` older dynl2 releases
check (Optuna owns ``alembic_version`` and ``version_info``). Change a table here only together
with a new revision, whose upgrade must give the same shape (tests/storage/test_migrations.py).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Connection,
    DateTime,
    Dialect,
    Double,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
    event,
    text,
)
from sqlalchemy.dialects.mysql import LONGTEXT
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from storage.optuna_tables import trials as optuna_trials

__all__ = [
    "DYNL2_TABLES",
    "SCHEMA_VERSION",
    "Base",
    "Epoch",
    "Evaluation",
    "Experiment",
    "Meta",
    "Report",
    "Suite",
    "SuiteExperiment",
    "SuiteReport",
    "UTCDateTime",
    "create_schema",
]

SCHEMA_VERSION = 5  # bump with a migration whenever a dynl2_ table changes shape
# 2: + dynl2_reports (revision 0001, the Alembic baseline, creates it in a version-1 store)
# 3: + dynl2_evaluations.replicate, unique (experiment_id, arm, replicate, seed) (revision 0002)
# 4: + dynl2_evaluations.trainer_seed and .diverged, out of params (revision 0003)
# 5: + dynl2_suites, dynl2_suite_experiments and dynl2_suite_reports (revision 0004)

NAME_LENGTH = 255  # experiment, arm and suite names; "EXPERIMENT/ARM" must fit Optuna's 512


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC in Python, naive UTC in the database (same on every backend)."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"dynl2 stores aware datetimes only, but got naive {value!r}.")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC)


class Base(DeclarativeBase):
    metadata = MetaData(
        naming_convention={
            "ix": "ix_%(table_name)s_%(column_0_N_name)s",
            "uq": "uq_%(table_name)s_%(column_0_N_name)s",
            "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
            "pk": "pk_%(table_name)s",
        }
    )


class Meta(Base):
    """Key/value facts about our schema (``schema_version``)."""

    __tablename__ = "dynl2_meta"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class Experiment(Base):
    """One experiment: a name and the resolved config (JSON) all of its arms share."""

    __tablename__ = "dynl2_experiments"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(NAME_LENGTH), unique=True)
    config: Mapped[str] = mapped_column(Text)  # JSON, keys sorted
    created: Mapped[datetime] = mapped_column(UTCDateTime())


class Epoch(Base):
    """One row per trial per epoch. Metrics are nullable: regression has no accuracy, and a
    diverged run's NaN is stored as NULL on every backend (SQLite cannot store NaN)."""

    __tablename__ = "dynl2_epochs"
    # The unique index leads with trial_id, so it also serves "all epochs of a trial" and the
    # cascade delete; a separate index on trial_id would only cost writes.
    __table_args__ = (UniqueConstraint("trial_id", "epoch"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    # ON DELETE CASCADE: optuna.delete_study deletes trials row by row; without the cascade
    # PostgreSQL refuses (foreign key violation) and SQLite would keep orphans whose trial_id
    # a later trial can reuse.
    trial_id: Mapped[int] = mapped_column(ForeignKey(optuna_trials.c.trial_id, ondelete="CASCADE"))
    epoch: Mapped[int]  # 1-based
    train_loss: Mapped[float | None] = mapped_column(Double)
    train_acc: Mapped[float | None] = mapped_column(Double)
    val_loss: Mapped[float | None] = mapped_column(Double)
    val_acc: Mapped[float | None] = mapped_column(Double)
    lam_mean: Mapped[float | None] = mapped_column(Double)  # lambda over the epoch's steps
    lam_min: Mapped[float | None] = mapped_column(Double)
    lam_max: Mapped[float | None] = mapped_column(Double)
    lam_last: Mapped[float | None] = mapped_column(Double)
    weight_norm: Mapped[float | None] = mapped_column(Double)  # L2 norm of the weights
    seconds: Mapped[float | None] = mapped_column(Double)  # wall time of the epoch


class Evaluation(Base):
    """The final score of one search replicate's best configuration of an arm, retrained on
    one seed."""

    __tablename__ = "dynl2_evaluations"
    __table_args__ = (UniqueConstraint("experiment_id", "arm", "replicate", "seed"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    experiment_id: Mapped[int] = mapped_column(
        ForeignKey("dynl2_experiments.id", ondelete="CASCADE")
    )
    arm: Mapped[str] = mapped_column(String(NAME_LENGTH))
    seed: Mapped[int] = mapped_column(BigInteger)
    params: Mapped[str] = mapped_column(Text)  # JSON, keys sorted
    test_loss: Mapped[float | None] = mapped_column(Double)
    test_acc: Mapped[float | None] = mapped_column(Double)
    val_loss: Mapped[float | None] = mapped_column(Double)
    val_acc: Mapped[float | None] = mapped_column(Double)
    seconds: Mapped[float | None] = mapped_column(Double)
    created: Mapped[datetime] = mapped_column(UTCDateTime())
    # Which search of the arm chose the configuration (1 .. [search] replicates). Last, as
    # revision 0002 appends it to older stores, so new and upgraded tables match column for
    # column; rows from before replicates existed are replicate 1 (the server default).
    replicate: Mapped[int] = mapped_column(Integer, server_default=text("1"))
    # The seed the run trained with, and why it diverged (None when it did not); revision 0003
    # appends them, and moved them out of ``params``, which holds the searched parameters only.
    trainer_seed: Mapped[int | None] = mapped_column(BigInteger)
    diverged: Mapped[str | None] = mapped_column(Text)


class Report(Base):
    """One generated HTML report, kept whole so it can be recovered from the database alone."""

    __tablename__ = "dynl2_reports"

    id: Mapped[int] = mapped_column(primary_key=True)
    experiment_id: Mapped[int] = mapped_column(
        ForeignKey("dynl2_experiments.id", ondelete="CASCADE"), index=True
    )
    created: Mapped[datetime] = mapped_column(UTCDateTime())
    path: Mapped[str] = mapped_column(Text)  # where the file was written
    summary: Mapped[str] = mapped_column(Text)  # JSON: the verdict's numbers
    html: Mapped[str] = mapped_column(Text().with_variant(LONGTEXT(), "mysql"))


class Suite(Base):
    """One suite: a family of experiments expanded from one suite file."""

    __tablename__ = "dynl2_suites"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(NAME_LENGTH), unique=True)
    created: Mapped[datetime] = mapped_column(UTCDateTime())
    definition: Mapped[str] = mapped_column(Text)  # JSON: the suite file as parsed, in its order


class SuiteExperiment(Base):
    """One experiment of a suite, in the suite's order, with the matrix values that made it.

    ``experiment`` is a name, not a foreign key: a suite is stored before its experiments
    exist, and each is created when the suite runs it."""

    __tablename__ = "dynl2_suite_experiments"
    __table_args__ = (UniqueConstraint("suite_id", "experiment"),)

    suite_id: Mapped[int] = mapped_column(
        ForeignKey("dynl2_suites.id", ondelete="CASCADE"), primary_key=True
    )
    position: Mapped[int] = mapped_column(Integer, primary_key=True)  # 0-based
    experiment: Mapped[str] = mapped_column(String(NAME_LENGTH))
    factors: Mapped[str] = mapped_column(Text)  # JSON: dotted config key -> value, in order


class SuiteReport(Base):
    """One generated suite report, kept whole like :class:`Report`."""

    __tablename__ = "dynl2_suite_reports"

    id: Mapped[int] = mapped_column(primary_key=True)
    suite_id: Mapped[int] = mapped_column(
        ForeignKey("dynl2_suites.id", ondelete="CASCADE"), index=True
    )
    created: Mapped[datetime] = mapped_column(UTCDateTime())
    path: Mapped[str] = mapped_column(Text)  # where the file was written
    summary: Mapped[str] = mapped_column(Text)  # JSON: the pooled numbers
    html: Mapped[str] = mapped_column(Text().with_variant(LONGTEXT(), "mysql"))


DYNL2_TABLES: tuple[Table, ...] = tuple(
    Base.metadata.tables[model.__tablename__]
    for model in (Meta, Experiment, Epoch, Evaluation, Report, Suite, SuiteExperiment, SuiteReport)
)

# Tools other than dynl2 (optuna-dashboard, `optuna delete-study`) open SQLite without
# `PRAGMA foreign_keys=ON`, so the FK cascade would not run for them; this trigger does the
# same job regardless of the pragma. PostgreSQL and MySQL always enforce foreign keys.
_SQLITE_TRIGGER = (
    "CREATE TRIGGER IF NOT EXISTS dynl2_epochs_delete_with_trial "
    "AFTER DELETE ON trials FOR EACH ROW BEGIN "
    "DELETE FROM dynl2_epochs WHERE trial_id = OLD.trial_id; END"
)


@event.listens_for(Epoch.__table__, "after_create")
def _create_sqlite_trigger(target: Table, connection: Connection, **kw: Any) -> None:
    if connection.dialect.name == "sqlite":
        connection.execute(text(_SQLITE_TRIGGER))


def create_schema(connection: Connection) -> None:
    """Create the dynl2 tables of a new database as they stand at the newest revision
    (Optuna's tables must exist already); :mod:`storage.migrations` then stamps it."""
    Base.metadata.create_all(connection, tables=list(DYNL2_TABLES), checkfirst=True)
