"""The read-only PostgreSQL role of ``dynl2 sql`` in tests, and what a query must not touch.

A role belongs to the whole cluster and outlives the scratch database it was made for, so
every test that sets one up drops it afterwards: ``DROP OWNED BY`` in the database (its grants
and default privileges), then ``DROP ROLE``. Names are ``dynl2_reader_<database>`` and the
scratch databases' names are random, so tests that run at the same time never share a role.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg import sql
from sqlalchemy.engine import make_url

import storage
from tests.storage.backends import libpq_url, postgres_server_url

ADVISORY_KEY = 424242  # the advisory lock the escape attempts try to keep


@contextmanager
def reader_role(url: str, **kwargs: object) -> Iterator[storage.ReaderSetup]:
    """``dynl2 sql-setup`` on the database at ``url``; the role is dropped afterwards."""
    setup = storage.set_up_reader(url, **kwargs)  # type: ignore[arg-type]
    try:
        yield setup
    finally:
        drop_role(url, setup.role)


def drop_role(url: str, role: str) -> None:
    name = sql.Identifier(role)
    with (
        contextlib.suppress(psycopg.Error),  # the database or the role may be gone already
        psycopg.connect(libpq_url(url), autocommit=True, connect_timeout=5) as connection,
    ):
        connection.execute(sql.SQL("DROP OWNED BY {}").format(name))
    with psycopg.connect(admin_url(), autocommit=True, connect_timeout=5) as connection:
        connection.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(name))


def admin_url(database: str | None = None) -> str:
    """libpq URL of the test server's superuser, on ``database`` (default: the server URL's)."""
    server = make_url(postgres_server_url())
    return libpq_url(server.set(database=database or server.database).render_as_string(False))


def role_state(url: str, role: str) -> tuple[Any, ...]:
    """Everything dynl2 sql-setup decides about ``role`` in the database at ``url``."""
    with psycopg.connect(libpq_url(url)) as connection:
        attributes = connection.execute(
            "SELECT rolsuper, rolinherit, rolcreaterole, rolcreatedb, rolcanlogin, "
            "rolreplication, rolbypassrls, rolconfig FROM pg_roles WHERE rolname = %s",
            [role],
        ).fetchone()
        memberships = connection.execute(
            "SELECT g.rolname FROM pg_auth_members a JOIN pg_roles g ON g.oid = a.roleid "
            "JOIN pg_roles r ON r.oid = a.member WHERE r.rolname = %s ORDER BY 1",
            [role],
        ).fetchall()
        tables = connection.execute(
            "SELECT table_name, privilege_type FROM information_schema.role_table_grants "
            "WHERE grantee = %s ORDER BY 1, 2",
            [role],
        ).fetchall()
        defaults = connection.execute(
            "SELECT defaclrole::regrole::text, defaclobjtype, defaclacl::text "
            "FROM pg_default_acl ORDER BY 1, 2"
        ).fetchall()
        database = connection.execute(
            "SELECT datacl::text FROM pg_database WHERE datname = current_database()"
        ).fetchone()
    return attributes, tuple(memberships), tuple(tables), tuple(defaults), database


def outside_state(url: str) -> tuple[object, ...]:
    """What a query must not change outside the store's tables: when the statistics of this
    database and of ``postgres`` were last reset, and who holds the test's advisory lock."""
    database = make_url(url).database
    with psycopg.connect(admin_url()) as connection:
        stats = connection.execute(
            "SELECT datname, stats_reset FROM pg_stat_database "
            "WHERE datname IN (%s, 'postgres') ORDER BY 1",
            [database],
        ).fetchall()
        locks = connection.execute(
            "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND objid = %s",
            [ADVISORY_KEY],
        ).fetchall()
    return tuple(stats), tuple(locks)


@contextmanager
def bystander() -> Iterator[psycopg.Connection[tuple[object, ...]]]:
    """Another client's session, as superuser, in another database (``postgres``)."""
    with psycopg.connect(admin_url("postgres"), autocommit=True, connect_timeout=5) as connection:
        yield connection


def alive(connection: psycopg.Connection[tuple[object, ...]]) -> bool:
    try:
        connection.execute("SELECT 1").fetchone()
    except psycopg.OperationalError:
        return False
    return True
