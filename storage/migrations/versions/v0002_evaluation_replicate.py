"""dynl2_evaluations gains ``replicate``: which search of the arm chose the configuration.

Schema version 3. Every row stored before is replicate 1 (the server default), as it was the
arm's only search; the unique key becomes (experiment_id, arm, replicate, seed), so each
replicate's best configuration is evaluated on the same seeds. SQLite cannot change a
constraint in place: batch mode rebuilds the table there (inside the caller's transaction).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision: str | None = "0001"
branch_labels: str | None = None
depends_on: str | None = None

TABLE = "dynl2_evaluations"
OLD_KEY = "uq_dynl2_evaluations_experiment_id_arm_seed"
NEW_KEY = "uq_dynl2_evaluations_experiment_id_arm_replicate_seed"


def upgrade() -> None:
    with op.batch_alter_table(TABLE) as batch:
        batch.add_column(
            sa.Column("replicate", sa.Integer(), server_default=sa.text("1"), nullable=False)
        )
        # The new key first: on MySQL the foreign key on experiment_id needs an index that
        # starts with it at every moment.
        batch.create_unique_constraint(NEW_KEY, ["experiment_id", "arm", "replicate", "seed"])
        batch.drop_constraint(OLD_KEY, type_="unique")


def downgrade() -> None:
    # Schema version 2 has room for one search per arm: the other replicates' rows go.
    op.execute(sa.text(f"DELETE FROM {TABLE} WHERE replicate <> 1"))
    with op.batch_alter_table(TABLE) as batch:
        batch.create_unique_constraint(OLD_KEY, ["experiment_id", "arm", "seed"])
        batch.drop_constraint(NEW_KEY, type_="unique")
        batch.drop_column("replicate")
