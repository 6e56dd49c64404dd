"""Suites: families of experiments from one suite file, their members and their reports.

Schema version 5. Three new tables, nothing else changes: ``dynl2_suites`` (the suite file as
parsed, JSON), ``dynl2_suite_experiments`` (the experiments it expands to, in order, each with
the matrix values that made it; the name only, since a suite is stored before its experiments
exist) and ``dynl2_suite_reports`` (generated suite reports, kept whole like
``dynl2_reports``). Going back drops the three tables and what they held.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0004"
down_revision: str | None = "0003"
branch_labels: str | None = None
depends_on: str | None = None

NAME_LENGTH = 255  # suite and experiment names


def upgrade() -> None:
    op.create_table(
        "dynl2_suites",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(NAME_LENGTH), nullable=False),
        sa.Column("created", sa.DateTime(), nullable=False),
        sa.Column("definition", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_dynl2_suites"),
        sa.UniqueConstraint("name", name="uq_dynl2_suites_name"),
    )
    op.create_table(
        "dynl2_suite_experiments",
        sa.Column("suite_id", sa.Integer(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("experiment", sa.String(NAME_LENGTH), nullable=False),
        sa.Column("factors", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("suite_id", "position", name="pk_dynl2_suite_experiments"),
        sa.UniqueConstraint(
            "suite_id", "experiment", name="uq_dynl2_suite_experiments_suite_id_experiment"
        ),
        sa.ForeignKeyConstraint(
            ["suite_id"],
            ["dynl2_suites.id"],
            name="fk_dynl2_suite_experiments_suite_id_dynl2_suites",
            ondelete="CASCADE",
        ),
    )
    op.create_table(
        "dynl2_suite_reports",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("suite_id", sa.Integer(), nullable=False),
        sa.Column("created", sa.DateTime(), nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("summary", sa.Text(), nullable=False),
        sa.Column("html", sa.Text().with_variant(mysql.LONGTEXT(), "mysql"), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_dynl2_suite_reports"),
        sa.ForeignKeyConstraint(
            ["suite_id"],
            ["dynl2_suites.id"],
            name="fk_dynl2_suite_reports_suite_id_dynl2_suites",
            ondelete="CASCADE",
        ),
    )
    op.create_index("ix_dynl2_suite_reports_suite_id", "dynl2_suite_reports", ["suite_id"])


def downgrade() -> None:
    op.drop_index("ix_dynl2_suite_reports_suite_id", table_name="dynl2_suite_reports")
    op.drop_table("dynl2_suite_reports")
    op.drop_table("dynl2_suite_experiments")
    op.drop_table("dynl2_suites")
