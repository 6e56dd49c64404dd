"""Issue 17: every ``DYNL2_*`` environment variable is checked like a flag, up front.

A bad value ends any verb with one line naming the variable, what it accepts and what it got,
exit status 2, and nothing written (``DYNL2_THREADS=abc`` used to end a worker with a
traceback, ``0`` with another). Every variable dynl2 reads goes through :mod:`study.config.env`,
and the table of docs/limits.md lists them all."""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from study.cli.dispatch import main
from study.config import env
from study.errors import UsageError
from tests.tiny import write_tiny

ROOT = Path(__file__).resolve().parents[2]
CPUS = os.cpu_count() or 1

# (variable, bad value, a fragment of the message); "{p}" is the test's folder
# fmt: off
BAD: list[tuple[str, str, str]] = [
    ("DYNL2_THREADS", "abc", f"expected a whole number from 1 to {CPUS}"),
    ("DYNL2_THREADS", "0", "got '0'"),
    ("DYNL2_THREADS", "-1", "got '-1'"),
    ("DYNL2_THREADS", "1.5", "got '1.5'"),
    ("DYNL2_THREADS", str(CPUS + 1), f"from 1 to {CPUS}"),
    ("DYNL2_THREADS", "1_0", "got '1_0'"),
    ("DYNL2_HEARTBEAT", "fast", "INTERVAL,GRACE"),
    ("DYNL2_HEARTBEAT", "10", "got '10'"),
    ("DYNL2_HEARTBEAT", "5,5", "INTERVAL < GRACE"),
    ("DYNL2_HEARTBEAT", "0,5", "1 <= INTERVAL"),
    ("DYNL2_HEARTBEAT", "1,2,3", "got '1,2,3'"),
    ("DYNL2_HEARTBEAT", "1,999999", "GRACE <= 86400"),
    ("DYNL2_DB_PATIENCE", "-1", "between 0 and 86400"),
    ("DYNL2_DB_PATIENCE", "nan", "got 'nan'"),
    ("DYNL2_DB_PATIENCE", "inf", "got 'inf'"),
    ("DYNL2_DB_PATIENCE", "soon", "got 'soon'"),
    ("DYNL2_LOADER_SECONDS", "0", "seconds above 0"),
    ("DYNL2_LOADER_SECONDS", "nan", "got 'nan'"),
    ("DYNL2_CACHE", "{p}/a-file", "is a file"),
    ("DYNL2_CACHE", "{p}/a-file/below", "a-file is a file"),
    ("DYNL2_STORAGE", "dynl2.db", "must be a database URL"),
    ("DYNL2_STORAGE", "ftp://host/x", "unsupported scheme"),
    ("DYNL2_SQL_URL", "sqlite:///{p}/x.db", "PostgreSQL"),
    ("DYNL2_SQL_URL", "not a url", "must be a database URL"),
    ("DYNL2_RUN_PID", "abc", "a process id"),
    ("DYNL2_RUN_PID", "0", "got '0'"),
    ("DYNL2_SERVE_TOKEN", "two words", "at most 4096, got '<hidden>'"),
    ("DYNL2_SERVE_TOKEN", "tab\there", "one word of visible ASCII characters"),
    ("DYNL2_PGBOUNCER", "yes", "1 (the storage URL names a pooler in transaction mode) or 0"),
    ("DYNL2_PGBOUNCER", "2", "got '2'"),
]
# fmt: on


def _fingerprint(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        if p.is_file()
        else "dir"
        for p in sorted(folder.rglob("*"))
    }


@pytest.fixture
def place(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The working directory: a good config, a plain file; no DYNL2_* variable but the
    session's data cache (tests/conftest.py)."""
    write_tiny(tmp_path, "exp", epochs=2, n_trials=1, seeds=1, arms=["fixed"])
    (tmp_path / "a-file").write_text("in the way\n")
    monkeypatch.chdir(tmp_path)
    for name in env.KNOBS:
        if name != env.CACHE:
            monkeypatch.delenv(name, raising=False)
    return tmp_path


VERBS = {
    "run": ["run", "exp.toml", "--storage", "sqlite:///{p}/new/store.db"],
    "worker": ["worker", "exp", "--storage", "sqlite:///{p}/new/store.db"],
    "status": ["status"],
}


@pytest.mark.parametrize(("name", "value", "fragment"), BAD, ids=[f"{n}={v}" for n, v, _ in BAD])
def test_a_bad_variable_is_one_line_and_exit_2(place, capsys, monkeypatch, name, value, fragment):
    monkeypatch.setenv(name, value.format(p=place))
    for verb, argv in VERBS.items():
        before = _fingerprint(place)
        capsys.readouterr()
        code = main([a.format(p=place) for a in argv])
        err = capsys.readouterr().err
        lines = err.strip().splitlines()
        assert code == 2, err
        assert len(lines) == 1 and "Traceback" not in err, err
        assert lines[0].startswith(f"dynl2 {verb}: error: "), lines[0]
        assert name in lines[0] and fragment.format(p=place) in lines[0], lines[0]
        assert _fingerprint(place) == before  # nothing written, created or removed
        assert not (place / "dynl2-workspace").exists()


def test_there_are_at_least_15_cases():
    assert len(BAD) >= 15
    assert {name for name, _, _ in BAD} == set(env.KNOBS)  # each variable has a bad case


# fmt: off
GOOD: list[tuple[str, str, object]] = [
    ("DYNL2_THREADS", "1", 1),
    ("DYNL2_THREADS", f" {CPUS} ", CPUS),
    ("DYNL2_THREADS", "", None),
    ("DYNL2_HEARTBEAT", "1,3", (1, 3)),
    ("DYNL2_HEARTBEAT", " 10 , 60 ", (10, 60)),
    ("DYNL2_HEARTBEAT", "  ", None),
    ("DYNL2_DB_PATIENCE", "0", 0.0),
    ("DYNL2_DB_PATIENCE", "2.5", 2.5),
    ("DYNL2_RUN_PID", "123", 123),
    ("DYNL2_SERVE_TOKEN", "  s3cret  ", "s3cret"),
]
# fmt: on

READERS = {
    "DYNL2_THREADS": env.threads,
    "DYNL2_HEARTBEAT": env.heartbeat,
    "DYNL2_DB_PATIENCE": env.db_patience,
    "DYNL2_RUN_PID": env.run_pid,
    "DYNL2_SERVE_TOKEN": env.serve_token,
}


@pytest.mark.parametrize(("name", "value", "expected"), GOOD)
def test_good_values(monkeypatch, name, value, expected):
    monkeypatch.setenv(name, value)
    assert READERS[name]() == expected


def test_a_cache_folder_to_be_created_is_good(tmp_path, monkeypatch):
    monkeypatch.setenv("DYNL2_CACHE", str(tmp_path / "not" / "yet"))
    assert env.cache() == tmp_path / "not" / "yet"


def test_the_readers_raise_a_usage_error(monkeypatch):
    monkeypatch.setenv("DYNL2_THREADS", "abc")
    with pytest.raises(UsageError, match=r"^DYNL2_THREADS: expected .*, got 'abc'$"):
        env.threads()


def test_supervised_needs_the_parent_process(monkeypatch):
    monkeypatch.setenv("DYNL2_RUN_PID", str(os.getppid()))
    assert env.supervised()
    monkeypatch.setenv("DYNL2_RUN_PID", str(os.getpid()))  # not the parent: speaks for itself
    assert not env.supervised()
    monkeypatch.setenv("DYNL2_RUN_PID", "abc")  # never raises
    assert not env.supervised()


_READ = re.compile(r"DYNL2_[A-Z_]+")
_NOT_A_VARIABLE = {"DYNL2_TABLES"}  # storage.schema's tuple of tables


def test_every_variable_dynl2_reads_is_checked_and_documented():
    """Every ``DYNL2_*`` name in the packages is one of :data:`study.config.env.KNOBS`, and the
    table of docs/limits.md lists each of them (and the variables only the tests read)."""
    found = set()
    for package in ("study", "storage", "trainers", "reports"):
        for path in (ROOT / package).rglob("*.py"):
            found |= set(_READ.findall(path.read_text()))
    assert found - _NOT_A_VARIABLE <= set(env.KNOBS), found - set(env.KNOBS)
    in_tests = set()
    for path in (ROOT / "tests").rglob("*.py"):
        in_tests |= set(_READ.findall(path.read_text()))
    page = (ROOT / "docs" / "limits.md").read_text()
    table = page[page.index("## Environment variables") :]
    for name in sorted((set(env.KNOBS) | in_tests) - _NOT_A_VARIABLE):
        assert f"`{name}`" in table, name


@pytest.mark.slow
def test_as_a_real_process(tmp_path):
    """What a user saw: ``DYNL2_THREADS=abc dynl2 worker`` ended with a traceback."""
    proc = subprocess.run(
        [sys.executable, "-m", "study", "worker", "exp", "--storage", f"sqlite:///{tmp_path}/x.db"],
        cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(ROOT), "DYNL2_THREADS": "abc"},
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.splitlines() == [
        f"dynl2 worker: error: DYNL2_THREADS: expected a whole number from 1 to {CPUS} "
        "(this machine's CPUs), got 'abc'"
    ]
    assert list(tmp_path.iterdir()) == []
