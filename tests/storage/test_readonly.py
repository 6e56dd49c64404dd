"""The read-only door (`dynl2 sql`): bad queries are refused and change nothing, on every
backend; reads return columns, rows and a truncation flag; slow queries are stopped. On
PostgreSQL queries run logged in as the reader role `dynl2 sql-setup` creates (issue 16): a
superuser's session is never used, and the role's privileges alone refuse the escapes."""

from __future__ import annotations

import hashlib
import re
import sqlite3
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import optuna
import psycopg
import pytest
from sqlalchemy.engine import make_url

import storage
from storage.pg_reader import reader_role_name
from storage.readonly import MAX_ROWS, MAX_TIMEOUT_S, RESULT_BYTES
from storage.readonly_pg import run_postgres
from storage.readonly_sqlite import run_sqlite
from tests.storage.backends import BACKENDS, StoreTemplates, libpq_url
from tests.storage.readers import (
    ADVISORY_KEY,
    admin_url,
    alive,
    bystander,
    drop_role,
    outside_state,
    reader_role,
    role_state,
)

TABLES = ("dynl2_meta", "dynl2_experiments", "dynl2_epochs", "dynl2_evaluations", "trials")
EPOCHS = 3
TRIALS = 2


@dataclass(frozen=True)
class Populated:
    backend: str
    url: str
    directory: Path  # where a refused query must not have created files
    reader: str | None = None  # PostgreSQL: the role dynl2 sql logs in as


def _state(db: Populated) -> tuple[object, ...]:
    """Everything a write could change: table list, row counts, and the SQLite file's bytes."""
    if db.backend == "sqlite":
        path = storage.sqlite_path(db.url)
        assert path is not None
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as connection:
            tables = sorted(r[0] for r in connection.execute("SELECT name FROM sqlite_master"))
            counts = [connection.execute(f"SELECT count(*) FROM {t}").fetchone() for t in TABLES]
        return digest, tuple(tables), tuple(counts), sorted(p.name for p in db.directory.iterdir())
    with psycopg.connect(libpq_url(db.url)) as connection:
        tables = connection.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' "
            "ORDER BY 1"
        ).fetchall()
        counts = [connection.execute(f"SELECT count(*) FROM {t}").fetchone() for t in TABLES]
        epochs = connection.execute(
            "SELECT md5(string_agg(e::text, ',' ORDER BY e.id)) FROM dynl2_epochs e"
        ).fetchone()
    return tuple(tables), tuple(counts), epochs, outside_state(db.url)


@contextmanager
def _populate(
    backend: str, factory: pytest.TempPathFactory, templates: StoreTemplates
) -> Iterator[Populated]:
    """A store with an experiment, two trials and their epochs."""
    directory = factory.mktemp(f"readonly-{backend}")
    with templates.copy(backend, directory) as url:
        with storage.open(url) as store:
            store.create_experiment("exp", {"k": 1})
            study = optuna.create_study(storage=store.optuna_storage(), study_name="exp/dynamic")
            for _ in range(TRIALS):
                trial = study.ask()
                rows = [{"epoch": e, "train_loss": 1.0 / e} for e in range(1, EPOCHS + 1)]
                store.record_epochs(trial._trial_id, rows)
                study.tell(trial, 0.5)
        # Closed: on SQLite the WAL is checkpointed into the file we hash.
        if backend == "sqlite":
            yield Populated(backend, url, directory)
        else:
            with reader_role(url) as setup:
                yield Populated(backend, url, directory, setup.role)


@pytest.fixture(scope="module")
def sqlite_populated(
    tmp_path_factory: pytest.TempPathFactory, store_templates: StoreTemplates
) -> Iterator[Populated]:
    with _populate("sqlite", tmp_path_factory, store_templates) as populated:
        yield populated


@pytest.fixture(scope="module")
def postgres_populated(
    tmp_path_factory: pytest.TempPathFactory, store_templates: StoreTemplates
) -> Iterator[Populated]:
    with _populate("postgresql", tmp_path_factory, store_templates) as populated:
        yield populated


@pytest.fixture(params=BACKENDS)
def populated(request: pytest.FixtureRequest) -> Populated:
    """The module's populated store on every backend (built once per module and backend)."""
    fixture = "sqlite_populated" if request.param == "sqlite" else "postgres_populated"
    result: Populated = request.getfixturevalue(fixture)
    return result


COMMON_BAD = [
    "DELETE FROM dynl2_epochs",
    "DROP TABLE dynl2_epochs",
    "INSERT INTO dynl2_meta (key, value) VALUES ('k', 'v')",
    "UPDATE dynl2_epochs SET train_loss = 0",
    "CREATE TABLE evil (a INTEGER)",
    "SELECT 1; DELETE FROM dynl2_epochs",
    "SELECT 1;\nDROP TABLE dynl2_epochs",
    "/* x */ DELETE FROM dynl2_epochs",
    "-- c\nDROP TABLE dynl2_epochs",
    "WITH d AS (SELECT 1) DELETE FROM dynl2_epochs",
    "ALTER TABLE dynl2_epochs ADD COLUMN x INTEGER",
    "BEGIN",
]
SQLITE_BAD = [
    "ATTACH DATABASE '{dir}/evil.db' AS evil",
    "PRAGMA journal_mode=delete",
    "PRAGMA query_only=OFF",
    "PRAGMA writable_schema=ON",
    "PRAGMA user_version=7",
    "VACUUM INTO '{dir}/copy.db'",
    "VACUUM",
    "SELECT load_extension('x')",
    "REPLACE INTO dynl2_meta VALUES ('k', 'v')",
    "SELECT * FROM pragma_table_info('dynl2_epochs')",  # table-valued pragmas are refused
]
TS_STAT_SWITCH = (
    "SELECT * FROM ts_stat($$SELECT to_tsvector('simple', set_config('role', 'postgres', true))$$)"
)
POSTGRES_BAD = [
    "WITH d AS (DELETE FROM dynl2_epochs RETURNING *) SELECT * FROM d",
    "COPY dynl2_epochs TO PROGRAM 'touch {marker}'",
    "SELECT pg_read_file('/etc/passwd')",
    "SELECT \"pg_read_file\"('/etc/passwd')",
    "SELECT pg_ls_dir('.')",
    "SELECT lo_import('/etc/passwd')",
    "SELECT set_config('role', 'postgres', true)",
    "SELECT 1 INTO evil",
    "SELECT * FROM dynl2_epochs FOR UPDATE",
    "DO $$ BEGIN DELETE FROM dynl2_epochs; END $$",
    "SET ROLE postgres",
    "TRUNCATE dynl2_epochs",
    "SELECT U&\"pg_read_file\"('/etc/passwd')",
    # Issue 16: SQL text run by ts_stat is never scanned; the role may not switch back.
    TS_STAT_SWITCH,
    "RESET ROLE",
    "SELECT pg_stat_reset()",
    "SELECT pg_terminate_backend({victim})",
    f"SELECT pg_advisory_lock({ADVISORY_KEY})",
]


def _marker() -> Path:
    # COPY ... TO PROGRAM runs on the database server as its own user: /tmp is writable there.
    return Path("/tmp") / f"dynl2-copy-marker-{uuid.uuid4().hex}"


def _assert_refused(db: Populated, sql: str, run: Callable[[str], object]) -> None:
    marker = _marker()
    with bystander() as victim:  # another client's session, in another database
        query = sql.format(dir=db.directory, marker=marker, victim=victim.info.backend_pid)
        before = _state(db)
        with pytest.raises(storage.ReadOnlyViolation, match="read-only"):
            run(query)
        assert _state(db) == before
        assert not marker.exists()
        assert alive(victim)


@pytest.mark.parametrize("sql", COMMON_BAD)
def test_bad_queries_are_refused_and_change_nothing(populated: Populated, sql: str) -> None:
    _assert_refused(populated, sql, lambda query: storage.run_readonly(populated.url, query))


@pytest.mark.parametrize("sql", SQLITE_BAD)
def test_bad_sqlite_queries(sqlite_populated: Populated, sql: str) -> None:
    url = sqlite_populated.url
    _assert_refused(sqlite_populated, sql, lambda query: storage.run_readonly(url, query))


@pytest.mark.parametrize("sql", POSTGRES_BAD)
def test_bad_postgres_queries(postgres_populated: Populated, sql: str) -> None:
    url = postgres_populated.url
    _assert_refused(postgres_populated, sql, lambda query: storage.run_readonly(url, query))


# Each layer on its own: the same refusals with the scanner bypassed.
SQLITE_UNSCANNED = [
    "DELETE FROM dynl2_epochs",
    "WITH d AS (SELECT 1) DELETE FROM dynl2_epochs",
    "DROP TABLE dynl2_epochs",
    "INSERT INTO dynl2_meta (key, value) VALUES ('k', 'v')",
    "ATTACH DATABASE '{dir}/evil.db' AS evil",
    "VACUUM INTO '{dir}/copy.db'",
    "PRAGMA journal_mode=delete",
    "SELECT load_extension('x')",
    "SELECT 1; DELETE FROM dynl2_epochs",
]
POSTGRES_UNSCANNED = [
    # Issue 16: what the reader role's privileges refuse on their own.
    "SELECT set_config('role', 'postgres', true)",
    "SET ROLE postgres",
    "SET SESSION AUTHORIZATION postgres",
    TS_STAT_SWITCH,
    "SELECT * FROM pg_ls_dir('/')",
    "SELECT lo_import('/etc/passwd')",
    "SELECT pg_stat_reset()",
    "SELECT pg_terminate_backend({victim})",
    "SELECT query_to_xml('SELECT pg_read_file(''/etc/passwd'')', true, false, '')",
    "COPY (SELECT 1) TO PROGRAM 'touch {marker}'",
    "DELETE FROM dynl2_epochs",
    "WITH d AS (DELETE FROM dynl2_epochs RETURNING *) SELECT * FROM d",
    "CREATE TABLE evil (a int)",
    "SELECT 1 INTO evil",
    "COPY dynl2_epochs TO PROGRAM 'touch {marker}'",
    "SELECT pg_read_file('/etc/passwd')",
    "SELECT 1; DELETE FROM dynl2_epochs",
]


@pytest.mark.parametrize("sql", SQLITE_UNSCANNED)
def test_sqlite_guard_holds_without_the_scanner(sqlite_populated: Populated, sql: str) -> None:
    path = storage.sqlite_path(sqlite_populated.url)
    assert path is not None
    _assert_refused(
        sqlite_populated, sql, lambda query: run_sqlite(path, query, max_rows=10, timeout_s=5)
    )


@pytest.mark.parametrize("sql", POSTGRES_UNSCANNED)
def test_postgres_guard_holds_without_the_scanner(postgres_populated: Populated, sql: str) -> None:
    url = postgres_populated.url
    _assert_refused(
        postgres_populated, sql, lambda query: run_postgres(url, query, max_rows=10, timeout_s=5)
    )


def test_good_select_returns_columns_and_rows(populated: Populated) -> None:
    result = storage.run_readonly(
        populated.url,
        "SELECT name, config FROM dynl2_experiments -- the only one\nORDER BY name",
    )
    assert result == storage.QueryResult(("name", "config"), (("exp", '{"k": 1}'),), False)


def test_select_joins_optuna_tables(populated: Populated) -> None:
    result = storage.run_readonly(
        populated.url,
        "SELECT s.study_name, t.number, count(*) AS n_epochs, min(e.train_loss) AS best "
        "FROM dynl2_epochs e JOIN trials t ON t.trial_id = e.trial_id "
        "JOIN studies s ON s.study_id = t.study_id "
        "WHERE s.study_name LIKE 'exp/%' AND ';' = ';' "
        "GROUP BY s.study_name, t.number ORDER BY t.number",
    )
    assert result.columns == ("study_name", "number", "n_epochs", "best")
    assert [tuple(row) for row in result.rows] == [
        ("exp/dynamic", n, EPOCHS, pytest.approx(1.0 / EPOCHS)) for n in range(TRIALS)
    ]
    assert not result.truncated


@pytest.mark.parametrize(("max_rows", "truncated"), [(1, True), (5, True), (6, False), (7, False)])
def test_max_rows_truncates(populated: Populated, max_rows: int, truncated: bool) -> None:
    total = TRIALS * EPOCHS
    result = storage.run_readonly(
        populated.url, "SELECT epoch FROM dynl2_epochs ORDER BY id", max_rows=max_rows
    )
    assert len(result.rows) == min(max_rows, total)
    assert result.truncated is truncated


def test_empty_result_still_has_columns(populated: Populated) -> None:
    result = storage.run_readonly(populated.url, "SELECT key, value FROM dynl2_meta WHERE 1 = 0")
    assert result == storage.QueryResult(("key", "value"), (), False)


def test_query_errors_are_reported(populated: Populated) -> None:
    with pytest.raises(storage.QueryError, match="no_such_table"):
        storage.run_readonly(populated.url, "SELECT * FROM no_such_table")


def test_backend_specific_reads(populated: Populated) -> None:
    if populated.backend == "sqlite":
        result = storage.run_readonly(populated.url, "PRAGMA table_info(dynl2_meta)")
        assert [row[1] for row in result.rows] == ["key", "value"]
    else:
        result = storage.run_readonly(populated.url, "SHOW statement_timeout", timeout_s=3)
        assert result.rows == (("3s",),)
        result = storage.run_readonly(populated.url, "SELECT current_user, session_user")
        assert result.rows == ((populated.reader, populated.reader),)  # logged in as the reader


SLOW = {
    "sqlite": "WITH RECURSIVE r(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM r) "
    "SELECT count(*) FROM r",
    "postgresql": "SELECT pg_sleep(5)",
}


def test_slow_query_is_stopped(populated: Populated) -> None:
    started = time.monotonic()
    with pytest.raises(storage.QueryTimeout, match=r"0\.5 s"):
        storage.run_readonly(populated.url, SLOW[populated.backend], timeout_s=0.5)
    assert time.monotonic() - started < 4.5  # bounded "finishes", not a timing claim


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({"max_rows": 0}, "max_rows"),
        ({"max_rows": True}, "max_rows"),
        ({"max_rows": MAX_ROWS + 1}, "max_rows"),
        ({"max_rows": 2**31 - 1}, "max_rows"),
        ({"timeout_s": 0}, "timeout_s"),
        ({"timeout_s": -1.0}, "timeout_s"),
        ({"timeout_s": float("nan")}, "timeout_s"),
        ({"timeout_s": 1e308}, "timeout_s"),
        ({"timeout_s": MAX_TIMEOUT_S + 1}, "timeout_s"),
        ({"timeout_s": True}, "timeout_s"),
    ],
)
def test_bad_limits_are_refused(sqlite_url: str, kwargs: dict[str, float], named: str) -> None:
    with pytest.raises(storage.QueryError, match=named):
        storage.run_readonly(sqlite_url, "SELECT 1", **kwargs)  # type: ignore[arg-type]


# ----------------------------------------------------------- the byte limit (issue 17)

MIB = 2**20
TEN_MIB = {"sqlite": "zeroblob(10485760)", "postgresql": "decode(repeat('00', 10485760), 'hex')"}
HUNDRED_ROWS = {
    "sqlite": "(WITH RECURSIVE r(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM r LIMIT 100) "
    "SELECT i FROM r)",
    "postgresql": "generate_series(1, 100)",
}


def test_a_result_stops_before_it_passes_the_byte_limit(populated: Populated) -> None:
    backend = populated.backend
    sql = f"SELECT {TEN_MIB[backend]} AS z FROM {HUNDRED_ROWS[backend]} AS h"
    result = storage.run_readonly(populated.url, sql, timeout_s=30)
    assert RESULT_BYTES == 64 * MIB
    assert len(result.rows) == 6 and result.truncated  # 7 rows would pass 64 MiB
    assert result.rows[0][0] == bytes(10 * MIB)


def test_a_row_larger_than_the_byte_limit_is_refused(populated: Populated) -> None:
    columns = ", ".join(f"{TEN_MIB[populated.backend]} AS c{i}" for i in range(7))
    with pytest.raises(storage.QueryError, match="64 MiB"):
        storage.run_readonly(populated.url, f"SELECT {columns}", timeout_s=30)


@pytest.mark.parametrize(
    "sql",
    [
        f"SELECT zeroblob({64 * MIB + 1})",
        "SELECT length(randomblob(999999999))",
        f"SELECT length(replace(hex(zeroblob({MIB})), '0', hex(zeroblob(100))))",
    ],
)
def test_sqlite_makes_no_value_larger_than_the_byte_limit(
    sqlite_populated: Populated, sql: str
) -> None:
    started = time.monotonic()
    with pytest.raises(storage.QueryError, match="larger than the 64 MiB"):
        storage.run_readonly(sqlite_populated.url, sql)
    assert time.monotonic() - started < 5  # refused at once, not after building 1 GB


def test_duplicate_column_names_are_kept_as_the_database_gave_them(populated: Populated) -> None:
    result = storage.run_readonly(populated.url, "SELECT 1 AS a, 2 AS a")
    assert result == storage.QueryResult(("a", "a"), ((1, 2),), False)


def test_sqlite_text_that_is_not_utf8_is_replaced(sqlite_populated: Populated) -> None:
    result = storage.run_readonly(sqlite_populated.url, "SELECT CAST(x'41ff' AS TEXT)")
    assert result.rows == (("A\ufffd",),)


def test_a_sqlite_call_that_ignores_interrupts_is_left_behind(
    sqlite_populated: Populated, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One call of a function never looks at SQLite's interrupt flag (SQLite 3.40's
    printf('%.*c', 1e9, 'x') runs ~20 s): the caller gets its QueryTimeout anyway."""
    connect = sqlite3.connect

    def with_a_slow_function(*args: object, **kwargs: object) -> sqlite3.Connection:
        connection = connect(*args, **kwargs)  # type: ignore[arg-type]
        connection.create_function("slow", 0, lambda: time.sleep(10) or 1)
        return connection

    monkeypatch.setattr(storage.readonly_sqlite.sqlite3, "connect", with_a_slow_function)
    started = time.monotonic()
    with pytest.raises(storage.QueryTimeout, match=r"0\.5 s"):
        storage.run_readonly(sqlite_populated.url, "SELECT slow()", timeout_s=0.5)
    assert time.monotonic() - started < 8  # not the 10 s of the call


def test_missing_sqlite_file_is_an_error_not_a_new_file(tmp_path: Path) -> None:
    path = tmp_path / "absent.db"
    with pytest.raises(storage.StorageUnavailable, match=r"absent\.db"):
        storage.run_readonly(f"sqlite:///{path}", "SELECT 1")
    assert not path.exists()


def test_mysql_is_refused_clearly() -> None:
    with pytest.raises(storage.StorageError, match="SQLite and PostgreSQL"):
        storage.run_readonly("mysql+pymysql://root@127.0.0.1/test", "SELECT 1")


def test_unreachable_postgres_is_storage_unavailable() -> None:
    with pytest.raises(storage.StorageUnavailable):
        storage.run_readonly("postgresql+psycopg://postgres@127.0.0.1:1/x", "SELECT 1")


# ---------------------------------------------------- PostgreSQL: the reader role (issue 16)


@pytest.fixture
def bare_postgres(tmp_path: Path, store_templates: StoreTemplates) -> Iterator[str]:
    """A PostgreSQL store (tables, no rows) whose reader role is not set up (yet)."""
    with store_templates.copy("postgresql", tmp_path) as url:
        try:
            yield url
        finally:
            drop_role(url, _reader_of(url))  # whatever the test set up


def _reader_of(url: str) -> str:
    database = make_url(url).database
    assert database is not None
    return reader_role_name(database)


def _as(url: str, user: str) -> str:
    return make_url(url).set(username=user, password=None).render_as_string(hide_password=False)


def test_superuser_without_the_reader_role_is_refused(bare_postgres: str) -> None:
    with pytest.raises(storage.ReaderLoginError) as info:
        storage.run_readonly(bare_postgres, "SELECT 1")
    message = str(info.value)
    assert "\n" not in message
    assert f"as {make_url(bare_postgres).username}, who is a superuser" in message
    assert f"`dynl2 sql-setup --storage '{bare_postgres}'`" in message
    assert "docs/store.md: Read-only queries on PostgreSQL" in message


def test_setup_is_idempotent_and_a_dry_run_changes_nothing(bare_postgres: str) -> None:
    role = _reader_of(bare_postgres)
    dry = storage.set_up_reader(bare_postgres, execute=False)
    assert not dry.executed and dry.role == role
    assert dry.statements[0] == f'CREATE ROLE "{role}" LOGIN'
    assert role_state(bare_postgres, role)[0] is None  # no role was made

    first = storage.set_up_reader(bare_postgres)
    assert first.statements == dry.statements
    assert first.password_set and make_url(first.reader_url).password
    state = role_state(bare_postgres, role)
    password = _password_hash(role)

    again = storage.set_up_reader(bare_postgres)
    assert again.statements == dry.statements[1:]  # all but CREATE ROLE
    assert not again.password_set and make_url(again.reader_url).password is None
    assert role_state(bare_postgres, role) == state
    assert _password_hash(role) == password  # kept, unless --new-password

    renewed = storage.set_up_reader(bare_postgres, new_password=True)
    assert renewed.password_set and _password_hash(role) != password
    assert storage.run_readonly(bare_postgres, "SELECT current_user").rows == ((role,),)


def _password_hash(role: str) -> object:
    with psycopg.connect(admin_url()) as connection:
        row = connection.execute(
            "SELECT rolpassword FROM pg_authid WHERE rolname = %s", [role]
        ).fetchone()
    assert row is not None
    return row[0]


def test_the_reader_role_may_only_read(postgres_populated: Populated) -> None:
    url, role = postgres_populated.url, postgres_populated.reader
    assert role is not None
    attributes, memberships, tables, _, _ = role_state(url, role)
    assert attributes is not None
    # rolsuper, rolinherit, rolcreaterole, rolcreatedb, rolcanlogin, rolreplication, bypassrls
    assert attributes[:7] == (False, False, False, False, True, False, False)
    assert sorted(attributes[7]) == [
        "default_transaction_read_only=on",
        "idle_in_transaction_session_timeout=60s",
        "statement_timeout=60s",
    ]
    assert memberships == ()
    assert {privilege for _, privilege in tables} == {"SELECT"}
    with psycopg.connect(libpq_url(url)) as connection:
        for function in (
            "pg_read_file(text)",
            "pg_ls_dir(text)",
            "lo_import(text)",
            "pg_stat_reset()",
        ):
            row = connection.execute(
                "SELECT has_function_privilege(%s, %s, 'EXECUTE')", [role, function]
            ).fetchone()
            assert row == (False,), function


def test_the_reader_reads_every_table_also_those_added_later(bare_postgres: str) -> None:
    with storage.open(bare_postgres) as store:
        store.create_experiment("exp", {"k": 1})
    storage.set_up_reader(bare_postgres)
    with psycopg.connect(libpq_url(bare_postgres), autocommit=True) as admin:
        admin.execute("CREATE TABLE dynl2_added_later (a integer)")  # as a migration would
        admin.execute("INSERT INTO dynl2_added_later VALUES (1), (2), (3)")
        tables = [
            row[0]
            for row in admin.execute(
                "SELECT table_name FROM information_schema.tables "
                "WHERE table_schema = 'public' ORDER BY 1"
            )
        ]
        counts = {t: admin.execute(f'SELECT count(*) FROM "{t}"').fetchone() for t in tables}
    optuna_and_ours = {"studies", "trials", "trial_values", "dynl2_experiments", "dynl2_epochs"}
    assert optuna_and_ours <= set(tables)
    assert counts["dynl2_added_later"] == (3,)
    for table in tables:
        result = storage.run_readonly(bare_postgres, f'SELECT count(*) FROM "{table}"')
        assert result.rows == (counts[table],), table


@pytest.mark.parametrize(
    ("grant", "named"),
    [
        ("GRANT pg_signal_backend TO {}", "is a member of pg_signal_backend"),
        ("GRANT pg_read_server_files TO {}", "is a member of pg_read_server_files"),
        ("GRANT {super} TO {}", "a superuser"),
        ("GRANT INSERT ON dynl2_meta TO {}", "may change tables of the store (dynl2_meta)"),
        ("ALTER ROLE {} CREATEROLE", "may create and change roles"),
    ],
)
def test_a_reader_given_more_rights_is_refused_until_set_up_again(
    bare_postgres: str, grant: str, named: str
) -> None:
    role = storage.set_up_reader(bare_postgres).role
    with psycopg.connect(libpq_url(bare_postgres), autocommit=True) as admin:
        superuser = make_url(bare_postgres).username
        admin.execute(grant.format(f'"{role}"', super=f'"{superuser}"'))
    with pytest.raises(storage.ReaderLoginError, match=re.escape(named)) as info:
        storage.run_readonly(bare_postgres, "SELECT 1")
    assert "dynl2 sql-setup --storage" in str(info.value)
    storage.set_up_reader(bare_postgres)  # puts the role back as it was
    assert storage.run_readonly(bare_postgres, "SELECT current_user").rows == ((role,),)


def test_plain_logins_that_can_only_read_are_used_as_they_are(bare_postgres: str) -> None:
    """A login that may only SELECT keeps working without setup. One that may write is the
    workers' (whose sessions it could end): it is refused, then swapped for the reader role."""
    suffix = uuid.uuid4().hex[:8]
    # TEST_ROLE_PREFIX: a store fingerprint (tests/reliability/helpers.py) ignores them
    plain, writer = f"dynl2_test_plain_{suffix}", f"dynl2_test_writer_{suffix}"
    try:
        with psycopg.connect(libpq_url(bare_postgres), autocommit=True) as admin:
            admin.execute(f'CREATE ROLE "{plain}" LOGIN')
            admin.execute(f'GRANT SELECT ON ALL TABLES IN SCHEMA public TO "{plain}"')
            admin.execute(f'CREATE ROLE "{writer}" LOGIN')
            admin.execute(f'GRANT SELECT, INSERT ON ALL TABLES IN SCHEMA public TO "{writer}"')
        query = "SELECT current_user, session_user"
        result = storage.run_readonly(_as(bare_postgres, plain), query)
        assert result.rows == ((plain, plain),)
        with pytest.raises(storage.ReaderLoginError, match=f"as {writer}, who owns or may"):
            storage.run_readonly(_as(bare_postgres, writer), query)
        role = storage.set_up_reader(bare_postgres).role
        assert storage.run_readonly(_as(bare_postgres, writer), query).rows == ((role, role),)
    finally:
        drop_role(bare_postgres, plain)
        drop_role(bare_postgres, writer)


def test_the_reader_login_can_be_given(
    bare_postgres: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    setup = storage.set_up_reader(bare_postgres)
    query = "SELECT session_user"
    expected = ((setup.role,),)
    given = storage.run_readonly(bare_postgres, query, reader_url=setup.reader_url)
    assert given.rows == expected
    monkeypatch.setenv(storage.READER_URL_ENV, setup.reader_url)
    assert storage.run_readonly(bare_postgres, query).rows == expected
    monkeypatch.setenv(storage.READER_URL_ENV, bare_postgres)  # a superuser's: checked too
    with pytest.raises(storage.ReaderLoginError, match="is a superuser"):
        storage.run_readonly(bare_postgres, query)
    elsewhere = make_url(setup.reader_url).set(database="postgres")
    with pytest.raises(storage.ReaderLoginError, match="names the database 'postgres'"):
        storage.run_readonly(
            bare_postgres, query, reader_url=elsewhere.render_as_string(hide_password=False)
        )


def test_a_reader_url_is_only_for_postgres(sqlite_url: str) -> None:
    with pytest.raises(storage.StorageURLError, match="PostgreSQL"):
        storage.run_readonly(sqlite_url, "SELECT 1", reader_url="postgresql://r@127.0.0.1/db")


@pytest.mark.parametrize("lock", ["pg_advisory_lock", "pg_advisory_xact_lock"])
def test_an_advisory_lock_dies_with_the_query(postgres_populated: Populated, lock: str) -> None:
    """Anyone may take an advisory lock, the reader too. The scanner refuses the name; past
    it (here), the lock lasts only as long as the query's session, which ends with it."""
    url = postgres_populated.url
    result = run_postgres(url, f"SELECT {lock}({ADVISORY_KEY})", max_rows=10, timeout_s=5)
    assert len(result.rows) == 1
    assert outside_state(url)[1] == ()


def test_a_reader_that_cannot_log_in_is_refused_in_one_line(bare_postgres: str) -> None:
    role = storage.set_up_reader(bare_postgres).role
    with psycopg.connect(libpq_url(bare_postgres), autocommit=True) as admin:
        admin.execute(f'ALTER ROLE "{role}" NOLOGIN')
    with pytest.raises(storage.ReaderLoginError) as info:
        storage.run_readonly(bare_postgres, "SELECT 1")
    assert f"cannot log in as the read-only role {role} (" in str(info.value)
    assert "$DYNL2_SQL_URL" in str(info.value) and "\n" not in str(info.value)
    storage.set_up_reader(bare_postgres)  # LOGIN again
    assert storage.run_readonly(bare_postgres, "SELECT 1").rows == ((1,),)


@pytest.mark.parametrize(
    ("role", "named"),
    [
        ("pg_reader", "must be a name"),
        ("1reader", "must be a name"),
        ("reader; DROP TABLE trials", "must be a name"),
        ("x" * 64, "must be a name"),
        ("{admin}", "is the login running dynl2 sql-setup"),
    ],
)
def test_setup_refuses_a_role_it_must_not_take_over(
    bare_postgres: str, role: str, named: str
) -> None:
    admin = make_url(bare_postgres).username
    with pytest.raises(storage.ReaderLoginError, match=named):
        storage.set_up_reader(bare_postgres, role=role.format(admin=admin))


def test_setup_is_for_postgres(sqlite_url: str) -> None:
    with pytest.raises(storage.StorageURLError, match="PostgreSQL stores"):
        storage.set_up_reader(sqlite_url)
