"""Versioned migrations of dynl2's own tables (Alembic), run from code: there is no alembic.ini.

The revisions live in ``versions/``; a store records the one it stands at in its own table,
``dynl2_alembic_version``. Optuna keeps its revision in ``alembic_version`` of the same
database: neither ever reads or writes the other's. ``storage.open(url)`` brings every store it
opens with ``create=True`` to :func:`head` through :func:`upgrade`:

- a new database gets the tables as :mod:`storage.schema` declares them and is stamped at the
  head (no history to replay: the migration tests check both roads lead to the same tables);
- a store an older dynl2 wrote before there were revisions is stamped at the revision of its
  ``dynl2_meta`` schema version (:data:`SCHEMA_VERSIONS`) and upgraded;
- a store at an older revision is upgraded.

Everything runs in one transaction (:func:`transaction`) while the caller holds the store's
named lock, so workers that open one store together upgrade it once. ``dynl2_meta`` keeps
the ``schema_version`` of the revision reached: older dynl2 releases read it to refuse a store
newer than they are. Alembic is imported here only, by code that opens a store.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import sqlalchemy
from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import Connection, Engine, column, event, insert, inspect, select, table, update
from sqlalchemy.pool import NullPool

from storage.engine import engine_kwargs
from storage.errors import StorageError, damaged
from storage.schema import SCHEMA_VERSION, Meta, create_schema
from storage.urls import first_line

__all__ = [
    "SCHEMA_VERSIONS",
    "VERSION_TABLE",
    "SchemaState",
    "downgrade",
    "head",
    "parse_schema_version",
    "read_state",
    "replay",
    "revisions",
    "transaction",
    "upgrade",
]

VERSION_TABLE = "dynl2_alembic_version"  # Alembic's version_table option: not Optuna's

# The dynl2_meta schema_version of the tables at each revision. A store from before Alembic
# (no dynl2_alembic_version) is stamped at the revision of its schema_version; one at version 1
# lacks only dynl2_reports and starts before the baseline, which creates the missing tables.
SCHEMA_VERSIONS: dict[str, int] = {"0001": 2, "0002": 3, "0003": 4, "0004": 5}
_UNVERSIONED_START: dict[int, str | None] = {1: None, 2: "0001"}

_SCRIPTS = Path(__file__).resolve().parent
_SCHEMA_VERSION_KEY = "schema_version"
_version_table = table(VERSION_TABLE, column("version_num"))


@dataclass(frozen=True)
class SchemaState:
    """Where a database's dynl2 tables stand, as :func:`read_state` found them."""

    tables: frozenset[str]  # the dynl2_ tables present, the version table included
    revision: str | None  # the row of dynl2_alembic_version; None when absent or empty
    schema_version: int | None  # dynl2_meta's schema_version; None when absent

    @property
    def empty(self) -> bool:
        """No dynl2 table at all: a new database (Optuna's tables may be there)."""
        return not self.tables

    @property
    def unknown_revision(self) -> bool:
        """Stamped by a newer dynl2, at a revision this code does not have."""
        return self.revision is not None and self.revision not in revisions()

    @property
    def newer(self) -> bool:
        """Written by a newer dynl2: this code must neither upgrade nor use it."""
        return self.unknown_revision or (self.schema_version or 0) > SCHEMA_VERSION

    @property
    def current(self) -> bool:
        """At the head revision, with dynl2_meta saying so: nothing to do."""
        return self.revision == head() and self.schema_version == SCHEMA_VERSION


@cache
def _scripts() -> ScriptDirectory:
    """The revisions, read once per process (they ship with the code and never change)."""
    return ScriptDirectory.from_config(_config())


def head() -> str:
    """The newest revision this code has."""
    found = _scripts().get_current_head()
    assert found is not None, "storage/migrations/versions holds no revision"
    return found


def revisions() -> frozenset[str]:
    """Every revision this code has."""
    return frozenset(script.revision for script in _scripts().walk_revisions())


def parse_schema_version(value: object) -> int:
    """The ``schema_version`` of ``dynl2_meta``: a whole number >= 1, as dynl2 writes it."""
    text = str(value)
    if isinstance(value, bool) or not re.fullmatch(r"[1-9][0-9]*", text):
        raise damaged(
            f"the schema_version in dynl2_meta is {text[:40]!r}, not a whole number >= 1"
        )
    return int(text)


def read_state(connection: Connection) -> SchemaState:
    """Read where the tables stand; reads only, so read-only opens may call it."""
    tables = frozenset(
        name for name in inspect(connection).get_table_names() if name.startswith("dynl2_")
    )
    revision = None
    if VERSION_TABLE in tables:
        rows = list(connection.scalars(select(_version_table.c.version_num)))
        if len(rows) > 1:  # dynl2's history is one line: never two heads
            raise damaged(f"{VERSION_TABLE} holds {len(rows)} revisions, not one")
        revision = str(rows[0]) if rows else None
    schema_version = None
    if Meta.__tablename__ in tables:
        value = connection.scalar(select(Meta.value).where(Meta.key == _SCHEMA_VERSION_KEY))
        schema_version = None if value is None else parse_schema_version(value)
    return SchemaState(tables, revision, schema_version)


def upgrade(connection: Connection, state: SchemaState) -> None:
    """Bring the tables to :func:`head` in ``connection``'s transaction.

    ``state`` must have been read in that transaction, under the store's named lock, and not
    be :attr:`~SchemaState.newer` (the caller refuses those with its own message).
    """
    assert not state.newer, "a store newer than this code is refused, never upgraded"
    config = _config(connection)
    if state.empty:
        create_schema(connection)
        _run(command.stamp, config, "head")
    else:
        if state.revision is None:  # written by a dynl2 from before Alembic
            start = _unversioned_start(state)
            if start is not None:
                _run(command.stamp, config, start)
        _run(command.upgrade, config, "head")
    _write_schema_version(connection, SCHEMA_VERSION)


def replay(connection: Connection, revision: str = "head") -> None:
    """Run the revisions from where the store stands up to ``revision``, never asking the
    models: how the tests build a store from the migrations alone, to check that they and
    :mod:`storage.schema` agree (dynl2 itself calls :func:`upgrade`)."""
    _run(command.upgrade, _config(connection), revision)
    _write_schema_version(connection, SCHEMA_VERSIONS[head() if revision == "head" else revision])


def downgrade(connection: Connection, revision: str) -> None:
    """Take the tables back to ``revision``, or drop them all with ``"base"`` (for developers
    and tests: dynl2 never goes back)."""
    _run(command.downgrade, _config(connection), revision)
    if revision != "base":
        _write_schema_version(connection, SCHEMA_VERSIONS[revision])


@contextmanager
def transaction(url: str, engine: Engine) -> Iterator[Connection]:
    """One transaction for a schema change: all of it is kept, or none.

    PostgreSQL runs DDL inside transactions as it is. Python's sqlite3 does not: it commits
    each CREATE or ALTER as it goes, so a worker killed halfway through a migration (SQLite
    rebuilds a table to change a constraint) would leave a half-rebuilt store. On SQLite the
    change therefore gets its own short-lived engine whose transactions are SQLite's own,
    begun with ``BEGIN IMMEDIATE`` (the write lock up front: no reader is blocked in WAL mode).
    """
    if engine.dialect.name != "sqlite":
        with engine.begin() as connection:
            yield connection
        return
    ddl_engine = sqlalchemy.create_engine(url, poolclass=NullPool, **engine_kwargs(url))
    event.listen(ddl_engine, "connect", _driver_leaves_transactions_to_us)
    event.listen(ddl_engine, "begin", _begin_immediate)
    try:
        with ddl_engine.begin() as connection:
            yield connection
    finally:
        ddl_engine.dispose()


def _driver_leaves_transactions_to_us(dbapi_connection: Any, record: Any) -> None:
    dbapi_connection.isolation_level = None  # sqlite3 stops its own BEGIN/COMMIT handling


def _begin_immediate(connection: Connection) -> None:
    connection.exec_driver_sql("BEGIN IMMEDIATE")


def _config(connection: Connection | None = None) -> Config:
    """Alembic's configuration, built here instead of read from an alembic.ini."""
    config = Config()
    # ConfigParser interpolates '%': a folder name may hold one.
    config.set_main_option("script_location", str(_SCRIPTS).replace("%", "%%"))
    if connection is not None:
        config.attributes["connection"] = connection  # what env.py migrates
    return config


def _run(step: Any, config: Config, revision: str) -> None:
    try:
        step(config, revision)
    except CommandError as exc:
        raise StorageError(
            f"dynl2 could not migrate its tables to revision {revision}: {first_line(exc)}"
        ) from exc


def _unversioned_start(state: SchemaState) -> str | None:
    version = 1 if state.schema_version is None else state.schema_version
    if version not in _UNVERSIONED_START:
        raise damaged(
            f"dynl2_meta says schema version {version}, but {VERSION_TABLE}, which every "
            "store of that version has, is missing"
        )
    return _UNVERSIONED_START[version]


def _write_schema_version(connection: Connection, version: int) -> None:
    found = connection.scalar(select(Meta.value).where(Meta.key == _SCHEMA_VERSION_KEY))
    if found is None:
        connection.execute(insert(Meta).values(key=_SCHEMA_VERSION_KEY, value=str(version)))
    elif found != str(version):
        connection.execute(
            update(Meta).where(Meta.key == _SCHEMA_VERSION_KEY).values(value=str(version))
        )
