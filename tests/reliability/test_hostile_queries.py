"""Issue 17: hostile queries and damaged rows through the verbs that read the store.

``dynl2 sql`` with duplicate column names, blobs that are not UTF-8, values and results too
large to hold, queries that run forever, and limits given as nonsense; ``dynl2 trials`` and
``dynl2 status`` on experiments without trials or evaluations; storage URLs that cannot name a
database; rows of the store that dynl2 cannot decode. Each case, on SQLite and on PostgreSQL
where a store is involved, asserts the exit status (0 for an answer, 2 for a user's mistake, 1
for the environment or a damaged store), at most one line on stderr and no traceback, no
password in any output, a call that returns in bounded time, and the store byte for byte as
before (the SQLite file and its folder, or a dump of every PostgreSQL table).

The cases that could take gigabytes run in a child process whose address space is capped at
2 GiB (``RLIMIT_AS``): a regression fails there instead of eating the machine. One child per
backend runs them one after the other, so the child's start (it imports torch, as ``dynl2``
does) is paid twice, not once a case.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import resource
import shutil
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import psycopg
import pytest
from sqlalchemy.engine import make_url

import storage
from study.search.keys import Heartbeat
from tests.storage.backends import (
    BACKENDS,
    libpq_url,
    require_postgres,
    scratch_postgres_database,
)
from tests.storage.readers import reader_role

from .helpers import ROOT, create_experiment, run_cli, store_fingerprint, write_config

pytestmark = pytest.mark.reliability

SECRET = "hunter2-in-the-url"  # the store URL's password (PostgreSQL's trust login ignores it)
BOUND_S = 15.0  # a bounded call returns within this (its queries run with --timeout 2)
MEMORY_CAP = 2 << 30  # the heavy cases' address space
RESULT_CAP = "64 MiB"  # what dynl2 sql allows a value and a whole result (docs/store.md)
EXPERIMENTS = ("exp", "noevals", "empty")  # trials and an evaluation; trials only; nothing


@dataclass(frozen=True)
class Db:
    backend: str
    url: str  # what the CLI is given: on PostgreSQL it carries SECRET
    folder: Path


def _populate(url: str, folder: Path) -> None:
    """``exp``: two trials of the arm ``fixed`` and an evaluation of its best; ``noevals``: the
    same trials, no evaluation; ``empty``: no trial at all. Every store is closed afterwards
    (SQLite: the WAL is checkpointed into the file the tests hash)."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    for name in EXPERIMENTS:
        create_experiment(url, write_config(folder, name, epochs=2, n_trials=2), Heartbeat())
    with storage.open(url) as store:
        for name in ("exp", "noevals"):
            study = optuna.load_study(storage=store.optuna_storage(), study_name=f"{name}/fixed")
            for value in (0.5, 0.7):
                trial = study.ask()
                params = {
                    "lr": trial.suggest_float("lr", 1e-3, 3e-2, log=True),
                    "lam": trial.suggest_float("lam", 1e-6, 1e-1, log=True),
                }
                store.record_epochs(trial._trial_id, [{"epoch": 1, "val_acc": value}])
                trial.set_user_attr("best_epoch", 1)
                study.tell(trial, value)
            if name == "exp":  # the best trial is the last one (val_acc 0.7, maximized)
                store.record_evaluation(name, "fixed", 0, params, test_loss=0.3, test_acc=0.9)


def _with_secret(url: str) -> str:
    return make_url(url).set(password=SECRET).render_as_string(hide_password=False)


@pytest.fixture(scope="module")
def sqlite_db(tmp_path_factory: pytest.TempPathFactory) -> Db:
    folder = tmp_path_factory.mktemp("hostile-sqlite")
    url = f"sqlite:///{folder / 'store.db'}"
    _populate(url, folder)
    return Db("sqlite", url, folder)


@pytest.fixture(scope="module")
def postgresql_db(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Db]:
    folder = tmp_path_factory.mktemp("hostile-postgresql")
    with scratch_postgres_database(require_postgres()) as url:
        _populate(url, folder)
        with reader_role(url):  # dynl2 sql-setup, once; dropped afterwards
            yield Db("postgresql", _with_secret(url), folder)


@pytest.fixture(params=BACKENDS)
def db(request: pytest.FixtureRequest) -> Db:
    found: Db = request.getfixturevalue(f"{request.param}_db")
    return found


def _clean(out: str, err: str) -> None:
    """At most one line on stderr, no traceback, no password anywhere."""
    assert "Traceback" not in err, err[-3000:]
    assert len(err.strip().splitlines()) <= 1, err[-3000:]
    assert SECRET not in out and SECRET not in err


def _cli(db: Db, argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """``dynl2 ARGV --storage URL`` in this process: clean, bounded, the store unchanged."""
    before = store_fingerprint(db.url)
    started = time.monotonic()
    code, out, err = run_cli([*argv, "--storage", db.url], capsys)
    assert time.monotonic() - started < BOUND_S, (argv, err)
    _clean(out, err)
    assert store_fingerprint(db.url) == before, argv
    return code, out, err


def _sql(
    db: Db, query: str, capsys: pytest.CaptureFixture[str], fmt: str = "table", *extra: str
) -> tuple[int, str, str]:
    return _cli(db, ["sql", query, "--format", fmt, "--timeout", "2", *extra], capsys)


# ------------------------------------------------------------- duplicate column names


def _both(value: Any) -> dict[str, Any]:
    """The same query or expectation on every backend."""
    return {backend: value for backend in BACKENDS}


# (id, {backend: query, or None where the backend cannot express it}, {backend: columns})
# fmt: off
DUPLICATES: list[tuple[str, dict[str, str | None], dict[str, list[str]]]] = [
    ("two literals", {"sqlite": "SELECT 1, 1", "postgresql": "SELECT 1, 1"},
     {"sqlite": ["1", "1_2"], "postgresql": ["?column?", "?column?_2"]}),
    ("three of one name", _both("SELECT 1 AS x, 2 AS x, 3 AS x"),
     _both(["x", "x_2", "x_3"])),
    ("the next name is taken", _both("SELECT 1 AS a, 2 AS a, 3 AS a_2"),
     _both(["a", "a_3", "a_2"])),
    ("count and count distinct",
     _both("SELECT count(*), count(DISTINCT state) FROM trials"),
     {"sqlite": ["count(*)", "count(DISTINCT state)"], "postgresql": ["count", "count_2"]}),
    ("trials joined with trial_values",
     _both("SELECT * FROM trials t JOIN trial_values v "
           "ON v.trial_id = t.trial_id ORDER BY t.trial_id"),
     _both(["trial_id", "number", "study_id", "state", "datetime_start",
            "datetime_complete", "trial_value_id", "trial_id_2", "objective", "value",
            "value_type"])),
    ("a table joined with itself",
     _both("SELECT * FROM dynl2_meta a, dynl2_meta b"),
     _both(["key", "value", "key_2", "value_2"])),
    ("empty names", {"sqlite": 'SELECT 1 AS "", 2 AS ""', "postgresql": None},
     {"sqlite": ["", "_2"]}),
    ("names that differ in case only", _both('SELECT 1 AS "A", 2 AS "a"'),
     _both(["A", "a"])),
]
# fmt: on


def _header(out: str, fmt: str) -> list[str]:
    if fmt == "json":
        records = json.loads(out)
        assert isinstance(records, list) and records, out[:500]
        assert all(isinstance(r, dict) for r in records)
        return list(records[0])
    if fmt == "csv":
        return next(csv.reader(io.StringIO(out)))
    return out.splitlines()[0].split()


@pytest.mark.parametrize("fmt", ["table", "csv", "json"])
@pytest.mark.parametrize(
    ("queries", "columns"), [pytest.param(q, c, id=i) for i, q, c in DUPLICATES]
)
def test_duplicate_column_names_get_distinct_names(db, queries, columns, fmt, capsys):
    """Before: pandas refused the frame (json) or the dict check crashed (table, csv)."""
    query = queries[db.backend]
    if query is None:
        pytest.skip(f"{db.backend} cannot express this query")
    code, out, err = _sql(db, query, capsys, fmt)
    assert (code, err) == (0, ""), err
    expected = columns[db.backend]
    if fmt == "table":  # names may hold spaces there: each one shows, in order
        header, at = out.splitlines()[0], 0
        for name in expected:
            found = header.find(name, at)
            assert found >= 0, (name, header)
            at = found + len(name)
    else:
        assert _header(out, fmt) == expected


# ---------------------------------------------------------------- blobs and odd types

# (id, {backend: query}, {backend: the JSON records expected})
# fmt: off
BLOBS: list[tuple[str, dict[str, str], dict[str, list[dict[str, Any]]]]] = [
    ("bytes that are not UTF-8",
     {"sqlite": "SELECT x'ff00fe' AS b", "postgresql": "SELECT '\\xff00fe'::bytea AS b"},
     _both([{"b": "\\xff00fe"}])),
    ("an empty blob", {"sqlite": "SELECT x'' AS b", "postgresql": "SELECT ''::bytea AS b"},
     _both([{"b": "\\x"}])),
    ("a blob and a text of one name",
     {"sqlite": "SELECT x'00' AS b, 'é' AS b",
      "postgresql": "SELECT '\\x00'::bytea AS b, 'é' AS b"},
     _both([{"b": "\\x00", "b_2": "é"}])),
    ("text that is not UTF-8",
     {"sqlite": "SELECT CAST(x'ff41' AS TEXT) AS t",
      "postgresql": "SELECT convert_to('é', 'LATIN1') AS t"},
     {"sqlite": [{"t": "\ufffdA"}], "postgresql": [{"t": "\\xe9"}]}),
]
# fmt: on


@pytest.mark.parametrize("fmt", ["table", "csv", "json"])
@pytest.mark.parametrize(("queries", "records"), [pytest.param(q, r, id=i) for i, q, r in BLOBS])
def test_blobs_show_as_hex_in_every_format(db, queries, records, fmt, capsys):
    """Before: json raised UnicodeDecodeError (bytes) and SQLite refused text that is not
    UTF-8; table and csv showed Python's b'...' repr."""
    code, out, err = _sql(db, queries[db.backend], capsys, fmt)
    assert (code, err) == (0, ""), err
    expected = records[db.backend]
    if fmt == "json":
        assert json.loads(out) == expected
    elif fmt == "csv":
        rows = list(csv.DictReader(io.StringIO(out)))
        assert rows == [{k: str(v) for k, v in r.items()} for r in expected]
    else:
        for value in expected[0].values():
            assert value in out, out


ODD_TYPES = {
    "sqlite": "SELECT 1.5 AS f, 9223372036854775807 AS big, NULL AS n, -0.0 AS z, 'x' AS s",
    "postgresql": "SELECT 1.5::numeric AS d, now() AS t, interval '1 day' AS i, "
    "ARRAY[1, 2] AS a, '{\"k\": [1, null]}'::jsonb AS j, gen_random_uuid() AS u, "
    "'NaN'::float8 AS nan, 'infinity'::float8 AS inf, '\\x01'::bytea AS b, "
    "ARRAY['\\x02'::bytea] AS bs",
}


@pytest.mark.parametrize("fmt", ["table", "csv", "json"])
def test_every_column_type_prints(db, fmt, capsys):
    code, out, err = _sql(db, ODD_TYPES[db.backend], capsys, fmt)
    assert (code, err) == (0, ""), err
    if fmt == "json":
        (record,) = json.loads(out)
        if db.backend == "postgresql":
            assert record["d"] == 1.5 and record["j"] == {"k": [1, None]}
            assert record["b"] == "\\x01" and record["bs"] == ["\\x02"]
        else:
            assert record["big"] == 9223372036854775807 and record["n"] is None


def test_json_nested_too_deeply_is_one_line(postgresql_db, capsys):
    query = "SELECT (repeat('[', 5000) || repeat(']', 5000))::jsonb AS j"
    code, out, err = _sql(postgresql_db, query, capsys, "json")
    assert (code, out) == (2, "")
    assert err.startswith("dynl2 sql: error:") and "nested" in err, err


# ------------------------------------------------------------------- the flags' limits

# (flag, value, what the line must name)
BAD_LIMITS = [
    ("--max-rows", "0", "1000000"),
    ("--max-rows", "-1", "1000000"),
    ("--max-rows", "2147483647", "1000000"),
    ("--max-rows", "1000001", "1000000"),
    ("--max-rows", "ten", "1000000"),
    ("--max-rows", "1.5", "1000000"),
    ("--max-rows", "", "1000000"),
    ("--timeout", "nan", "3600"),
    ("--timeout", "-1", "3600"),
    ("--timeout", "0", "3600"),
    ("--timeout", "1e308", "3600"),
    ("--timeout", "inf", "3600"),
    ("--timeout", "3601", "3600"),
    ("--timeout", "soon", "3600"),
]


@pytest.mark.parametrize(("flag", "value", "allowed"), BAD_LIMITS)
def test_limits_out_of_range_are_refused_in_one_line(db, flag, value, allowed, capsys):
    """Before: --max-rows 2147483647 (SQLite) and --timeout 1e308 (PostgreSQL) raised
    OverflowError with a traceback."""
    argv = ["sql", "SELECT 1", flag, value]
    code, out, err = _cli(db, argv, capsys)
    assert (code, out) == (2, "")
    assert err.startswith(f"dynl2 sql: error: argument {flag}:") and allowed in err, err


@pytest.mark.parametrize(("flag", "value"), [("--max-rows", "1000000"), ("--timeout", "3600")])
def test_the_largest_limits_are_allowed(db, flag, value, capsys):
    code, out, err = _cli(db, ["sql", "SELECT 7 AS n", "--format", "csv", flag, value], capsys)
    assert (code, out, err) == (0, "n\n7\n", "")


# (id, {backend: query}, exit status, what the line must say; "" for no line)
# fmt: off
LIGHT: list[tuple[str, dict[str, str], int, str]] = [
    ("a cartesian product is cut at --max-rows",
     {"sqlite": "SELECT * FROM dynl2_epochs a, dynl2_epochs b, dynl2_epochs c, dynl2_epochs d, "
                "dynl2_epochs e, dynl2_epochs f, dynl2_epochs g, dynl2_epochs h, dynl2_epochs i, "
                "dynl2_epochs j, dynl2_epochs k",
      "postgresql": "SELECT * FROM pg_class a, pg_class b"},
     0, "truncated at 1000 rows"),
    ("an endless recursive CTE is cut at --max-rows",
     _both("WITH RECURSIVE r(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM r) "
           "SELECT i FROM r"),
     0, "truncated at 1000 rows"),
    ("a counted cartesian product hits the time limit",
     {"sqlite": "WITH RECURSIVE r(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM r LIMIT 100000) "
                "SELECT count(*) FROM r a, r b",
      "postgresql": "SELECT count(*) FROM generate_series(1, 100000) a, "
                    "generate_series(1, 100000) b"},
     1, "time limit"),
    ("a recursive CTE that grows a distinct set hits the time limit",
     _both("WITH RECURSIVE r(i) AS (SELECT 1 UNION SELECT i + 1 FROM r) "
           "SELECT max(i) FROM r"),
     1, "time limit"),
    ("parentheses nested 30000 deep",
     _both("SELECT " + "(" * 30000 + "1" + ")" * 30000),
     2, "dynl2 sql: error:"),
]
# fmt: on


@pytest.mark.parametrize(
    ("queries", "code", "line"), [pytest.param(q, c, x, id=i) for i, q, c, x in LIGHT]
)
def test_runaway_queries_are_bounded(db, queries, code, line, capsys):
    got, _, err = _sql(db, queries[db.backend], capsys)
    assert got == code, err
    assert line in err, err


# --------------------------------------------- the heavy cases, in a child capped at 2 GiB

ENDLESS = "WITH RECURSIVE r(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM r) "

# (id, backend, query, format, exit status, what the line must say)
# fmt: off
HEAVY: list[tuple[str, str, str, str, int, str]] = [
    ("randomblob of 1e9 bytes a row, endless", "sqlite",
     ENDLESS + "SELECT length(randomblob(999999999)) FROM r", "table", 2, RESULT_CAP),
    ("randomblob under the cap, endless", "sqlite",
     ENDLESS + "SELECT count(length(randomblob(50000000))) FROM r", "table", 1, "time limit"),
    ("1000 rows of zeroblob(1e8)", "sqlite",
     ENDLESS + "SELECT zeroblob(100000000) FROM r LIMIT 1000", "json", 2, RESULT_CAP),
    ("rows of 50 MB until the cap", "sqlite",
     ENDLESS + "SELECT zeroblob(50000000) AS z FROM r LIMIT 1000", "table", 0, RESULT_CAP),
    ("rows of 1 MB until the cap", "sqlite",
     ENDLESS + "SELECT i, zeroblob(1000000) AS z FROM r LIMIT 100000", "csv", 0, RESULT_CAP),
    # Built in one step: the cap stops it, or on a loaded machine the time limit first
    ("a row of eight 50 MB values", "sqlite",
     "SELECT " + ", ".join(f"zeroblob(50000000) AS c{i}" for i in range(8)), "table", -1, ""),
    ("group_concat past the cap", "sqlite",
     ENDLESS + "SELECT length(group_concat(hex(zeroblob(1000000)))) FROM "
     "(SELECT i FROM r LIMIT 100)", "table", 2, RESULT_CAP),
    # group_concat stops growing at the cap but says so only at its end, which never comes
    ("group_concat without end", "sqlite",
     ENDLESS + "SELECT length(group_concat(hex(zeroblob(1000000)))) FROM r", "table", 1,
     "time limit"),
    ("replace that multiplies a string", "sqlite",
     "SELECT length(replace(hex(zeroblob(10000000)), '0', hex(zeroblob(100))))", "table", 2,
     RESULT_CAP),
    ("a sort of an endless result", "sqlite",
     ENDLESS + "SELECT i, randomblob(100) FROM r ORDER BY random()", "table", 1, "time limit"),
    # One call that never looks at the interrupt flag: SQLite 3.40 spends ~20 s in this
    # printf and longer in this instr; the query is left to finish in its thread. Last, so
    # that what they leave running costs the other cases nothing. Where the printf cannot
    # have its gigabyte under the memory cap it gives NULL at once (-2: done in time, or the
    # time limit).
    ("printf of a billion characters", "sqlite",
     "SELECT length(printf('%.*c', 999999999, 'x'))", "table", -2, "time limit"),
    ("instr of two 30 MB strings", "sqlite",
     "SELECT instr(hex(zeroblob(15000000)) || 'x', hex(zeroblob(7500000)) || 'x')", "table", 1,
     "time limit"),
    ("a 100 MB value", "postgresql", "SELECT repeat('x', 100000000) AS v", "json", 2, RESULT_CAP),
    ("rows of 10 MB until the cap", "postgresql",
     "SELECT i, repeat('x', 10000000) AS v FROM generate_series(1, 1000) i", "csv", 0,
     RESULT_CAP),
    ("a value of a billion characters", "postgresql", "SELECT repeat('x', 999999999) AS v",
     "table", -1, ""),
    ("string_agg without end", "postgresql",
     "SELECT length(string_agg(repeat('x', 1000000), '')) FROM generate_series(1, 100000)",
     "table", -1, ""),
]
# fmt: on

CHILD = """
import contextlib, io, json, sys, time, traceback
from study.cli import dispatch as cli
cases, results = json.loads(open(sys.argv[1]).read()), []
for argv in cases:
    out, err = io.StringIO(), io.StringIO()
    started = time.monotonic()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = cli.main(argv)
    except BaseException:
        code = None
        err.write(traceback.format_exc())
    seconds = time.monotonic() - started
    text = out.getvalue()
    results.append({"code": code, "seconds": seconds, "out": text[:4000],
                    "out_size": len(text), "err": err.getvalue()[-4000:]})
    del out, text
    with open(sys.argv[2], "w") as f:  # after each case: a crash keeps the cases before it
        json.dump(results, f)
"""


def _cap_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_CAP, MEMORY_CAP))


@dataclass(frozen=True)
class HeavyRun:
    results: list[dict[str, Any]]
    unchanged: bool  # the store's fingerprint after the child is the one before
    stderr: str  # the child's own


def _run_heavy(db: Db, cases: list[list[str]], folder: Path) -> HeavyRun:
    cases_file, results_file = folder / "cases.json", folder / "results.json"
    cases_file.write_text(json.dumps(cases))
    before = store_fingerprint(db.url)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "DYNL2_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, str(cases_file), str(results_file)],
        cwd=folder, env=env, preexec_fn=_cap_memory, capture_output=True, text=True,
        timeout=120 + BOUND_S * len(cases),
    )  # fmt: skip
    results = json.loads(results_file.read_text()) if results_file.exists() else []
    return HeavyRun(results, store_fingerprint(db.url) == before, proc.stderr[-3000:])


def _heavy(db: Db, folder: Path) -> HeavyRun:
    cases = [
        ["sql", query, "--format", fmt, "--timeout", "2", "--storage", db.url]
        for _, backend, query, fmt, _, _ in HEAVY
        if backend == db.backend
    ]
    return _run_heavy(db, cases, folder)


@pytest.fixture(scope="module")
def sqlite_heavy(sqlite_db: Db, tmp_path_factory: pytest.TempPathFactory) -> HeavyRun:
    """Every heavy SQLite case, in one child."""
    return _heavy(sqlite_db, tmp_path_factory.mktemp("heavy-sqlite"))


@pytest.fixture(scope="module")
def postgresql_heavy(postgresql_db: Db, tmp_path_factory: pytest.TempPathFactory) -> HeavyRun:
    """Every heavy PostgreSQL case, in one child."""
    return _heavy(postgresql_db, tmp_path_factory.mktemp("heavy-postgresql"))


def _heavy_cases() -> list[Any]:
    cases = []
    for backend in BACKENDS:
        mine = [c for c in HEAVY if c[1] == backend]
        cases += [pytest.param(backend, i, id=f"{backend}-{c[0]}") for i, c in enumerate(mine)]
    return cases


@pytest.mark.parametrize(("backend", "index"), _heavy_cases())
def test_heavy_queries_are_bounded_in_time_and_memory(backend, index, request):
    """Before: the endless randomblob CTE ran 139 s past its 10 s limit (2.2 GB resident),
    and 1000 rows of zeroblob(1e8) ended in MemoryError at 7.5 GB."""
    name, _, _, _, code, line = [c for c in HEAVY if c[1] == backend][index]
    run: HeavyRun = request.getfixturevalue(f"{backend}_heavy")
    assert run.unchanged, "a query changed the store"
    assert index < len(run.results), f"the child died before {name!r}: {run.stderr}"
    result = run.results[index]
    assert result["seconds"] < BOUND_S, result
    _clean(result["out"], result["err"])
    if code == -1:  # the database builds it; the time limit, the cap or its memory stops it
        assert result["code"] in (1, 2), result
        assert result["err"].startswith("dynl2 sql: "), result
    elif code == -2:  # done within the bounds, or stopped by the time limit
        assert result["code"] in (0, 1), result
        assert result["code"] == 0 or line in result["err"], result
    else:
        assert result["code"] == code, result
        assert line in result["err"], result
    if code == 0:
        assert "truncated at" in result["err"] and result["out_size"] > 0, result


# ------------------------------------------------- trials and status without results


@pytest.mark.parametrize("fmt", ["table", "csv", "json"])
@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_trials_of_every_experiment_in_every_format(db, experiment, fmt, capsys):
    """Before: table and csv of an experiment without trials raised pandas' TypeError."""
    code, out, err = _cli(db, ["trials", experiment, "--format", fmt], capsys)
    assert (code, err) == (0, ""), err
    rows = 0 if experiment == "empty" else 2
    if fmt == "json":
        records = json.loads(out)
        assert len(records) == rows
        if rows:
            assert {"test_acc", "params", "datetime_start"} <= set(records[0])
            evaluated = [r["test_seeds"] for r in records]
            assert sorted(evaluated) == ([0, 1] if experiment == "exp" else [0, 0])
    elif fmt == "csv":
        lines = out.splitlines()
        assert lines[0].startswith("arm,replicate,number,trial_id,state")
        assert len(lines) == rows + 1
    else:
        assert out.strip() == "(no rows)" if not rows else len(out.splitlines()) == rows + 1


@pytest.mark.parametrize("experiment", [*EXPERIMENTS, None])
def test_status_of_every_experiment(db, experiment, capsys):
    argv = ["status"] if experiment is None else ["status", experiment]
    code, out, err = _cli(db, argv, capsys)
    assert (code, err) == (0, ""), err
    assert out.strip()


# ----------------------------------------------------------------------- storage URLs

# fmt: off
BAD_URLS = [
    ("unclosed IPv6 bracket", f"postgresql://u:{SECRET}@[::1/x", "could not be parsed"),
    ("port not a number", f"postgresql://u:{SECRET}@host:abc/x", "port"),
    ("port 0", f"postgresql://u:{SECRET}@host:0/x", "port"),
    ("port above 65535", f"postgresql://u:{SECRET}@host:99999/x", "port"),
    ("empty host", f"postgresql://u:{SECRET}@/x", "host"),
    ("empty host with a port", f"postgresql://u:{SECRET}@:5432/x", "host"),
    ("NUL in a database name", f"postgresql://u:{SECRET}@host/x%00y", "NUL"),
    ("NUL in a SQLite path", "sqlite:///{p}/x%00y.db", "NUL"),
]
# fmt: on


@pytest.mark.parametrize("verb", [["status"], ["sql", "SELECT 1"], ["trials", "exp"]])
@pytest.mark.parametrize(("url", "fragment"), [pytest.param(u, f, id=i) for i, u, f in BAD_URLS])
def test_urls_that_name_no_database_are_refused(
    tmp_path, monkeypatch, verb, url, fragment, capsys
):
    """Before: a NUL in a SQLite path raised ValueError with a traceback; an empty host or a
    port out of range reached the driver (exit 1, a message about the server 'None')."""
    monkeypatch.chdir(tmp_path)
    started = time.monotonic()
    code, out, err = run_cli([*verb, "--storage", url.format(p=tmp_path)], capsys)
    assert time.monotonic() - started < BOUND_S
    _clean(out, err)
    assert (code, out) == (2, ""), err
    assert err.startswith(f"dynl2 {verb[0]}: error: ") and fragment in err, err
    assert list(tmp_path.iterdir()) == []  # nothing created


# ------------------------------------------------------------------------ damaged rows

# (id, the damage as SQL, the verbs that read it)
ALL_VERBS = ("status", "status exp", "trials exp", "report exp", "evaluate exp", "run exp")
# fmt: off
DAMAGE: list[tuple[str, str, tuple[str, ...]]] = [
    ("schema version not a number",
     "UPDATE dynl2_meta SET value = 'two' WHERE key = 'schema_version'", ALL_VERBS),
    ("schema version empty", "UPDATE dynl2_meta SET value = '' WHERE key = 'schema_version'",
     ALL_VERBS),
    ("schema version fractional",
     "UPDATE dynl2_meta SET value = '2.5' WHERE key = 'schema_version'", ALL_VERBS),
    ("config not JSON",
     "UPDATE dynl2_experiments SET config = '{\"experiment\": ' WHERE name = 'exp'", ALL_VERBS),
    ("config empty", "UPDATE dynl2_experiments SET config = '' WHERE name = 'exp'", ALL_VERBS),
    ("config a JSON list", "UPDATE dynl2_experiments SET config = '[1, 2]' WHERE name = 'exp'",
     ALL_VERBS),
    ("config JSON null", "UPDATE dynl2_experiments SET config = 'null' WHERE name = 'exp'",
     ALL_VERBS),
    ("config an object but no experiment",
     "UPDATE dynl2_experiments SET config = '{}' WHERE name = 'exp'",
     ("status", "status exp", "trials exp", "evaluate exp", "run exp")),
    ("config of another experiment",
     "UPDATE dynl2_experiments SET config = replace(config, '\"name\": \"exp\"', "
     "'\"name\": \"other\"') WHERE name = 'exp'",
     ("status", "status exp", "trials exp", "evaluate exp", "run exp")),
    # valid JSON that this dynl2 refuses (as a config an older one accepted): the listing
    # went down with exit status 2 and did not name the experiment
    ("config one this dynl2 refuses",
     "UPDATE dynl2_experiments SET config = replace(config, '\"epochs\": 2', '\"epochs\": 0') "
     "WHERE name = 'exp'", ("status",)),
    ("evaluation params not JSON", "UPDATE dynl2_evaluations SET params = 'oops'",
     ("status", "status exp", "trials exp", "report exp")),
    ("a trial attribute not JSON",
     "UPDATE trial_user_attributes SET value_json = '{' WHERE key = 'best_epoch'",
     ("status exp", "trials exp", "report exp")),
]
# fmt: on


def _damaged_sqlite(source: Db, damage: str, folder: Path) -> Db:
    path = folder / "store.db"
    shutil.copyfile(Path(make_url(source.url).database or ""), path)
    connection = sqlite3.connect(path)
    try:
        with connection:
            connection.execute(next(sql for i, sql, _ in DAMAGE if i == damage))
    finally:
        connection.close()
    write_config(folder, "exp", epochs=2, n_trials=2)  # what `run` resumes
    return Db("sqlite", f"sqlite:///{path}", folder)


@pytest.fixture(scope="module")
def sqlite_damaged(sqlite_db: Db, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """``get(damage)``: a copy of the module's store with that damage, made once."""
    made: dict[str, Db] = {}

    def get(damage: str) -> Db:
        if damage not in made:
            made[damage] = _damaged_sqlite(sqlite_db, damage, tmp_path_factory.mktemp("damaged"))
        return made[damage]

    return get


@pytest.fixture(scope="module")
def postgresql_damaged(postgresql_db: Db, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """``get(damage)``: a copy (CREATE DATABASE ... TEMPLATE) with that damage, made once."""
    made: dict[str, Db] = {}
    with ExitStack() as stack:

        def get(damage: str) -> Db:
            if damage not in made:
                template = make_url(postgresql_db.url).database
                scratch = scratch_postgres_database(require_postgres(), template=template)
                url = stack.enter_context(scratch)
                with psycopg.connect(libpq_url(url), autocommit=True) as connection:
                    connection.execute(next(sql for i, sql, _ in DAMAGE if i == damage))
                folder = tmp_path_factory.mktemp("damaged")
                write_config(folder, "exp", epochs=2, n_trials=2)
                made[damage] = Db("postgresql", _with_secret(url), folder)
            return made[damage]

        yield get


def _damage_cases() -> list[Any]:
    return [
        pytest.param(backend, damage, verb, id=f"{backend}-{damage}-{verb}")
        for backend in BACKENDS
        for damage, _, verbs in DAMAGE
        for verb in verbs
    ]


def _folder_state(folder: Path) -> dict[str, str | None]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        if p.is_file()
        else None
        for p in sorted(folder.rglob("*"))
        if not p.name.endswith(("-wal", "-shm"))
    }


@pytest.mark.parametrize(("backend", "damage", "verb"), _damage_cases())
def test_a_damaged_row_is_one_line_and_exit_1(backend, damage, verb, request, monkeypatch, capsys):
    """Before: a schema version or a config that is not JSON ended in a traceback."""
    db: Db = request.getfixturevalue(f"{backend}_damaged")(damage)
    monkeypatch.chdir(db.folder)  # a report or a workspace would show here
    words = verb.split()
    argv = ["run", str(db.folder / "exp.toml")] if words[0] == "run" else words
    files = _folder_state(db.folder)
    code, out, err = _cli(db, argv, capsys)
    assert code == 1, err
    if words == ["status"] and not damage.startswith("schema"):  # one experiment's rows
        # the listing names the one it cannot read, with the reason, beside the others
        assert err.strip() == "dynl2 status: failed: 1 of 3 experiments cannot be read: exp"
        lines = out.strip().splitlines()
        assert [line.split(":")[0] for line in lines] == ["exp", "noevals", "empty"], out
        assert lines[0].startswith("exp: unreadable: ") and "trials" in lines[1], out
    else:
        assert err.startswith(f"dynl2 {words[0]}: failed: the store is damaged: "), err
    assert _folder_state(db.folder) == files


def test_there_are_at_least_30_cases():
    sql = len(DUPLICATES) + len(BLOBS) + len(BAD_LIMITS) + len(LIGHT) + len(HEAVY)
    assert sql + len(EXPERIMENTS) + len(BAD_URLS) + len(DAMAGE) >= 30


# ------------------------------------------------------------- rows without columns

NO_COLUMNS = {
    "postgresql": [
        ("SELECT", "(1 row, no columns)"),
        ("SELECT FROM dynl2_experiments", "(3 rows, no columns)"),
        ("SELECT FROM dynl2_experiments WHERE false", "(no rows)"),
    ],
    "sqlite": [("SELECT 1 WHERE 0", "(no rows)")],  # SQLite has no select without columns
}


@pytest.mark.parametrize(
    ("backend", "query", "shown"),
    [(b, q, s) for b, cases in NO_COLUMNS.items() for q, s in cases],
)
def test_rows_without_columns_are_counted_not_called_no_rows(
    backend: str, query: str, shown: str, request: pytest.FixtureRequest, capsys
) -> None:
    """Before: a select of rows with no columns printed "(no rows)"."""
    db: Db = request.getfixturevalue(f"{backend}_db")
    code, out, err = _sql(db, query, capsys)
    assert (code, err, out.strip()) == (0, "", shown)


@pytest.mark.parametrize(
    "argv",
    [
        ["trials", "exp", "--arm", "a" * 5000],
        ["trials", "x" * 5000],
        ["status", "\x1b]0;owned\x07" + "y" * 3000],
        ["report", "z" * 5000, "--json"],
    ],
    ids=["an arm", "an experiment", "escapes in a name", "a report's experiment"],
)
def test_an_error_line_quotes_the_input_bounded_and_printable(db, argv, capsys):
    """Before: a 5,000-character arm came back whole in the error line."""
    code, out, err = _cli(db, argv, capsys)
    line = err.strip()
    assert code in (1, 2) and out == "" and line.startswith(f"dynl2 {argv[0]}: "), err[:300]
    assert len(line) <= 1100 and line.isprintable() and "characters cut" in line, line[-200:]
