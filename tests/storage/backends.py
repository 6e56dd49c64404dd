"""Storage backends for tests: a SQLite file and a scratch database on a real PostgreSQL.

Plain helpers, no fixtures (those are in ``conftest.py``), so any test package can reuse them.
PostgreSQL comes from ``$DYNL2_TEST_POSTGRES_URL`` (default
``postgresql+psycopg://postgres@127.0.0.1:5432/test``); each test gets its own database
``dynl2_test_<random>``, dropped afterwards. When no server answers the tests are skipped,
unless ``DYNL2_REQUIRE_POSTGRES=1`` (CI), where they fail.

Opening a store on an empty database creates Optuna's tables (about 0.4 s on PostgreSQL), so
most tests start from a copy of a template store made once per session: a file copy on SQLite,
``CREATE DATABASE ... TEMPLATE`` on PostgreSQL. ``empty_url`` gives a truly empty database for
the tests about creating tables.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from functools import cache
from pathlib import Path
from typing import Any

import psycopg
import pytest
from sqlalchemy import event
from sqlalchemy.engine import Engine, make_url

import storage

POSTGRES_ENV = "DYNL2_TEST_POSTGRES_URL"
REQUIRE_POSTGRES_ENV = "DYNL2_REQUIRE_POSTGRES"
DEFAULT_POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
BACKENDS = ("sqlite", "postgresql")


def postgres_server_url() -> str:
    return os.environ.get(POSTGRES_ENV) or DEFAULT_POSTGRES_URL


def libpq_url(url: str) -> str:
    """A SQLAlchemy ``postgresql+psycopg://`` URL as libpq/psycopg spell it."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


@cache
def postgres_unavailable_reason(server_url: str) -> str | None:
    """``None`` when the server answers, else why not (checked once per session)."""
    try:
        with psycopg.connect(libpq_url(server_url), connect_timeout=3) as connection:
            connection.execute("SELECT 1")
    except psycopg.Error as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return f"no PostgreSQL at {make_url(server_url).render_as_string()} ({first})"
    return None


def require_postgres() -> str:
    """The server URL, or skip (fail when ``DYNL2_REQUIRE_POSTGRES=1``) if it does not answer."""
    server_url = postgres_server_url()
    reason = postgres_unavailable_reason(server_url)
    if reason is not None:
        if os.environ.get(REQUIRE_POSTGRES_ENV) == "1":
            pytest.fail(f"{REQUIRE_POSTGRES_ENV}=1 but {reason}; start it or set {POSTGRES_ENV}.")
        pytest.skip(reason)
    return server_url


@contextmanager
def scratch_postgres_database(server_url: str, template: str | None = None) -> Iterator[str]:
    """Create ``dynl2_test_<random>`` (optionally from ``template``), yield its URL, drop it."""
    name = f"dynl2_test_{uuid.uuid4().hex[:12]}"
    source = f' TEMPLATE "{template}"' if template else ""
    with psycopg.connect(libpq_url(server_url), autocommit=True, connect_timeout=5) as admin:
        admin.execute(f'CREATE DATABASE "{name}"{source}')
    try:
        yield make_url(server_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(libpq_url(server_url), autocommit=True, connect_timeout=5) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


class StoreTemplates:
    """One prepared store per backend, built on first use and copied for each test."""

    def __init__(self, directory: Path) -> None:
        self._directory = directory
        self._stack = ExitStack()
        self._made: dict[str, str] = {}

    def _template(self, backend: str) -> str:
        if backend not in self._made:
            if backend == "sqlite":
                url = f"sqlite:///{self._directory / 'template.db'}"
            else:
                scratch = scratch_postgres_database(require_postgres())
                url = self._stack.enter_context(scratch)
            storage.open(url).close()  # creates Optuna's tables and ours
            self._made[backend] = url
        return self._made[backend]

    @contextmanager
    def copy(self, backend: str, directory: Path) -> Iterator[str]:
        template = self._template(backend)
        if backend == "sqlite":
            target = directory / "dynl2.db"
            source = storage.sqlite_path(template)
            assert source is not None
            shutil.copyfile(source, target)  # closed store: the WAL is checkpointed
            yield f"sqlite:///{target}"
        else:
            database = make_url(template).database
            with scratch_postgres_database(require_postgres(), template=database) as url:
                yield url

    def close(self) -> None:
        self._stack.close()


@contextmanager
def empty_url(backend: str, directory: Path) -> Iterator[str]:
    """A URL of an empty database of ``backend`` (``sqlite`` or ``postgresql``)."""
    if backend == "sqlite":
        yield f"sqlite:///{directory / 'dynl2.db'}"
    elif backend == "postgresql":
        with scratch_postgres_database(require_postgres()) as url:
            yield url
    else:
        raise ValueError(f"unknown test backend {backend!r}; use one of {BACKENDS}")


@contextmanager
def statements() -> Iterator[list[str]]:
    """Every SQL statement any engine sends while the block runs (Optuna's included)."""
    seen: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        seen.append(statement)

    event.listen(Engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(Engine, "before_cursor_execute", record)
