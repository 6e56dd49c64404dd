"""The read-only door (`dynl2 sql`): bad queries are refused and change nothing, on every
backend; reads return columns, rows and a truncation flag; slow queries are stopped."""

from __future__ import annotations

import hashlib
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

import storage
from storage.readonly import _run_postgres, _run_sqlite
from tests.storage.backends import BACKENDS, StoreTemplates, libpq_url

TABLES = ("dynl2_meta", "dynl2_experiments", "dynl2_epochs", "dynl2_evaluations", "trials")
EPOCHS = 3
TRIALS = 2


@dataclass(frozen=True)
class Populated:
    backend: str
    url: str
    directory: Path  # where a refused query must not have created files


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
    return tuple(tables), tuple(counts), epochs


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
        yield Populated(backend, url, directory)


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
]


def _marker() -> Path:
    # COPY ... TO PROGRAM runs on the database server as its own user: /tmp is writable there.
    return Path("/tmp") / f"dynl2-copy-marker-{uuid.uuid4().hex}"


def _assert_refused(db: Populated, sql: str, run: Callable[[str], object]) -> None:
    marker = _marker()
    query = sql.format(dir=db.directory, marker=marker)
    before = _state(db)
    with pytest.raises(storage.ReadOnlyViolation, match="read-only"):
        run(query)
    assert _state(db) == before
    assert not marker.exists()


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
        sqlite_populated, sql, lambda query: _run_sqlite(path, query, max_rows=10, timeout_s=5)
    )


@pytest.mark.parametrize("sql", POSTGRES_UNSCANNED)
def test_postgres_guard_holds_without_the_scanner(postgres_populated: Populated, sql: str) -> None:
    url = postgres_populated.url
    _assert_refused(
        postgres_populated, sql, lambda query: _run_postgres(url, query, max_rows=10, timeout_s=5)
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
        result = storage.run_readonly(populated.url, "SELECT current_user")
        assert result.rows == (("pg_read_all_data",),)  # superuser powers dropped


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
        ({"timeout_s": 0}, "timeout_s"),
        ({"timeout_s": -1.0}, "timeout_s"),
    ],
)
def test_bad_limits_are_refused(sqlite_url: str, kwargs: dict[str, float], named: str) -> None:
    with pytest.raises(storage.QueryError, match=named):
        storage.run_readonly(sqlite_url, "SELECT 1", **kwargs)  # type: ignore[arg-type]


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
