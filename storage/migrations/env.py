"""Alembic's environment for dynl2's tables, run only by :mod:`storage.migrations`.

There is no alembic.ini and no command line: the caller passes the connection to migrate, in
its transaction and under its lock, as ``config.attributes["connection"]``. The version table
is dynl2's own, so Optuna's ``alembic_version`` in the same database is never touched.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from storage.migrations import VERSION_TABLE

connection = context.config.attributes.get("connection")
if not isinstance(connection, Connection):
    raise RuntimeError(
        "dynl2's migrations run when storage.open() opens a store, not from the alembic "
        "command line: open the store with dynl2 (any command that writes) to upgrade it."
    )
context.configure(connection=connection, version_table=VERSION_TABLE)
with context.begin_transaction():
    context.run_migrations()
