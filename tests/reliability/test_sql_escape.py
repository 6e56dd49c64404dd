"""Issue 6, item 6: attempts to write, leak or hang through ``dynl2 sql`` (the CLI, in this
process), on SQLite and on PostgreSQL: statement stacking, comments, writing CTEs, ATTACH,
PRAGMA, VACUUM INTO, load_extension, COPY ... TO PROGRAM, server file functions, and queries
that would run forever. Every one is refused (exit 2, one line) or cut off by the time limit
(exit 1, one line), and the data is byte for byte what it was: the SQLite file's hash and
folder listing, or a dump of every PostgreSQL table, the roles and the functions."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest

import storage
from tests.storage.backends import require_postgres, scratch_postgres_database

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


@pytest.fixture(scope="module")
def postgres_db(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    with scratch_postgres_database(require_postgres()) as url:
        _populate(url)
        yield url, tmp_path_factory.mktemp("sql-escape-pg")


def _attempt(db: tuple[str, Path], sql: str, capsys, timeout: float = 5.0) -> tuple[int, str]:
    url, folder = db
    marker = Path("/tmp") / f"dynl2-escape-{uuid.uuid4().hex}"  # where the server could write
    query = sql.format(dir=folder, marker=marker)
    before = store_fingerprint(url)
    code, out, err = run_cli(["sql", query, "--timeout", str(timeout), "--storage", url], capsys)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert out == ""  # nothing was read either
    assert store_fingerprint(url) == before
    assert not marker.exists()
    return code, lines[0]


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


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
@pytest.mark.parametrize("index", [0, 1])
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
