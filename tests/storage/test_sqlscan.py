"""The rough scanner in front of the read-only door: statements, keywords, hidden names."""

from __future__ import annotations

import pytest

import storage
from storage.sqlscan import Dialect, check_readonly_sql, scan


@pytest.mark.parametrize(
    ("sql", "statements"),
    [
        ("SELECT 1", 1),
        ("SELECT 1;", 1),
        ("SELECT 1; ; -- trailing", 1),
        ("SELECT ';'", 1),
        ("SELECT 1 /* ; */", 1),
        ("SELECT 1 -- ;\n", 1),
        ('SELECT ";" FROM t', 1),
        ("SELECT 1; SELECT 2", 2),
        ("", 0),
        ("-- nothing\n/* at all */", 0),
    ],
)
def test_statement_count(sql: str, statements: int) -> None:
    assert scan(sql, "sqlite").statements == statements
    assert scan(sql, "postgresql").statements == statements


def test_strings_and_comments_hide_their_words() -> None:
    scanned = scan("SELECT 'DELETE' AS x /* DROP */ FROM t -- INSERT", "sqlite")
    assert scanned.words == ("SELECT", "AS", "X", "FROM", "T")


def test_quoted_identifiers_are_names_not_words() -> None:
    scanned = scan('SELECT "Delete", [update], `insert` FROM t', "sqlite")
    assert "DELETE" not in scanned.words and "UPDATE" not in scanned.words
    assert {"delete", "update", "insert"} <= set(scanned.names)


@pytest.mark.parametrize(
    ("sql", "words"),
    [
        # E-strings take backslash escapes: the string ends at the last quote.
        ("SELECT E'\\' DROP' , 1", ("SELECT",)),
        # Dollar quotes, tagged and not.
        ("SELECT $$ ; DELETE $$, $x$ DROP $x$", ("SELECT",)),
        # PostgreSQL nests block comments.
        ("SELECT /* a /* b */ DELETE */ 1", ("SELECT",)),
        # Positional parameters are not dollar quotes.
        ("SELECT $1 FROM t", ("SELECT", "FROM", "T")),
    ],
)
def test_postgres_quoting(sql: str, words: tuple[str, ...]) -> None:
    assert scan(sql, "postgresql").words == words


def test_sqlite_block_comments_do_not_nest() -> None:
    # In SQLite the first */ ends the comment, so DELETE is live code here.
    assert "DELETE" in scan("SELECT /* a /* b */ DELETE */ 1", "sqlite").words


@pytest.mark.parametrize(
    ("sql", "dialect"),
    [
        ("SELECT * FROM dynl2_epochs WHERE val_loss < 0.5", "sqlite"),
        ("WITH best AS (SELECT 1 AS x) SELECT x FROM best", "sqlite"),
        ("EXPLAIN QUERY PLAN SELECT 1", "sqlite"),
        ("VALUES (1), (2)", "sqlite"),
        ("PRAGMA table_info(dynl2_epochs)", "sqlite"),
        ("(SELECT 1) UNION (SELECT 2)", "sqlite"),
        ("SELECT replace(name, 'a', 'b') FROM studies", "sqlite"),
        ("SELECT 'drop table x; delete' AS note", "postgresql"),
        ("SHOW statement_timeout", "postgresql"),
        ("TABLE studies", "postgresql"),
        ("SELECT created, updated_at FROM t", "postgresql"),
    ],
)
def test_read_queries_pass(sql: str, dialect: Dialect) -> None:
    check_readonly_sql(sql, dialect)


@pytest.mark.parametrize(
    ("sql", "dialect", "named"),
    [
        ("DELETE FROM t", "sqlite", "DELETE"),
        ("  /* hi */ drop table t", "sqlite", "DROP"),
        ("SELECT 1; DELETE FROM t", "sqlite", "one statement"),
        ("WITH d AS (SELECT 1) INSERT INTO t SELECT * FROM d", "sqlite", "INSERT"),
        ("BEGIN", "sqlite", "BEGIN"),
        ("REINDEX", "sqlite", "REINDEX"),
        ("ANALYZE", "sqlite", "ANALYZE"),
        ("SELECT pg_read_file('/etc/passwd')", "postgresql", "pg_read_file"),
        ("SELECT pg_catalog.pg_ls_dir('.')", "postgresql", "pg_ls_dir"),
        ("SELECT \"lo_export\"(1, '/tmp/x')", "postgresql", "lo_export"),
        ("SELECT set_config('role', 'postgres', true)", "postgresql", "set_config"),
        ("SELECT query_to_xml('delete from t', true, true, '')", "postgresql", "query_to_xml"),
        ("SELECT * FROM dblink('x', 'y') AS t(a int)", "postgresql", "dblink"),
        ("SELECT U&\"\\0070g_read_file\"('x')", "postgresql", "Unicode"),
        ("COPY t TO STDOUT", "postgresql", "COPY"),
        ("SELECT 1 INTO new_table", "postgresql", "INTO"),
        ("SET ROLE postgres", "postgresql", "SET"),
        ("DO $$ BEGIN END $$", "postgresql", "DO"),
        ("SELECT E'\\'' ; DROP TABLE t", "postgresql", "one statement"),
    ],
)
def test_non_queries_are_refused_with_a_reason(sql: str, dialect: Dialect, named: str) -> None:
    with pytest.raises(storage.ReadOnlyViolation, match="read-only") as info:
        check_readonly_sql(sql, dialect)
    assert named in str(info.value)


def test_empty_sql_is_a_query_error() -> None:
    with pytest.raises(storage.QueryError, match="empty"):
        check_readonly_sql(" -- nothing ", "sqlite")
