"""The PostgreSQL login behind ``dynl2 sql``: a role that may read the store and nothing else.

Why a login of its own. ``BEGIN READ ONLY`` stops writes, not what a superuser may still do in
a read-only transaction: read server files (``pg_read_file``), list directories, run programs
(``COPY ... TO PROGRAM``), reset statistics, end other clients' sessions. ``SET ROLE`` to a
weaker role inside a superuser's session does not hold either: the *session* user stays
superuser, so SQL that the statement scanner never sees (a string run by ``ts_stat``,
``query_to_xml``, ``xpath_table``) can call ``set_config('role', 'postgres', true)`` and be
superuser again. No scan of the query text wins that. So the query runs on a connection whose
*login* cannot do more than read, and the database's own privilege checks are the guard:

- :func:`set_up_reader` (``dynl2 sql-setup``) creates or resets the role
  ``dynl2_reader_<database>``: LOGIN but NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT
  NOREPLICATION NOBYPASSRLS, a member of no role, CONNECT on this database, SELECT on the
  store schema's tables (and on those created later by their owners), and sessions that are
  read-only with time limits by default. It shows every statement it runs.
- :func:`open_reader` (``dynl2 sql``) checks the login it would query as. One that can only read
  is used as it is. One that can do more (a superuser, a member of a role that reaches server
  files or other sessions, a login that may change the store's tables, whose sessions include
  the workers') is replaced by a new connection logged in as the reader role or, when there is
  none, refused with one line saying how to create it.

What the reader can still do is bounded by the query's own session, which ``dynl2 sql`` ends
after each query: a session-level advisory lock it takes dies with it, and it may signal only
sessions of its own role (other ``dynl2 sql`` queries).

One module, above the few hundred lines of the others, on purpose: the role's privileges that
:func:`set_up_reader` grants and the powers :func:`open_reader` refuses (``POWERFUL_ROLES``,
``_POWERS``) are two halves of one security rule, read and reviewed together; apart, one could
change without the other.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy.engine import make_url

from storage.errors import ReaderLoginError, StorageUnavailable, StorageURLError
from storage.urls import _canonical, backend_of, first_line, masked_url, resolve_url

if TYPE_CHECKING:
    import psycopg

__all__ = [
    "POWERFUL_ROLES",
    "READER_SETTINGS",
    "READER_URL_ENV",
    "ReaderSetup",
    "connect",
    "login_problem",
    "open_reader",
    "reader_role_name",
    "resolve_reader_url",
    "set_up_reader",
]

READER_URL_ENV = "DYNL2_SQL_URL"
ROLE_PREFIX = "dynl2_reader_"
CONNECT_TIMEOUT_S = 10
_MAX_NAME = 63  # PostgreSQL's identifier limit (NAMEDATALEN - 1), in bytes
SETUP_DOC = "docs/store.md: Read-only queries on PostgreSQL"

# Defaults for every session of the reader role, also a psql session with its URL; dynl2 sql
# sets its own, shorter limits inside each query's transaction.
READER_SETTINGS = (
    ("default_transaction_read_only", "on"),
    ("statement_timeout", "60s"),
    ("idle_in_transaction_session_timeout", "60s"),
)

# Predefined roles that reach past the store's tables: server files and programs, other
# sessions (signals, the text of their queries), writing every table, checkpoints, settings.
# A login that is a member of any of them is not a reader.
POWERFUL_ROLES = (
    "pg_checkpoint",
    "pg_create_subscription",
    "pg_execute_server_program",
    "pg_monitor",
    "pg_read_all_settings",
    "pg_read_all_stats",
    "pg_read_server_files",
    "pg_signal_backend",
    "pg_stat_scan_tables",
    "pg_use_reserved_connections",
    "pg_write_all_data",
    "pg_write_server_files",
)

# Every role the login is a member of (itself included: with SET ROLE it may act as any of
# them), what each may do beyond reading, and up to three tables or sequences it owns or may
# change in this database.
_POWERS = r"""
SELECT m.rolname, m.rolname = session_user, m.rolsuper, m.rolcreaterole, m.rolreplication,
       m.rolname = ANY(%(powerful)s),
       ARRAY(
           SELECT c.oid::regclass::text
           FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
           WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S')
             AND n.nspname <> 'information_schema' AND n.nspname NOT LIKE 'pg\_%%'
             AND (c.relowner = m.oid
                  OR has_table_privilege(m.oid, c.oid, 'INSERT, UPDATE, DELETE, TRUNCATE'))
           ORDER BY 1 LIMIT 3
       )
FROM pg_roles m
WHERE pg_has_role(session_user, m.oid, 'MEMBER')
ORDER BY m.rolname <> session_user, m.rolname
"""


@dataclass(frozen=True)
class ReaderSetup:
    """What :func:`set_up_reader` ran (or, for a dry run, would run)."""

    role: str
    admin: str  # the login that runs the statements
    database: str
    statements: tuple[str, ...]  # one transaction, in this order, exactly as run
    password_set: bool  # a generated password is set last (not listed: it is a secret)
    reader_url: str  # how to log in as the role; with the password when this call set one
    executed: bool  # False for a dry run


def reader_role_name(database: str) -> str:
    """``dynl2_reader_<database>``: roles belong to the whole cluster, databases do not."""
    clean = re.sub(r"[^a-z0-9_]", "_", database.lower())
    if clean != database or len(ROLE_PREFIX + clean) > _MAX_NAME:
        digest = hashlib.sha256(database.encode()).hexdigest()[:8]
        clean = f"{clean[:40]}_{digest}"  # two names that clean up alike stay apart
    return ROLE_PREFIX + clean


def resolve_reader_url(reader_url: str | None = None) -> tuple[str, str] | None:
    """The reader login's URL and where it came from: ``reader_url``, else ``$DYNL2_SQL_URL``."""
    if reader_url is not None:
        source = "reader URL"
        canonical = _canonical(reader_url, source=source)
    else:
        from_env = os.environ.get(READER_URL_ENV, "").strip()
        if not from_env:
            return None
        source = f"environment variable {READER_URL_ENV}"
        canonical = _canonical(from_env, source=source)
    if backend_of(canonical) != "postgresql":
        raise StorageURLError(
            f"The {source} {masked_url(canonical)!r} must name a PostgreSQL login "
            "(postgresql+psycopg://...): it is only used for PostgreSQL stores."
        )
    return canonical, source


def connect(url: str) -> psycopg.Connection[Any]:
    """A new autocommit connection, or :class:`StorageUnavailable` with the driver's words.
    Named like the store's (:func:`storage.engine.application_name`); behind PgBouncer
    (``$DYNL2_PGBOUNCER=1``) without server-side prepared statements."""
    import psycopg  # deferred: psycopg is the optional `postgres` extra

    from storage.engine import application_name, behind_pgbouncer, names_itself

    conninfo = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    extra: dict[str, Any] = {} if names_itself(url) else {"application_name": application_name()}
    try:
        connection = psycopg.connect(
            conninfo, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S, **extra
        )
    except psycopg.Error as exc:
        raise StorageUnavailable(
            f"Cannot connect to {masked_url(url)}: {first_line(exc)}"
        ) from exc
    if behind_pgbouncer():
        connection.prepare_threshold = None
    return connection


def login_problem(connection: psycopg.Connection[Any]) -> str | None:
    """What the connection's login may do beyond reading (``"is a superuser"``), or ``None``.

    It is the *session* user that counts: ``SET ROLE`` and ``set_config('role', ...)`` reach
    every role it is a member of, so each of those is checked too.
    """
    found = connection.execute(
        "SELECT rolsuper FROM pg_roles WHERE rolname = session_user"
    ).fetchone()
    if found is None or found[0]:
        return "is a superuser"
    rows = connection.execute(_POWERS, {"powerful": list(POWERFUL_ROLES)}).fetchall()
    return _worst(rows)


def _worst(rows: Sequence[tuple[Any, ...]]) -> str | None:
    reasons: list[tuple[int, str]] = []
    for name, itself, is_super, createrole, replication, powerful, writable in rows:
        member = "" if itself else f"is a member of {name}, which "
        if is_super:
            reasons.append((0, f"is a member of {name}, a superuser"))
        if createrole:
            reasons.append((1, f"{member}may create and change roles (CREATEROLE)"))
        if replication:
            reasons.append((2, f"{member}may start replication (REPLICATION)"))
        if powerful:
            reasons.append((3, f"is a member of {name}"))
        if writable:
            tables = ", ".join(writable)
            reasons.append((4, f"{member}owns or may change tables of the store ({tables})"))
    return min(reasons)[1] if reasons else None


def open_reader(url: str, reader_url: str | None = None) -> psycopg.Connection[Any]:
    """A connection to the PostgreSQL store at ``url`` whose login can only read.

    The login is, in this order: the one of ``reader_url`` or ``$DYNL2_SQL_URL`` if given; the
    store URL's own if it can only read; else the role ``dynl2_reader_<database>``, logged in
    without a password (trust, peer or ``~/.pgpass``). Raises :class:`ReaderLoginError` when
    none of them is a login that can only read.
    """
    import psycopg  # deferred: psycopg is the optional `postgres` extra

    explicit = resolve_reader_url(reader_url)
    if explicit is not None:
        given, source = explicit
        connection = connect(given)
        try:
            _same_database(connection, url, source)
            _refuse_powers(connection, f"the login {connection.info.user} of the {source}")
        except BaseException:
            connection.close()
            raise
        return connection

    connection = connect(url)
    try:
        problem = _checked_problem(connection)
        if problem is None:
            return connection
        user, database = connection.info.user, connection.info.dbname
        role = reader_role_name(database)
        exists = connection.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [role]).fetchone()
    except psycopg.Error as exc:
        connection.close()
        raise StorageUnavailable(f"The PostgreSQL server failed: {first_line(exc)}") from exc
    except BaseException:
        connection.close()
        raise
    connection.close()
    where = masked_url(url)
    if exists is None:
        raise ReaderLoginError(
            f"connected to PostgreSQL as {user}, who {problem}; dynl2 sql runs queries as a "
            f"dedicated read-only login instead: create it once with `dynl2 sql-setup --storage "
            f"'{where}'` (see {SETUP_DOC})."
        )
    as_reader = make_url(url).set(username=role, password=None, database=database)
    try:
        connection = connect(as_reader.render_as_string(hide_password=False))
    except StorageUnavailable as exc:
        cause = exc.__cause__ if isinstance(exc.__cause__, psycopg.Error) else exc
        raise ReaderLoginError(
            f"cannot log in as the read-only role {role} ({first_line(cause)}); give dynl2 sql "
            f"its URL with --reader-url or ${READER_URL_ENV} (`dynl2 sql-setup --new-password "
            f"--storage '{where}'` prints one)."
        ) from exc
    try:
        _refuse_powers(connection, f"the read-only role {role}", rerun=where)
    except BaseException:
        connection.close()
        raise
    return connection


def _checked_problem(connection: psycopg.Connection[Any]) -> str | None:
    """:func:`login_problem`, with a failing server as :class:`StorageUnavailable`."""
    import psycopg  # deferred: psycopg is the optional `postgres` extra

    try:
        return login_problem(connection)
    except psycopg.Error as exc:
        raise StorageUnavailable(f"The PostgreSQL server failed: {first_line(exc)}") from exc


def _refuse_powers(
    connection: psycopg.Connection[Any], who: str, rerun: str | None = None
) -> None:
    problem = _checked_problem(connection)
    if problem is None:
        return
    fix = (
        f"reset it with `dynl2 sql-setup --storage '{rerun}'`"
        if rerun is not None
        else "give a login that can only read, e.g. the one `dynl2 sql-setup` creates"
    )
    raise ReaderLoginError(f"{who} {problem}; dynl2 sql only queries as a reader: {fix}.")


def _same_database(connection: psycopg.Connection[Any], url: str, source: str) -> None:
    store_database = make_url(url).database
    if store_database and connection.info.dbname != store_database:
        raise ReaderLoginError(
            f"The {source} names the database {connection.info.dbname!r}, but the store is "
            f"{store_database!r}; give the reader URL of the store's own database."
        )


# ------------------------------------------------------------------------------- setup


def set_up_reader(
    url: str | None = None,
    *,
    role: str | None = None,
    new_password: bool = False,
    execute: bool = True,
) -> ReaderSetup:
    """Create or reset the read-only role that ``dynl2 sql`` logs in as (``dynl2 sql-setup``).

    Connects with ``url`` (a superuser, or the tables' owner with CREATEROLE) and, in one
    transaction, runs the statements returned in :attr:`ReaderSetup.statements`. Safe to run
    again: it puts the role back into exactly this state and grants SELECT on tables added
    since. A new role gets a generated password (:attr:`ReaderSetup.reader_url` carries it);
    an existing one keeps its password unless ``new_password``. ``execute=False`` only
    computes the statements.
    """
    canonical = resolve_url(url)
    backend = backend_of(canonical)
    if backend != "postgresql":
        raise StorageURLError(
            f"dynl2 sql-setup is for PostgreSQL stores, but {masked_url(canonical)!r} is "
            f"{backend}; there dynl2 sql needs no setup (it opens the file read-only)."
        )
    if role is not None and not _valid_role(role):
        raise ReaderLoginError(
            f"`role` must be a name of 1 to {_MAX_NAME} letters, digits or underscores that "
            f"does not start with pg_ or a digit, but got {role!r}."
        )
    import psycopg  # deferred: psycopg is the optional `postgres` extra

    connection = connect(canonical)
    try:
        return _set_up(connection, canonical, role, new_password=new_password, execute=execute)
    except psycopg.Error as exc:
        raise ReaderLoginError(
            f"dynl2 sql-setup could not set up the read-only role as {connection.info.user}: "
            f"{first_line(exc)}; run it as a superuser, or as the owner of the store's tables "
            "with CREATEROLE."
        ) from exc
    finally:
        connection.close()


def _valid_role(role: str) -> bool:
    return (
        re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", role) is not None
        and len(role.encode()) <= _MAX_NAME
        and not role.lower().startswith("pg_")
    )


def _set_up(
    connection: psycopg.Connection[Any],
    url: str,
    role: str | None,
    *,
    new_password: bool,
    execute: bool,
) -> ReaderSetup:
    from psycopg import sql

    found = connection.execute(
        "SELECT current_user, current_database(), current_schema()"
    ).fetchone()
    assert found is not None
    admin, database, schema = found
    if schema is None:
        raise ReaderLoginError(
            f"The login {admin} has no schema on its search_path in {database!r}, so the "
            "store's tables cannot be found; fix search_path, then run dynl2 sql-setup again."
        )
    name = role or reader_role_name(database)
    existing = connection.execute(
        "SELECT r.rolsuper, EXISTS (SELECT 1 FROM pg_class c WHERE c.relowner = r.oid) "
        "FROM pg_roles r WHERE r.rolname = %s",
        [name],
    ).fetchone()
    clash = None
    if name == admin:
        clash = "is the login running dynl2 sql-setup"
    elif existing is not None and existing[0]:
        clash = "exists and is a superuser"
    elif existing is not None and existing[1]:
        clash = f"exists and owns tables or other objects in {database}"
    if clash is not None:
        raise ReaderLoginError(
            f"The role {name} {clash}; dynl2 sql-setup strips every right but reading from "
            "the role it sets up, so give that role a name of its own with --role."
        )
    member_of = [
        row[0]
        for row in connection.execute(
            "SELECT g.rolname FROM pg_auth_members a JOIN pg_roles g ON g.oid = a.roleid "
            "JOIN pg_roles r ON r.oid = a.member WHERE r.rolname = %s ORDER BY 1",
            [name],
        )
    ]
    # Owners of the schema's tables (and the admin, who may create more): tables they create
    # later are granted to the reader too. Only roles the admin acts for can be named.
    owners = [
        row[0]
        for row in connection.execute(
            "SELECT o.rolname FROM pg_roles o WHERE o.rolname <> %(role)s "
            "AND pg_has_role(current_user, o.oid, 'MEMBER') AND (o.rolname = current_user OR "
            "EXISTS (SELECT 1 FROM pg_class c WHERE c.relowner = o.oid "
            "AND c.relnamespace = (SELECT oid FROM pg_namespace WHERE nspname = current_schema()) "
            "AND c.relkind IN ('r', 'p', 'v', 'm', 'f'))) ORDER BY 1",
            {"role": name},
        )
    ]

    r, d, s = sql.Identifier(name), sql.Identifier(database), sql.Identifier(schema)
    composed: list[sql.Composed] = []
    if existing is None:
        composed.append(sql.SQL("CREATE ROLE {} LOGIN").format(r))
    composed.append(
        sql.SQL(
            "ALTER ROLE {} WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT "
            "NOREPLICATION NOBYPASSRLS"
        ).format(r)
    )
    composed += [sql.SQL("REVOKE {} FROM {}").format(sql.Identifier(g), r) for g in member_of]
    composed += [
        sql.SQL("ALTER ROLE {} SET {} = {}").format(r, sql.SQL(k), sql.Literal(v))
        for k, v in READER_SETTINGS
    ]
    composed += [
        # PUBLIC keeps CONNECT and TEMP on every database unless an admin revokes them; a
        # read-only transaction may not create temporary tables anyway.
        sql.SQL("REVOKE ALL ON DATABASE {} FROM {}").format(d, r),
        sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(d, r),
        sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(s, r),
        sql.SQL("REVOKE ALL ON ALL TABLES IN SCHEMA {} FROM {}").format(s, r),
        sql.SQL("REVOKE ALL ON ALL SEQUENCES IN SCHEMA {} FROM {}").format(s, r),
        sql.SQL("GRANT SELECT ON ALL TABLES IN SCHEMA {} TO {}").format(s, r),
    ]
    composed += [
        sql.SQL(
            "ALTER DEFAULT PRIVILEGES FOR ROLE {} IN SCHEMA {} GRANT SELECT ON TABLES TO {}"
        ).format(sql.Identifier(owner), s, r)
        for owner in owners
    ]
    statements = tuple(c.as_string(connection) for c in composed)

    password = secrets.token_urlsafe(24) if existing is None or new_password else None
    if execute:
        with connection.transaction():
            for statement in composed:
                connection.execute(statement)
            if password is not None:
                connection.execute(
                    sql.SQL("ALTER ROLE {} PASSWORD {}").format(r, sql.Literal(password))
                )
    reader_url = make_url(url).set(
        username=name, password=password if execute else None, database=database
    )
    return ReaderSetup(
        role=name,
        admin=admin,
        database=database,
        statements=statements,
        password_set=password is not None,
        reader_url=reader_url.render_as_string(hide_password=False),
        executed=execute,
    )
