"""Baseline: dynl2's tables as dynl2 created them at schema version 2, before Alembic.

A store dynl2 wrote at schema version 2 is stamped here and never runs it. One at version 1
lacks only ``dynl2_reports``: it starts before this revision, which creates whichever of the
tables are missing, so this one revision adopts both (and builds a new database from nothing).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None

NAME_LENGTH = 255  # experiment and arm names

# Tools other than dynl2 open SQLite without `PRAGMA foreign_keys=ON`: the trigger deletes a
# trial's epochs with it all the same.
SQLITE_TRIGGER = (
    "CREATE TRIGGER IF NOT EXISTS dynl2_epochs_delete_with_trial "
    "AFTER DELETE ON trials FOR EACH ROW BEGIN "
    "DELETE FROM dynl2_epochs WHERE trial_id = OLD.trial_id; END"
)


def _meta() -> None:
    op.create_table(
        "dynl2_meta",
        sa.Column("key", sa.String(64), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("key", name="pk_dynl2_meta"),
    )


def _experiments() -> None:
    op.create_table(
        "dynl2_experiments",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(NAME_LENGTH), nullable=False),
        sa.Column("config", sa.Text(), nullable=False),
        sa.Column("created", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_dynl2_experiments"),
        sa.UniqueConstraint("name", name="uq_dynl2_experiments_name"),
    )


def _metrics(*names: str) -> list[sa.Column[float]]:
    return [sa.Column(name, sa.Double(), nullable=True) for name in names]


def _epochs() -> None:
    op.create_table(
        "dynl2_epochs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("trial_id", sa.Integer(), nullable=False),
        sa.Column("epoch", sa.Integer(), nullable=False),
        *_metrics("train_loss", "train_acc", "val_loss", "val_acc"),
        *_metrics("lam_mean", "lam_min", "lam_max", "lam_last", "weight_norm", "seconds"),
        sa.PrimaryKeyConstraint("id", name="pk_dynl2_epochs"),
        sa.UniqueConstraint("trial_id", "epoch", name="uq_dynl2_epochs_trial_id_epoch"),
        sa.ForeignKeyConstraint(
            ["trial_id"],
            ["trials.trial_id"],
            name="fk_dynl2_epochs_trial_id_trials",
            ondelete="CASCADE",
        ),
    )


def _evaluations() -> None:
    op.create_table(
        "dynl2_evaluations",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("experiment_id", sa.Integer(), nullable=False),
        sa.Column("arm", sa.String(NAME_LENGTH), nullable=False),
        sa.Column("seed", sa.BigInteger(), nullable=False),
        sa.Column("params", sa.Text(), nullable=False),
        *_metrics("test_loss", "test_acc", "val_loss", "val_acc", "seconds"),
        sa.Column("created", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_dynl2_evaluations"),
        sa.UniqueConstraint(
            "experiment_id", "arm", "seed", name="uq_dynl2_evaluations_experiment_id_arm_seed"
        ),
        sa.ForeignKeyConstraint(
            ["experiment_id"],
            ["dynl2_experiments.id"],
            name="fk_dynl2_evaluations_experiment_id_dynl2_experiments",
            ondelete="CASCADE",
        ),
    )


def _reports() -> None:
    op.create_table(
        "dynl2_reports",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("experiment_id", sa.Integer(), nullable=False),
        sa.Column("created", sa.DateTime(), nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("summary", sa.Text(), nullable=False),
        sa.Column("html", sa.Text().with_variant(mysql.LONGTEXT(), "mysql"), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_dynl2_reports"),
        sa.ForeignKeyConstraint(
            ["experiment_id"],
            ["dynl2_experiments.id"],
            name="fk_dynl2_reports_experiment_id_dynl2_experiments",
            ondelete="CASCADE",
        ),
    )
    op.create_index("ix_dynl2_reports_experiment_id", "dynl2_reports", ["experiment_id"])


_TABLES = (
    ("dynl2_meta", _meta),
    ("dynl2_experiments", _experiments),
    ("dynl2_epochs", _epochs),
    ("dynl2_evaluations", _evaluations),
    ("dynl2_reports", _reports),
)


def upgrade() -> None:
    bind = op.get_bind()
    present = set(sa.inspect(bind).get_table_names())
    for name, create in _TABLES:
        if name not in present:
            create()
    if bind.dialect.name == "sqlite":
        op.execute(SQLITE_TRIGGER)


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.execute("DROP TRIGGER IF EXISTS dynl2_epochs_delete_with_trial")
    for name, _ in reversed(_TABLES):
        op.drop_table(name)
