"""Stores as older dynl2 releases wrote them, for migration tests.

The DDL below is what dynl2 at schema version 2 sent to each database through
``Base.metadata.create_all`` (copied from its SQL, not rebuilt from today's models, which have
moved on); schema version 1 is the same without ``dynl2_reports``, and schema version 3
(revision 0002) has ``dynl2_evaluations`` with ``replicate`` and is stamped in
``dynl2_alembic_version``. Optuna's own tables come from Optuna, with the engine settings dynl2
used (WAL on SQLite), so the file is the one an older dynl2 left behind. Every one of them kept
an evaluation's ``trainer_seed`` and ``diverged`` inside its ``params`` JSON, written with
``json.dumps(sort_keys=True)``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

import optuna
from sqlalchemy import create_engine, text

import storage
from storage.engine import engine_kwargs

_EVALUATIONS_V2 = """CREATE TABLE dynl2_evaluations (
    id {id} NOT NULL,
    experiment_id INTEGER NOT NULL,
    arm VARCHAR(255) NOT NULL,
    seed BIGINT NOT NULL,
    params TEXT NOT NULL,
    test_loss {double},
    test_acc {double},
    val_loss {double},
    val_acc {double},
    seconds {double},
    created {datetime} NOT NULL,
    CONSTRAINT pk_dynl2_evaluations PRIMARY KEY (id),
    CONSTRAINT uq_dynl2_evaluations_experiment_id_arm_seed UNIQUE (experiment_id, arm, seed),
    CONSTRAINT fk_dynl2_evaluations_experiment_id_dynl2_experiments FOREIGN KEY(experiment_id)
        REFERENCES dynl2_experiments (id) ON DELETE CASCADE
)"""

# Schema version 3 (revision 0002): + replicate, last, and the key with it.
_EVALUATIONS_V3 = _EVALUATIONS_V2.replace(
    "    CONSTRAINT pk_", "    replicate INTEGER DEFAULT 1 NOT NULL,\n    CONSTRAINT pk_"
).replace(
    "arm_seed UNIQUE (experiment_id, arm, seed)",
    "arm_replicate_seed UNIQUE (experiment_id, arm, replicate, seed)",
)

# Alembic's version table, as it creates it (schema version 3 and later).
_VERSION_TABLE = """CREATE TABLE dynl2_alembic_version (
    version_num VARCHAR(32) NOT NULL,
    CONSTRAINT dynl2_alembic_version_pkc PRIMARY KEY (version_num)
)"""

# In the order create_all emitted them.
_DDL_V2 = (
    """CREATE TABLE dynl2_meta (
    {key} VARCHAR(64) NOT NULL,
    value TEXT NOT NULL,
    CONSTRAINT pk_dynl2_meta PRIMARY KEY ({key})
)""",
    """CREATE TABLE dynl2_experiments (
    id {id} NOT NULL,
    name VARCHAR(255) NOT NULL,
    config TEXT NOT NULL,
    created {datetime} NOT NULL,
    CONSTRAINT pk_dynl2_experiments PRIMARY KEY (id),
    CONSTRAINT uq_dynl2_experiments_name UNIQUE (name)
)""",
    """CREATE TABLE dynl2_epochs (
    id {id} NOT NULL,
    trial_id INTEGER NOT NULL,
    epoch INTEGER NOT NULL,
    train_loss {double},
    train_acc {double},
    val_loss {double},
    val_acc {double},
    lam_mean {double},
    lam_min {double},
    lam_max {double},
    lam_last {double},
    weight_norm {double},
    seconds {double},
    CONSTRAINT pk_dynl2_epochs PRIMARY KEY (id),
    CONSTRAINT uq_dynl2_epochs_trial_id_epoch UNIQUE (trial_id, epoch),
    CONSTRAINT fk_dynl2_epochs_trial_id_trials FOREIGN KEY(trial_id)
        REFERENCES trials (trial_id) ON DELETE CASCADE
)""",
    "{trigger}",
    _EVALUATIONS_V2,
    """CREATE TABLE dynl2_reports (
    id {id} NOT NULL,
    experiment_id INTEGER NOT NULL,
    created {datetime} NOT NULL,
    path TEXT NOT NULL,
    summary TEXT NOT NULL,
    html TEXT NOT NULL,
    CONSTRAINT pk_dynl2_reports PRIMARY KEY (id),
    CONSTRAINT fk_dynl2_reports_experiment_id_dynl2_experiments FOREIGN KEY(experiment_id)
        REFERENCES dynl2_experiments (id) ON DELETE CASCADE
)""",
    "CREATE INDEX ix_dynl2_reports_experiment_id ON dynl2_reports (experiment_id)",
)

_SQLITE_TRIGGER = (
    "CREATE TRIGGER IF NOT EXISTS dynl2_epochs_delete_with_trial "
    "AFTER DELETE ON trials FOR EACH ROW BEGIN "
    "DELETE FROM dynl2_epochs WHERE trial_id = OLD.trial_id; END"
)

# How each database spelled the types (SQLAlchemy's DDL compiler for it).
_WORDS = {
    "sqlite": {
        "id": "INTEGER",
        "double": "DOUBLE",
        "datetime": "DATETIME",
        "key": '"key"',
        "trigger": _SQLITE_TRIGGER,
    },
    "postgresql": {
        "id": "SERIAL",
        "double": "DOUBLE PRECISION",
        "datetime": "TIMESTAMP WITHOUT TIME ZONE",
        "key": "key",
        "trigger": "",
    },
}

EXPERIMENT = "old"
ARM = "fixed"
SEED = 7
PARAMS = {"lam": 0.001}  # the searched parameters of both evaluations
TRAINER_SEED = 2**40 + 7  # what the evaluation at SEED trained with
DIVERGED_SEED = 8
DIVERGED = "the loss became nan at epoch 2"  # why the evaluation at DIVERGED_SEED stopped
# The evaluations every legacy store holds: (seed, params JSON as dynl2 wrote it, test_loss,
# test_acc). A run that diverged had no trainer_seed in its params.
EVALUATIONS = (
    (SEED, json.dumps({**PARAMS, "trainer_seed": TRAINER_SEED}, sort_keys=True), 0.25, 0.75),
    (DIVERGED_SEED, json.dumps({**PARAMS, "diverged": DIVERGED}, sort_keys=True), None, None),
)
CREATED = "2024-05-01 12:00:00"


@dataclass(frozen=True)
class LegacyRows:
    """What :func:`build_legacy_store` wrote besides the tables."""

    trial_id: int
    optuna_revision: str  # the row of Optuna's alembic_version


def legacy_ddl(backend: str, schema_version: int) -> list[str]:
    """The CREATE statements dynl2 at ``schema_version`` (1, 2 or 3) ran on ``backend``."""
    assert schema_version in (1, 2, 3), schema_version
    ddl = list(_DDL_V2)
    if schema_version == 1:
        ddl = [statement for statement in ddl if "dynl2_reports" not in statement]
    if schema_version == 3:
        ddl = [_EVALUATIONS_V3 if s == _EVALUATIONS_V2 else s for s in ddl] + [_VERSION_TABLE]
    statements = [statement.format(**_WORDS[backend]) for statement in ddl]
    return [statement for statement in statements if statement]


def build_legacy_store(url: str, schema_version: int = 2) -> LegacyRows:
    """Create at ``url`` (an empty database) what dynl2 at ``schema_version`` left there:
    Optuna's tables with one study and trial, ours with one experiment, one epoch, the
    :data:`EVALUATIONS` and (version 2 and later) one report; version 3 is stamped at revision
    0002."""
    kwargs = engine_kwargs(url)
    rdb = optuna.storages.RDBStorage(url, engine_kwargs=kwargs)
    try:
        study_id = rdb.create_new_study(
            [optuna.study.StudyDirection.MAXIMIZE], storage.study_name(EXPERIMENT, ARM)
        )
        trial_id = rdb.create_new_trial(study_id)
    finally:
        rdb.engine.dispose()
    engine = create_engine(url, **kwargs)
    backend = engine.dialect.name
    try:
        with engine.begin() as connection:
            for ddl in legacy_ddl(backend, schema_version):
                connection.execute(text(ddl))
            connection.execute(
                text("INSERT INTO dynl2_meta (key, value) VALUES ('schema_version', :v)"),
                {"v": str(schema_version)},
            )
            experiment_id = connection.execute(
                text(
                    "INSERT INTO dynl2_experiments (name, config, created) "
                    "VALUES (:name, :config, :created) RETURNING id"
                ),
                {"name": EXPERIMENT, "config": json.dumps({"a": 1}), "created": CREATED},
            ).scalar_one()
            connection.execute(
                text("INSERT INTO dynl2_epochs (trial_id, epoch, train_loss) VALUES (:t, 1, 0.5)"),
                {"t": trial_id},
            )
            connection.execute(
                text(
                    "INSERT INTO dynl2_evaluations (experiment_id, arm, seed, params, "
                    "test_loss, test_acc, created) VALUES (:e, :arm, :seed, :params, :loss, "
                    ":acc, :created)"
                ),
                [
                    {
                        "e": experiment_id,
                        "arm": ARM,
                        "seed": seed,
                        "params": params,
                        "loss": loss,
                        "acc": acc,
                        "created": CREATED,
                    }
                    for seed, params, loss, acc in EVALUATIONS
                ],
            )
            if schema_version >= 3:
                connection.execute(
                    text("INSERT INTO dynl2_alembic_version (version_num) VALUES ('0002')")
                )
            if schema_version >= 2:
                connection.execute(
                    text(
                        "INSERT INTO dynl2_reports (experiment_id, created, path, summary, html) "
                        "VALUES (:e, :created, 'r.html', '{}', '<p>old</p>')"
                    ),
                    {"e": experiment_id, "created": CREATED},
                )
            optuna_revision = connection.execute(
                text("SELECT version_num FROM alembic_version")
            ).scalar_one()
    finally:
        engine.dispose()
    return LegacyRows(trial_id=trial_id, optuna_revision=str(optuna_revision))


def created_at() -> datetime:
    """The ``created`` time of the legacy rows, as dynl2 reads it back (UTC)."""
    return datetime.fromisoformat(CREATED + "+00:00")
