"""A database password never reaches a process list or a message.

``dynl2 run --workers N`` hands the storage URL to its workers in ``$DYNL2_STORAGE``, not on
their command lines (which every local user reads with ``ps``); errors about a URL, or from the
driver, show it masked. Masking itself, URL by URL: ``tests/storage/test_urls.py``.
"""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

import storage
from study.cli.dispatch import main
from study.config.experiment import load_experiment
from study.run import runs
from study.run.progress import ProgressPrinter
from study.search.resilience import driver_message
from tests.storage.backends import empty_url
from tests.tiny import write_tiny

ROOT = Path(__file__).resolve().parents[2]
SECRET = "SECRETpw"


class _FakeWorker:
    """A worker process that has already ended, for runs that must not train."""

    def __init__(self, args: list[str], **kwargs: Any) -> None:
        self.args = args
        self.env: dict[str, str] = kwargs["env"]
        self.returncode = 0

    def poll(self) -> int:
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        return self.returncode

    def terminate(self) -> None:
        pass

    def kill(self) -> None:
        pass

    def send_signal(self, signum: int) -> None:
        pass


@pytest.fixture
def spawned(monkeypatch: pytest.MonkeyPatch) -> list[_FakeWorker]:
    """What ``dynl2 run`` starts with ``subprocess.Popen``, recorded instead of started."""
    seen: list[_FakeWorker] = []

    def popen(args: list[str], **kwargs: Any) -> _FakeWorker:
        seen.append(_FakeWorker(args, **kwargs))
        return seen[-1]

    monkeypatch.setattr(runs.subprocess, "Popen", popen)
    return seen


def _check_workers(spawned: list[_FakeWorker], url: str, secret: str) -> None:
    assert len(spawned) == 2
    for worker in spawned:
        assert not any(secret in arg for arg in worker.args), worker.args
        assert "--storage" not in worker.args
        assert worker.args[:4] == [sys.executable, "-m", "study", "worker"]
        assert make_url(worker.env[storage.ENV_VAR]).password == make_url(url).password


def test_workers_get_the_url_in_their_environment(
    spawned: list[_FakeWorker], tmp_path: Path
) -> None:
    """No database needed: the spawn itself, with a URL whose password has a raw "@"."""
    config = load_experiment(
        write_tiny(tmp_path, "spawn", epochs=1, n_trials=1, seeds=1, arms=("none",))
    )
    url = storage.resolve_url(f"postgresql+psycopg://u:p@{SECRET}@db.example.com:5432/x")
    printer = ProgressPrinter(lambda line: None)

    class _Store:  # no progress is read: the fake workers have ended before the first line
        def check_file(self) -> None:
            pass

    store: Any = _Store()
    failed = runs._search_in_processes(store, config, url, 2, printer, 0.0, batch=3)
    assert failed == 0
    _check_workers(spawned, url, SECRET)
    assert all(w.args[-4:-2] == ["--batch", "3"] for w in spawned)


def _with_password(url: str, password: str) -> str:
    """``url`` (a scratch database without a password: trust auth) with ``password``, written
    raw: an "@" in it stays an "@"."""
    parsed = make_url(url)
    if parsed.password is not None:
        pytest.skip("the test PostgreSQL URL has a password of its own; these tests add one")
    port = f":{parsed.port}" if parsed.port else ""
    return (
        f"postgresql+psycopg://{parsed.username}:{password}@{parsed.host}{port}/{parsed.database}"
    )


def test_dynl2_run_passes_the_password_only_through_the_environment(
    spawned: list[_FakeWorker], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``dynl2 run --workers 2`` in this process on PostgreSQL, the URL only in
    ``$DYNL2_STORAGE``: the workers' command lines and the run's output hold no password."""
    config = write_tiny(tmp_path, "env", epochs=1, n_trials=1, seeds=1, arms=("none", "fixed"))
    with empty_url("postgresql", tmp_path) as scratch:
        url = _with_password(scratch, f"p@{SECRET}")
        monkeypatch.setenv(storage.ENV_VAR, url)
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(["run", str(config), "--workers", "2"])
    assert code == 1, err.getvalue()  # the fake workers trained nothing: arms are short
    _check_workers(spawned, storage.resolve_url(url), SECRET)
    assert SECRET not in out.getvalue() + err.getvalue()
    assert "postgres:***@" in out.getvalue()


def _descendants(root: int) -> dict[int, bytes]:
    """``{pid: cmdline}`` of every process below ``root`` now, read from /proc."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            text = stat.read_text()
            parents[int(stat.parent.name)] = int(text.rsplit(")", 1)[1].split()[1])
    found: dict[int, bytes] = {}
    frontier = [root]
    while frontier:
        pid = frontier.pop()
        for child, parent in parents.items():
            if parent == pid and child not in found:
                found[child] = b""  # a process between fork and exec, or gone, reads empty
                with contextlib.suppress(OSError):
                    found[child] = Path(f"/proc/{child}/cmdline").read_bytes()
                frontier.append(child)
    return found


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux's /proc")
def test_worker_processes_show_no_password_in_the_process_list(tmp_path: Path) -> None:
    """A real ``dynl2 run --workers 2`` on PostgreSQL, the URL only in ``$DYNL2_STORAGE``: the
    run and every process it starts (workers, then the evaluation's process pool) are read
    from /proc while it runs. A plain password, so that the run works without this fix too; a
    raw "@" in one is the in-process test's above."""
    config = write_tiny(tmp_path, "ps", epochs=2, n_trials=2, seeds=2, arms=("none", "fixed"))
    with empty_url("postgresql", tmp_path) as scratch:
        url = _with_password(scratch, SECRET)
        env = {**os.environ, "DYNL2_THREADS": "1", storage.ENV_VAR: url}
        with (tmp_path / "out").open("w+") as out, (tmp_path / "err").open("w+") as err:
            run = subprocess.Popen(
                [sys.executable, "-m", "study", "run", str(config), "--workers", "2"],
                cwd=ROOT,
                stdout=out,
                stderr=err,
                env=env,
            )
            seen: set[bytes] = set()  # every command line, as often as it is read
            deadline = time.monotonic() + 300
            try:
                while run.poll() is None and time.monotonic() < deadline:
                    seen.update(_descendants(run.pid).values())
                    with contextlib.suppress(OSError):
                        seen.add(Path(f"/proc/{run.pid}/cmdline").read_bytes())
                    time.sleep(0.1)  # a worker lives for seconds: it imports torch first
            finally:
                if run.poll() is None:
                    run.kill()
                run.wait()
            out.seek(0)
            err.seek(0)
            stdout, stderr = out.read(), err.read()
    assert run.returncode == 0, stderr
    workers = {c for c in seen if b"worker" in c.split(b"\0")}
    assert len(workers) == 2, seen  # both seen alive (--index 0 and 1): each imports torch
    for cmdline in seen:
        assert SECRET.encode() not in cmdline
        assert b"--storage" not in cmdline
    assert SECRET not in stdout + stderr
    assert "verdict (test split" in stdout


@pytest.mark.parametrize(
    ("argv", "code", "shown"),
    [
        # A raw "@" in the password: once read as a host named "SECRET@127.0.0.1".
        (["status", "--storage", f"postgresql+psycopg://u:p@{SECRET}@127.0.0.1:1/db"], 1,
         "127.0.0.1:1"),
        (["sql", "SELECT 1", "--storage", f"postgresql+psycopg://u:p@{SECRET}@127.0.0.1:1/db"],
         1, "127.0.0.1:1"),
        (["status", "--storage", f"postgresql+psycopg://u@127.0.0.1:1/db?password={SECRET}"], 1,
         "127.0.0.1:1"),
        # Unreadable: the "@" is missing, so SQLAlchemy takes the password for the port.
        (["status", "--storage", f"postgresql+psycopg://u:{SECRET}/db"], 2, "could not be parsed"),
        (["status", "--storage", f"postgresql+psycopg://u:{SECRET}@127.0.0.1:x{SECRET}/db"], 2,
         "could not be parsed"),
        (["status", "--storage", f"postgresql+psycopg:/u:{SECRET}@127.0.0.1/db"], 2,
         "must be a database URL"),
        (["status", "--storage", f"postgresql+psycopg://u:{SECRET}@127.0.0.1/db@x"], 2,
         "an '@' after its host"),
        (["status", "--storage", f"oracle://u:{SECRET}@127.0.0.1/db"], 2, "'oracle'"),
    ],
)  # fmt: skip
def test_storage_errors_are_one_line_without_the_password(
    argv: list[str], code: int, shown: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Nothing listens on port 1: the connection is refused at once."""
    assert main(argv) == code
    out, err = capsys.readouterr()
    assert out == ""
    assert len(err.splitlines()) == 1, err
    assert shown in err
    assert SECRET not in err


def test_a_url_in_the_environment_is_masked_too(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(storage.ENV_VAR, f"postgresql+psycopg://u:p@{SECRET}@127.0.0.1:1/db")
    assert main(["status"]) == 1
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and SECRET not in err and "127.0.0.1:1" in err


def test_driver_messages_are_masked() -> None:
    """SQLAlchemy's and the drivers' words may quote a URL or a libpq conninfo."""
    driver = RuntimeError(
        f"could not use postgresql+psycopg://u:p@{SECRET}@h/db (host=h password={SECRET}2)"
    )
    wrapped = OperationalError("SELECT 1", {}, driver)
    message = driver_message(wrapped)
    assert SECRET not in message
    assert "u:***@h/db" in message and "password=***" in message
