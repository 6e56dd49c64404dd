"""Issue 6, item 6: attempts to write, leak or hang through ``dynl2 sql`` (the CLI, in this
process), on SQLite and on PostgreSQL: statement stacking, comments, writing CTEs, ATTACH,
PRAGMA, VACUUM INTO, load_extension, COPY ... TO PROGRAM, server file functions, and queries
that would run forever. Every one is refused (exit 2, one line) or cut off by the time limit
(exit 1, one line), and the data is byte for byte what it was: the SQLite file's hash and
folder listing, or a dump of every PostgreSQL table, the roles and the functions.

Issue 16: on PostgreSQL, SQL that a function runs from a string (``ts_stat``, ``query_to_xml``,
xml2's ``xpath_table``, ``dblink``) is never seen by the statement scanner, and from a
superuser's session it could switch back to the superuser (``set_config('role', ...)``) and then
read server files, list directories, reset statistics or end another client's session. Queries
now run logged in as the reader role ``dynl2 sql-setup`` creates; these attempts must change
nothing outside the result either: statistics not reset, another client's session (as
superuser, in another database) alive, no advisory lock left, no file's text printed."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import optuna
import psycopg
import pytest
from sqlalchemy.engine import make_url

import storage
from tests.storage.backends import libpq_url, require_postgres, scratch_postgres_database
from tests.storage.readers import (
    ADVISORY_KEY,
    admin_url,
    alive,
    bystander,
    drop_role,
    outside_state,
    reader_role,
)

from .helpers import run_cli, store_fingerprint

pytestmark = pytest.mark.reliability

COMMON = [
    "SELECT 1; DELETE FROM dynl2_epochs",
    "SELECT 1;DROP TABLE trials --",
    "SELECT 1 /* ; */; DELETE FROM trials",
    "SELECT ';' AS x; UPDATE dynl2_epochs SET epoch = 0",
    "select 1 union select 2; delete from trials",
    "/* hello */ DELETE FROM dynl2_epochs",
    "-- a comment\nUPDATE dynl2_epochs SET train_loss = 0",
    "WITH x AS (SELECT 1) DELETE FROM dynl2_evaluations",
    "WITH x AS (SELECT 1) INSERT INTO dynl2_meta (key, value) VALUES ('a', 'b')",
    "INSERT INTO dynl2_meta (key, value) SELECT 'a', 'b'",
    "CREATE TABLE evil AS SELECT 1 AS a",
    "DROP TABLE dynl2_epochs",
    "BEGIN; DELETE FROM trials; COMMIT",
    "EXPLAIN ANALYZE DELETE FROM dynl2_epochs",
    "ALTER TABLE trials RENAME TO gone",
]
SQLITE = [
    "ATTACH DATABASE '{dir}/evil.db' AS evil",
    "SELECT 1; ATTACH 'file:{dir}/evil2.db?mode=rwc' AS evil",
    "PRAGMA writable_schema = 1",
    "PRAGMA query_only = 0",
    "PRAGMA journal_mode = DELETE",
    "PRAGMA user_version = 7",
    "VACUUM INTO '{dir}/copy.db'",
    "VACUUM",
    "SELECT load_extension('{dir}/evil.so')",
    "SELECT writefile('{dir}/evil.txt', 'x')",
    "REPLACE INTO dynl2_meta VALUES ('schema_version', '999')",
    "SELECT * FROM pragma_table_info('trials'); PRAGMA user_version = 3",
    "DETACH DATABASE main",
    "REINDEX",
]
POSTGRES = [
    "WITH d AS (DELETE FROM dynl2_epochs RETURNING *) SELECT count(*) FROM d",
    "WITH u AS (UPDATE trials SET number = number RETURNING 1) SELECT * FROM u",
    "COPY dynl2_epochs TO PROGRAM 'touch {marker}'",
    "COPY (SELECT 1) TO '{marker}'",
    "SELECT pg_read_file('/etc/passwd')",
    "SELECT pg_read_binary_file('/etc/passwd')",
    "SELECT \"pg_read_file\"('/etc/passwd')",
    "SELECT U&\"pg_read_file\"('/etc/passwd')",
    "SELECT * FROM pg_ls_dir('.')",
    "SELECT lo_import('/etc/passwd')",
    "SELECT set_config('default_transaction_read_only', 'off', false)",
    "SET SESSION CHARACTERISTICS AS TRANSACTION READ WRITE",
    "SELECT 1; COMMIT; DELETE FROM dynl2_epochs",
    "DO $$ BEGIN DELETE FROM dynl2_epochs; END $$",
    "SELECT * INTO evil FROM trials",
    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity",
    "SELECT * FROM trials FOR UPDATE",
    "PREPARE p AS DELETE FROM trials",
    "SELECT query_to_xml('DELETE FROM trials', true, true, '')",
    "SELECT nextval('trials_trial_id_seq')",
    "CREATE EXTENSION dblink",
    "NOTIFY evil, 'x'",
]

# Issue 16. `{victim}` is the pid of another client's session (superuser, another database),
# `{server}` a libpq connection string of the superuser. Each first runs a query the scanner
# cannot see that switches back to the superuser, as it could before the fix, then uses it.
SWITCH = "set_config('role', 'postgres', true)"
READ_PASSWD = "pg_read_file('/etc/passwd')"


def _switch_then(payload: str) -> str:
    """Two ts_stat calls: the first switches role, the second (planned after it) uses it."""
    return (
        f"SELECT (SELECT count(*) FROM ts_stat($a$SELECT to_tsvector('simple', {SWITCH})$a$)) "
        "AS switched, (SELECT string_agg(word, ' ') FROM ts_stat("
        f"$b$SELECT to_tsvector('simple', ({payload})::text)$b$)) AS got"
    )


def _xpath_table(document: str) -> str:
    """xml2's xpath_table runs `SELECT k, d FROM <relation> WHERE <criteria>` from its text."""
    relation = f"(SELECT 1 AS k, '<a>' || {document} || '</a>' AS d) s".replace("'", "''")
    return f"xpath_table('k', 'd', '{relation}', '/a', 'true') AS t(k int, a text)"


POSTGRES_HIDDEN = [
    f"SELECT * FROM ts_stat($$SELECT to_tsvector('simple', {SWITCH})$$)",
    _switch_then(READ_PASSWD),
    _switch_then("pg_read_binary_file('/etc/passwd')"),
    _switch_then("SELECT string_agg(f, ' ') FROM pg_ls_dir('/') f"),
    _switch_then("pg_stat_reset()"),
    _switch_then("pg_terminate_backend({victim})"),
    _switch_then("lo_import('/etc/passwd')"),
    _switch_then("query_to_xml('SELECT pg_read_file(''/etc/passwd'') AS f', true, false, '')"),
    _switch_then(f"pg_advisory_lock({ADVISORY_KEY})"),
    _switch_then("set_config('transaction_read_only', 'off', true)"),
    f"SELECT (SELECT count(*) FROM {_xpath_table(SWITCH)}) AS switched, "
    f"(SELECT string_agg(a, ' ') FROM {_xpath_table(READ_PASSWD)}) AS got",
    "SELECT * FROM ts_stat($$SELECT to_tsvector('simple', v) FROM dblink('{server}', "
    "'SELECT pg_read_file(''/etc/passwd'')') AS t(v text)$$)",
    "SELECT * FROM ts_stat($$SELECT to_tsvector('simple', v::text) FROM dblink('{server}', "
    "'SELECT pg_terminate_backend({victim})') AS t(v boolean)$$)",
    "SELECT * FROM ts_stat($$WITH d AS (DELETE FROM dynl2_epochs RETURNING 1) "
    "SELECT to_tsvector('simple', 'x') FROM d$$)",
    # The same names written plainly: the scanner refuses them before the server sees them.
    "SET ROLE postgres",
    "SET LOCAL ROLE postgres",
    "RESET ROLE",
    "SET SESSION AUTHORIZATION postgres",
    "SELECT set_config('role', 'postgres', false)",
    "SELECT pg_stat_reset()",
    "SELECT pg_terminate_backend({victim})",
    f"SELECT pg_advisory_lock({ADVISORY_KEY})",
    f"SELECT pg_try_advisory_lock({ADVISORY_KEY})",
    "COPY (SELECT 1) TO PROGRAM 'touch {marker}'",
    "SELECT * FROM dblink('{server}', 'SELECT pg_stat_reset()') AS t(v text)",
]
FOREVER = {
    "sqlite": [
        "WITH RECURSIVE r(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM r) SELECT count(*) FROM r",
        "SELECT count(*) FROM trials a, trials b, trials c, trials d, trials e, trials f, "
        "(WITH RECURSIVE r(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM r LIMIT 100000000) "
        "SELECT i FROM r)",
    ],
    "postgresql": [
        "SELECT pg_sleep(3600)",
        "WITH RECURSIVE r(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM r) SELECT count(*) FROM r",
        # Issue 16: the time limit holds when the query switches it off first.
        "SELECT * FROM ts_stat($$SELECT to_tsvector('simple', "
        "set_config('statement_timeout', '0', false) || pg_sleep(3600)::text)$$)",
    ],
}


def _populate(url: str) -> None:
    """An experiment with two trials, their epochs and an evaluation."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with storage.open(url) as store:
        store.create_experiment("exp", {"k": 1})
        study = optuna.create_study(storage=store.optuna_storage(), study_name="exp/fixed")
        for value in (0.5, 0.7):
            trial = study.ask()
            store.record_epochs(trial._trial_id, [{"epoch": e, "val_acc": value} for e in (1, 2)])
            study.tell(trial, value)
        store.record_evaluation("exp", "fixed", 0, {"lr": 0.01}, test_loss=0.3, test_acc=0.9)


@pytest.fixture(scope="module")
def sqlite_db(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    folder = tmp_path_factory.mktemp("sql-escape")
    url = f"sqlite:///{folder / 'store.db'}"
    _populate(url)  # closed afterwards: the WAL is checkpointed into the file we hash
    return url, folder


EXTENSIONS = ("dblink", "xml2")  # contrib modules whose functions run SQL text


@pytest.fixture(scope="module")
def postgres_db(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    with scratch_postgres_database(require_postgres()) as url:
        _populate(url)
        with psycopg.connect(libpq_url(url), autocommit=True) as admin:
            available = {
                row[0]
                for row in admin.execute(
                    "SELECT name FROM pg_available_extensions WHERE name = ANY(%s)",
                    [list(EXTENSIONS)],
                )
            }
            for extension in sorted(available):
                admin.execute(f"CREATE EXTENSION {extension}")  # as an admin might have
        with reader_role(url):  # dynl2 sql-setup, once; the role is dropped afterwards
            yield url, tmp_path_factory.mktemp("sql-escape-pg")


def _needs_extensions(url: str, sql: str) -> None:
    with psycopg.connect(libpq_url(url)) as connection:
        installed = {row[0] for row in connection.execute("SELECT extname FROM pg_extension")}
    for extension, function in (("dblink", "dblink("), ("xml2", "xpath_table(")):
        if function in sql and extension not in installed:
            pytest.skip(f"the server lacks the contrib extension {extension}")


def _attempt(db: tuple[str, Path], sql: str, capsys, timeout: float = 5.0) -> tuple[int, str]:
    url, folder = db
    marker = Path("/tmp") / f"dynl2-escape-{uuid.uuid4().hex}"  # where the server could write
    with _victim(url) as victim:
        server = _libpq_keywords(admin_url("postgres"))
        query = sql.format(dir=folder, marker=marker, victim=victim, server=server)
        before = store_fingerprint(url), _outside(url)
        argv = ["sql", query, "--timeout", str(timeout), "--storage", url]
        code, out, err = run_cli(argv, capsys)
        lines = err.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in err, (code, out[:500], err)
        assert out == ""  # nothing was read either
        assert (store_fingerprint(url), _outside(url)) == before
        assert not marker.exists()
        assert "root:" not in err and "/bin/" not in err  # no line of /etc/passwd
    return code, lines[0]


@contextmanager
def _victim(url: str) -> Iterator[int | None]:
    """PostgreSQL: another client's session (its pid) that must still answer afterwards."""
    if storage.sqlite_path(url) is not None:
        yield None
        return
    with bystander() as connection:
        yield connection.info.backend_pid
        assert alive(connection), "dynl2 sql ended another client's session"


def _outside(url: str) -> object:
    return None if storage.sqlite_path(url) is not None else outside_state(url)


def _libpq_keywords(url: str) -> str:
    """A URL as libpq keywords (dblink's connection string); single quotes never occur."""
    parsed = make_url(url)
    pairs = {"host": parsed.host, "port": parsed.port, "user": parsed.username}
    pairs |= {"password": parsed.password, "dbname": parsed.database}
    return " ".join(f"{k}={v}" for k, v in pairs.items() if v is not None)


@pytest.mark.parametrize("sql", COMMON + SQLITE)
def test_sqlite_escape_is_refused(sqlite_db, sql, capsys):
    code, line = _attempt(sqlite_db, sql, capsys)
    assert code == 2, line
    assert line.startswith("dynl2 sql: error:")


@pytest.mark.parametrize("sql", COMMON + POSTGRES)
def test_postgres_escape_is_refused(postgres_db, sql, capsys):
    code, line = _attempt(postgres_db, sql, capsys)
    assert code == 2, line
    assert line.startswith("dynl2 sql: error:")


@pytest.mark.parametrize("sql", POSTGRES_HIDDEN)
def test_postgres_escape_through_sql_text_is_refused(postgres_db, sql, capsys):
    """Issue 16: before the fix each of these printed rows (a file, a listing) or changed
    something outside (statistics reset, another session ended) and exited 0."""
    _needs_extensions(postgres_db[0], sql)
    code, line = _attempt(postgres_db, sql, capsys)
    assert code == 2, line
    assert line.startswith("dynl2 sql: error:")


def test_postgres_a_hidden_advisory_lock_dies_with_the_query(postgres_db, capsys):
    """Anyone may take an advisory lock, the reader role too, and the scanner cannot see
    one inside SQL text: it then lasts only as long as the query's session."""
    url = postgres_db[0]
    query = (
        "SELECT * FROM ts_stat($$SELECT to_tsvector('simple', "
        f"pg_advisory_lock({ADVISORY_KEY})::text)$$)"
    )
    code, out, err = run_cli(["sql", query, "--format", "csv", "--storage", url], capsys)
    assert (code, err) == (0, "")
    assert out.splitlines() == ["word,ndoc,nentry"] or out.strip() == ""
    assert outside_state(url)[1] == ()  # nobody holds the lock


def test_postgres_superuser_without_the_reader_role_is_refused(capsys):
    with scratch_postgres_database(require_postgres()) as url:
        _populate(url)
        before = store_fingerprint(url)
        code, out, err = run_cli(["sql", "SELECT count(*) FROM trials", "--storage", url], capsys)
        assert store_fingerprint(url) == before
    assert (code, out) == (2, "")
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith("dynl2 sql: error: connected to PostgreSQL as ")
    assert ", who is a superuser; " in err
    assert f"create it once with `dynl2 sql-setup --storage '{url}'`" in err
    assert "(see docs/store.md: Read-only queries on PostgreSQL)" in err


def test_postgres_sql_setup_prints_its_sql_and_can_run_twice(capsys):
    with scratch_postgres_database(require_postgres()) as url:
        _populate(url)
        database = make_url(url).database
        assert database is not None
        role = storage.pg_reader.reader_role_name(database)
        try:
            code, printed, err = run_cli(["sql-setup", "--print", "--storage", url], capsys)
            assert (code, err) == (0, "")
            assert f'CREATE ROLE "{role}" LOGIN;' in printed.splitlines()
            assert "nothing was run" in printed
            assert _role_exists(role) is False
            code, first, err = run_cli(["sql-setup", "--storage", url], capsys)
            assert (code, err) == (0, "")
            sql_lines = [line for line in printed.splitlines() if not line.startswith("--")]
            assert [line for line in first.splitlines() if not line.startswith("--")][
                : len(sql_lines)
            ] == sql_lines  # what ran is what --print showed
            assert first.splitlines()[-1].startswith(f"postgresql+psycopg://{role}:")
            code, second, err = run_cli(["sql-setup", "--storage", url], capsys)
            assert (code, err) == (0, "")
            assert "CREATE ROLE" not in second and "PASSWORD" not in second
            query = "SELECT (SELECT count(*) FROM trials) AS t, count(*) AS e FROM "
            query += "dynl2_experiments"  # an Optuna table and one of ours, as the reader
            code, out, err = run_cli(["sql", query, "--format", "csv", "--storage", url], capsys)
            assert (code, out, err) == (0, "t,e\n2,1\n", "")
        finally:
            drop_role(url, role)


def _role_exists(role: str) -> bool:
    with psycopg.connect(admin_url()) as connection:
        found = connection.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [role])
        return found.fetchone() is not None


@pytest.mark.parametrize(
    ("backend", "index"), [("sqlite", 0), ("sqlite", 1), ("postgresql", 0), ("postgresql", 1),
                           ("postgresql", 2)],
)  # fmt: skip
def test_a_query_that_runs_forever_is_cut_off(backend, index, request, capsys):
    db = request.getfixturevalue("sqlite_db" if backend == "sqlite" else "postgres_db")
    started = time.monotonic()
    code, line = _attempt(db, FOREVER[backend][index], capsys, timeout=0.5)
    assert code == 1, line
    assert "time limit" in line
    assert time.monotonic() - started < 30  # bounded; not a timing claim


def test_a_plain_read_still_works(sqlite_db, postgres_db, capsys):
    """The door is not simply shut: the same CLI answers a read on both backends."""
    for db in (sqlite_db, postgres_db):
        query = "SELECT count(*) AS n FROM dynl2_epochs"
        code, out, err = run_cli(["sql", query, "--format", "csv", "--storage", db[0]], capsys)
        assert (code, out, err) == (0, "n\n4\n", "")
