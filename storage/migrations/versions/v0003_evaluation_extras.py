"""dynl2_evaluations gains ``trainer_seed`` and ``diverged``, moved out of ``params``.

Schema version 4. Until now an evaluation's ``params`` JSON held, besides the searched
parameters, the seed its run trained with (``trainer_seed``) and, for a run that diverged, why
(``diverged``), and every reader had to strip them. Both become nullable columns, appended, and
the upgrade moves the values of the rows stored before out of ``params``.

The values move row by row in Python, the same on SQLite, PostgreSQL and MySQL/MariaDB (as
revision 0002 runs on all three): their JSON functions differ, and PostgreSQL's would rewrite
the text in its own key order, where dynl2 writes ``params`` with ``json.dumps(sort_keys=True)``.
Only rows whose text names an extra are read: evaluations are few (arms x replicates x seeds).
A row whose ``params`` are not a JSON object, or hold an extra of a type dynl2 never wrote, is
left as it is: readers name it as damaged, or as an evaluation of another configuration, which
the next evaluation redoes. :func:`split_extras` is also how a store at an older revision, read
without upgrading it (``storage.open(url, create=False)``), is read: as this upgrade would
leave it.
"""

from __future__ import annotations

import json
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision: str | None = "0002"
branch_labels: str | None = None
depends_on: str | None = None

TABLE = "dynl2_evaluations"
_SEED_RANGE = range(-(2**63), 2**63)  # what a BIGINT holds

_evaluations = sa.table(
    TABLE,
    sa.column("id", sa.Integer()),
    sa.column("params", sa.Text()),
    sa.column("trainer_seed", sa.BigInteger()),
    sa.column("diverged", sa.Text()),
)


def split_extras(params: dict[str, Any]) -> tuple[dict[str, Any], int | None, str | None] | None:
    """``(searched parameters, trainer_seed, diverged)`` of a ``params`` object stored before
    this revision, or ``None`` when an extra is not what dynl2 wrote there (an int that fits a
    BIGINT, a string): such a row is left as it is."""
    rest = dict(params)
    seed = rest.pop("trainer_seed", None)
    diverged = rest.pop("diverged", None)
    if seed is not None and (
        isinstance(seed, bool) or not isinstance(seed, int) or seed not in _SEED_RANGE
    ):
        return None
    if diverged is not None and not isinstance(diverged, str):
        return None
    return rest, seed, diverged


def _dumps(params: dict[str, Any]) -> str:
    return json.dumps(params, sort_keys=True)  # as dynl2 writes params


def _object(text: object) -> dict[str, Any] | None:
    try:
        value = json.loads(text) if isinstance(text, str | bytes) else None
    except (ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


def upgrade() -> None:
    with op.batch_alter_table(TABLE) as batch:
        batch.add_column(sa.Column("trainer_seed", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("diverged", sa.Text(), nullable=True))
    bind = op.get_bind()
    e = _evaluations.c
    named = sa.or_(
        e.params.contains('"trainer_seed"', autoescape=True),
        e.params.contains('"diverged"', autoescape=True),
    )
    moved = []
    for row_id, text in bind.execute(sa.select(e.id, e.params).where(named)):
        params = _object(text)
        split = None if params is None else split_extras(params)
        if split is not None and split[0] != params:
            rest, seed, diverged = split
            moved.append({"row": row_id, "p": _dumps(rest), "s": seed, "d": diverged})
    if moved:
        bind.execute(
            sa.update(_evaluations)
            .where(e.id == sa.bindparam("row"))
            .values(
                params=sa.bindparam("p"),
                trainer_seed=sa.bindparam("s"),
                diverged=sa.bindparam("d"),
            ),
            moved,
        )


def downgrade() -> None:
    # Back into params, as dynl2 wrote them before this revision.
    bind = op.get_bind()
    e = _evaluations.c
    stored = sa.or_(e.trainer_seed.is_not(None), e.diverged.is_not(None))
    back = []
    for row_id, text, seed, diverged in bind.execute(
        sa.select(e.id, e.params, e.trainer_seed, e.diverged).where(stored)
    ):
        params = _object(text)
        if params is None:
            continue  # damaged: nothing to put the values into
        if seed is not None:
            params["trainer_seed"] = seed
        if diverged is not None:
            params["diverged"] = diverged
        back.append({"row": row_id, "p": _dumps(params)})
    if back:
        bind.execute(
            sa.update(_evaluations)
            .where(e.id == sa.bindparam("row"))
            .values(params=sa.bindparam("p")),
            back,
        )
    with op.batch_alter_table(TABLE) as batch:
        batch.drop_column("diverged")
        batch.drop_column("trainer_seed")
