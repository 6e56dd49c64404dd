"""Shared pieces of the reliability tests: tiny experiments, worker processes, the CLI run in
process, and checks that a store holds exactly the results it should."""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import pandas as pd
import psycopg
import pytest
import sqlalchemy as sa

import storage
from storage.pg_reader import ROLE_PREFIX, reader_role_name
from study.cli import dispatch as cli
from study.config.experiment import load_experiment
from study.search.keys import Heartbeat
from study.search.studies import open_studies
from tests.storage.backends import libpq_url
from tests.tiny import write_tiny

ROOT = Path(__file__).resolve().parents[2]
TEST_ROLE_PREFIX = "dynl2_test_"  # the logins tests make for themselves on a shared server

ARMS = ("dynamic", "fixed")


def write_config(
    directory: Path, name: str, *, epochs: int, n_trials: int, seeds: int = 1
) -> Path:
    """Two searched arms (``ARMS``) of the tiny study (:mod:`tests.tiny`)."""
    return write_tiny(directory, name, epochs=epochs, n_trials=n_trials, seeds=seeds, arms=ARMS)


def create_experiment(url: str, config_path: Path, heartbeat: Heartbeat) -> None:
    """What ``dynl2 run`` does before it starts workers: the experiment and its studies."""
    config = load_experiment(config_path)
    with storage.open(url) as store:
        store.create_experiment(config.name, config.to_dict())
        open_studies(store, config, heartbeat)


def child_env(**extra: str) -> dict[str, str]:
    return {**os.environ, "DYNL2_THREADS": "1", **extra}


# Every process a test starts, so that a failing test leaves none running (see conftest.py).
STARTED: list[subprocess.Popen[str]] = []


def spawn(argv: Sequence[str], *, group: bool = False, **env: str) -> subprocess.Popen[str]:
    """``python -m study ARGV`` in the background; ``group`` makes it lead a process group."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "study", *argv], cwd=ROOT, env=child_env(**env), text=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=group,
    )  # fmt: skip
    STARTED.append(proc)
    return proc


def stop_all() -> None:
    """kill -9 whatever a test started and left running (with its process group)."""
    while STARTED:
        proc = STARTED.pop()
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                if os.getpgid(proc.pid) == proc.pid:
                    os.killpg(proc.pid, signal.SIGKILL)
            proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.communicate(timeout=30)


def start_worker(
    experiment: str, url: str, index: int, *, quiet: bool = True, batch: int | None = None,
    **env: str,
) -> subprocess.Popen[str]:  # fmt: skip
    quiet_flag = ["--quiet"] if quiet else []
    batch_flag = ["--batch", str(batch)] if batch is not None else []
    argv = ["worker", experiment, "--storage", url, "--index", str(index), *quiet_flag]
    return spawn([*argv, *batch_flag], **env)


def finish(proc: subprocess.Popen[str], timeout: float) -> tuple[int, str, str]:
    """Wait for ``proc`` (killing it after ``timeout`` s); its exit status, stdout, stderr."""
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        pytest.fail(f"still running after {timeout} s: {proc.args}\n{err[-3000:]}")
    return proc.returncode, out, err


def kill_group(proc: subprocess.Popen[str]) -> None:
    """kill -9 the process group ``proc`` leads (a run and its workers), and reap it."""
    os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=30)


def wait_until(
    condition: Callable[[], bool], timeout: float, what: str, every: float = 0.1
) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        time.sleep(every)


def trials(url: str, experiment: str) -> pd.DataFrame:
    with storage.open(url, create=False) as store:
        return store.trials(experiment)


_EARLY = sa.text(
    "SELECT (SELECT count(*) FROM trial_params p WHERE p.trial_id = t.trial_id), "
    "(SELECT count(*) FROM trial_intermediate_values v WHERE v.trial_id = t.trial_id) "
    "FROM trials t WHERE t.state = 'RUNNING'"
)


def early_in_flight(url: str, n_params: int, epochs: int) -> int:
    """How many trials are RUNNING with all ``n_params`` of their parameters written and at
    most half of their ``epochs`` reported to Optuna. A test that kills or cuts off workers
    once it sees one knows that trial cannot end in the moment between the look and the blow
    (a worker writes a trial's epoch rows when it ends, but reports each epoch as it ends).
    Counts over every study in the store: the tests keep one experiment a store."""
    engine = sa.create_engine(url, poolclass=sa.NullPool)
    try:
        with engine.connect() as connection:
            rows = connection.execute(_EARLY).all()
    except sa.exc.OperationalError:  # the tables are not there yet
        return 0
    finally:
        engine.dispose()
    return sum(1 for params, done in rows if params == n_params and done <= epochs // 2)


def assert_exact_results(
    url: str, experiment: str, n_trials: int, epochs: int, arms: Sequence[str] = ARMS
) -> pd.DataFrame:
    """Each arm has exactly ``n_trials`` results, nothing RUNNING or WAITING, no trial number
    or parameter set counted twice, and every complete trial has all its epochs once."""
    with storage.open(url, create=False) as store:
        frame = store.trials(experiment)
        epoch_rows = store.epochs(experiment)
    for arm in arms:
        mine = frame[frame["arm"] == arm]
        results = mine[mine["state"].isin(["COMPLETE", "PRUNED"])]
        assert len(results) == n_trials, mine[["number", "state"]]
        assert not mine["state"].isin(["RUNNING", "WAITING"]).any(), mine[["number", "state"]]
        assert mine["number"].is_unique
        params = results["params"].map(lambda p: tuple(sorted(p.items())))
        assert params.is_unique, "the same configuration counted twice"
    complete = frame.loc[frame["state"] == "COMPLETE", "trial_id"]
    for trial_id in complete:
        rows = epoch_rows[epoch_rows["trial_id"] == trial_id]
        assert sorted(rows["epoch"]) == list(range(1, epochs + 1)), trial_id
    assert not epoch_rows.duplicated(["trial_id", "epoch"]).any()
    return frame


def whole(frame: pd.DataFrame, searched: Callable[[str], object]) -> pd.Series:
    """Which trials of ``frame`` have all the parameters their arm searches (a trial whose
    claim was cut short has fewer: Optuna created it, then the worker died)."""
    return frame["params"].map(len) == frame["arm"].map(lambda a: len(searched(a)))  # type: ignore[arg-type]


def retried_once(frame: pd.DataFrame, searched: Callable[[str], object]) -> int:
    """Check that every trial whose worker died (FAIL without a ``fail_reason``: a diverged
    trial has one, and is a result) was retried exactly once with its parameters: each such
    configuration shows twice, at most once as a result. A retry whose worker died as well is
    not retried again (Optuna's ``max_retry=1``); the arm fills its budget with new trials.
    Returns how many trials were retried. (A worker killed inside its claim, after Optuna
    created the trial but before all of its parameters were written, leaves nothing to repeat:
    such a trial is not retried.)"""
    retried = 0
    dead = frame[(frame["state"] == "FAIL") & frame["fail_reason"].isna() & whole(frame, searched)]
    for _, lost in dead.iterrows():
        same = frame[(frame["arm"] == lost["arm"]) & frame["params"].map(lost["params"].__eq__)]
        shown = frame[["arm", "number", "state", "params", "fail_reason"]].to_string()
        assert len(same) == 2, shown
        assert same["state"].isin(["COMPLETE", "PRUNED"]).sum() <= 1, shown
        retried += int(lost["number"] == same["number"].min())  # the first of the two
    return retried


def run_cli(argv: Sequence[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """``dynl2 ARGV`` in this process (the same ``main`` the console script calls)."""
    capsys.readouterr()
    code = cli.main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


_SIDE = ("-wal", "-shm")


def store_fingerprint(url: str) -> object:
    """Everything a write could change. SQLite: the bytes of the file and of its WAL, and
    the folder's listing. PostgreSQL: every table of the public schema, dumped row by row."""
    path = storage.sqlite_path(url)
    if path is not None:
        # A read-only connection that reads a WAL-mode file creates an empty -wal and a -shm
        # index and, being read-only, cannot remove them when it closes (SQLite's documented
        # behaviour): they hold no data. A write would show in the file or in the WAL's bytes.
        files = sorted(p.name for p in path.parent.iterdir() if not p.name.endswith(_SIDE))
        wal = Path(f"{path}-wal")
        blobs = [
            hashlib.sha256(path.read_bytes()).hexdigest(),
            hashlib.sha256(wal.read_bytes() if wal.is_file() else b"").hexdigest(),
        ]
        return files, blobs
    with psycopg.connect(libpq_url(url)) as connection:
        tables = [
            row[0]
            for row in connection.execute(
                "SELECT table_name FROM information_schema.tables "
                "WHERE table_schema = 'public' ORDER BY 1"
            )
        ]
        dump = {}
        for table in tables:
            rows = connection.execute(f'SELECT t::text FROM "{table}" t').fetchall()
            dump[table] = hashlib.sha256(
                "\n".join(sorted(r[0] for r in rows)).encode()
            ).hexdigest()
        # Roles belong to the whole server, where other tests (another xdist worker) make and
        # drop the reader roles of their own databases, and logins of their own
        # (TEST_ROLE_PREFIX), meanwhile: those are not this store's.
        own = reader_role_name(sa.make_url(url).database or "")
        roles = [
            role
            for (role,) in connection.execute("SELECT rolname FROM pg_roles ORDER BY 1")
            if not role.startswith((ROLE_PREFIX, TEST_ROLE_PREFIX)) or role == own
        ]
        functions = connection.execute(
            "SELECT count(*) FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace "
            "WHERE n.nspname = 'public'"
        ).fetchone()
    return tables, dump, roles, functions
