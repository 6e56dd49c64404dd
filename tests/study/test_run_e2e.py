"""End to end: ``dynl2 run`` with real worker processes on SQLite and on a real PostgreSQL.

Exact per-arm counts, epochs for every completed trial, resume without exceeding the budget,
idempotent evaluation, parseable ``trials``/``sql`` output, and diverging trials counted as
results. Killed workers and runs: ``tests/reliability/``.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

import storage
from tests.storage.backends import BACKENDS, empty_url
from tests.storage.readers import reader_role
from tests.tiny import write_tiny

ROOT = Path(__file__).resolve().parents[2]


def write_config(tmp_path: Path, name: str = "e2e", epochs: int = 2, n_trials: int = 3,
                 seeds: int = 2) -> Path:  # fmt: skip
    return write_tiny(tmp_path, name, epochs=epochs, n_trials=n_trials, seeds=seeds,
                      arms=("dynamic", "fixed", "none"))  # fmt: skip


def dynl2(*args: str, timeout: float = 300, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "study", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "DYNL2_THREADS": "1", **env},
    )


def dynl2_here(*args: str) -> subprocess.CompletedProcess[str]:
    """``dynl2 ARGS`` in this process (``study.cli.main``): for the quick read-only verbs,
    whose own process start (importing torch) would cost seconds each; their behaviour as separate
    processes is covered by :func:`dynl2` elsewhere."""
    from study.cli.dispatch import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(args))
    return subprocess.CompletedProcess(["dynl2", *args], code, out.getvalue(), err.getvalue())


def check_counts(url: str, experiment: str, n_trials: int, epochs: int) -> None:
    with storage.open(url, create=False) as store:
        trials = store.trials(experiment)
        epoch_rows = store.epochs(experiment)
    for arm in ("dynamic", "fixed", "none"):
        mine = trials[trials["arm"] == arm]
        assert (mine["state"] == "COMPLETE").sum() == n_trials, mine
        assert not mine["state"].isin(["RUNNING", "WAITING"]).any()
        assert mine["number"].is_unique
    for trial_id in trials.loc[trials["state"] == "COMPLETE", "trial_id"]:
        rows = epoch_rows[epoch_rows["trial_id"] == trial_id]
        assert sorted(rows["epoch"]) == list(range(1, epochs + 1))


@pytest.mark.slow
@pytest.mark.parametrize("backend", BACKENDS)
def test_run_resume_evaluate_and_query(backend, tmp_path, monkeypatch, torch_threads):
    """The first run is a real ``dynl2 run --workers 2`` process with its worker processes;
    the resume, evaluate and conflicting run after it are ``study.cli.main`` in this process
    (the report lands under ``tmp_path``): a one-worker run in its own process is
    :func:`test_one_worker_searches_in_the_run_process`'s, and every other verb's process
    start is paid for elsewhere."""
    monkeypatch.chdir(tmp_path)
    config = write_config(tmp_path)
    with empty_url(backend, tmp_path) as url:
        done = dynl2("run", str(config), "--workers", "2", "--storage", url)
        assert done.returncode == 0, done.stderr
        assert "verdict (test split" in done.stdout
        check_counts(url, "e2e", n_trials=3, epochs=2)
        with storage.open(url, create=False) as store:
            evals = store.evaluations("e2e")
        assert sorted(evals.groupby("arm").size().items()) == [
            ("dynamic", 2), ("fixed", 2), ("none", 2),
        ]  # fmt: skip
        assert evals["test_acc"].between(0, 1).all()

        # resume, with one worker: it searches in the run's own process
        again = dynl2_here("run", str(config), "--storage", url)
        assert again.returncode == 0, again.stderr
        check_counts(url, "e2e", n_trials=3, epochs=2)  # the budget is not exceeded
        with storage.open(url, create=False) as store:
            assert len(store.evaluations("e2e")) == 6  # nothing evaluated twice

        more = dynl2_here("evaluate", "e2e", "--seeds", "3", "--storage", url)
        assert more.returncode == 0, more.stderr
        with storage.open(url, create=False) as store:
            assert sorted(store.evaluations("e2e")["seed"]) == [0, 0, 0, 1, 1, 1, 2, 2, 2]

        trials = dynl2_here("trials", "e2e", "--format", "json", "--storage", url)
        assert trials.returncode == 0, trials.stderr
        rows = json.loads(trials.stdout)
        assert len(rows) == 9
        assert {r["arm"] for r in rows} == {"dynamic", "fixed", "none"}
        assert sum(r["test_seeds"] == 3 for r in rows) == 3  # each arm's evaluated best trial
        csv = dynl2_here("trials", "e2e", "--arm", "fixed", "--format", "csv", "--storage", url)
        assert csv.returncode == 0 and len(csv.stdout.strip().splitlines()) == 4

        query = "SELECT arm, count(*) AS n FROM dynl2_evaluations GROUP BY arm ORDER BY arm"
        if backend == "postgresql":  # as superuser, dynl2 sql needs its read-only login
            refused = dynl2_here("sql", query, "--storage", url)
            assert refused.returncode == 2 and "dynl2 sql-setup" in refused.stderr
        with reader_role(url) if backend == "postgresql" else contextlib.nullcontext():
            sql = dynl2_here("sql", query, "--format", "json", "--storage", url)
            assert sql.returncode == 0, sql.stderr
            assert json.loads(sql.stdout) == [
                {"arm": "dynamic", "n": 3}, {"arm": "fixed", "n": 3}, {"arm": "none", "n": 3},
            ]  # fmt: skip
            refused = dynl2_here("sql", "DELETE FROM dynl2_evaluations", "--storage", url)
            assert refused.returncode == 2 and "read-only" in refused.stderr
        with storage.open(url, create=False) as store:
            assert len(store.evaluations("e2e")) == 9

        status = dynl2_here("status", "e2e", "--storage", url)
        assert status.returncode == 0
        assert all(arm in status.stdout for arm in ("dynamic", "fixed", "none"))

        changed = write_config(tmp_path, epochs=3)
        conflict = dynl2_here("run", str(changed), "--storage", url)
        assert conflict.returncode == 2
        assert "train.epochs" in conflict.stderr and "Traceback" not in conflict.stderr
        check_counts(url, "e2e", n_trials=3, epochs=2)


def _no_worker_processes(monkeypatch: pytest.MonkeyPatch) -> None:
    real = subprocess.Popen

    def refuse(argv, *args, **kwargs):  # type: ignore[no-untyped-def]
        if "study" in argv and "worker" in argv:
            raise AssertionError(f"a worker process was started: {argv}")
        return real(argv, *args, **kwargs)

    monkeypatch.setattr(subprocess, "Popen", refuse)


@pytest.fixture
def torch_threads() -> Iterator[None]:
    """A one-worker run sets this process's torch threads (as a worker process's); put back."""
    import torch

    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


@pytest.mark.slow
def test_one_worker_searches_in_the_run_process(tmp_path, monkeypatch, torch_threads):
    """``dynl2 run`` with one worker trains in its own process (no second process importing
    torch again) and counts exactly as worker processes do; progress lines still show."""
    config = write_config(tmp_path, epochs=2, n_trials=3, seeds=2)
    _no_worker_processes(monkeypatch)
    with empty_url("sqlite", tmp_path) as url:
        done = dynl2_here("run", str(config), "--storage", url)
        assert done.returncode == 0, done.stderr
        assert "1 worker(s)" in done.stdout and "verdict (test split" in done.stdout
        assert "3 done (3 complete" in done.stdout  # the progress line, at the end
        check_counts(url, "e2e", n_trials=3, epochs=2)
        with storage.open(url, create=False) as store:
            assert len(store.evaluations("e2e")) == 6
    assert not [t for t in threading.enumerate() if t.name == "dynl2-progress"]


def test_a_failing_trial_ends_a_one_worker_run_with_one_line(tmp_path, monkeypatch, torch_threads):
    """A trial that fails for a reason other than divergence stops the run's own worker as it
    would stop a worker process: the trial is marked FAIL with its reason, the run says so in
    one line and exits 1, and nothing is evaluated."""
    from study.search import fused as fused_trials

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("the disk is on fire")

    monkeypatch.setattr(fused_trials, "train_fused", broken)
    _no_worker_processes(monkeypatch)
    config = write_config(tmp_path, epochs=2, n_trials=3, seeds=2)
    with empty_url("sqlite", tmp_path) as url:
        done = dynl2_here("run", str(config), "--quiet", "--storage", url)
        assert done.returncode == 1
        assert done.stderr.strip().splitlines() == [
            "dynl2 run: failed: trial dynamic#0 failed: RuntimeError: the disk is on fire"
        ]
        with storage.open(url, create=False) as store:
            trials = store.trials("e2e")
            assert len(store.evaluations("e2e")) == 0
    failed = trials[trials["state"] == "FAIL"]
    assert len(failed) == 1 and (trials["state"] != "RUNNING").all()
    assert not [t for t in threading.enumerate() if t.name == "dynl2-progress"]


# Workers killed mid-trial (their trials retried once, exact counts): see
# tests/reliability/test_workers_killed.py.


@pytest.mark.slow
def test_diverging_trials_count_as_results(tmp_path):
    config = tmp_path / "div.toml"
    config.write_text(
        """
[experiment]
name = "div"
[data]
dataset = "linear"
n_train = 40
n_features = 20
[model]
kind = "linear"
[train]
optimizer = "sgd"
momentum = 0.0
lr = 10.0
epochs = 30
batch_size = 40
device = "cpu"
[search]
n_trials = 2
sampler = "random"
pruner = "none"
metric = "val_loss"
[arms.fixed]
scheme = "fixed"
lam = { low = 1e-3, high = 1e-2, log = true }
[evaluate]
seeds = 1
"""
    )
    url = f"sqlite:///{tmp_path / 'div.db'}"
    done = dynl2("run", str(config), "--storage", url)
    assert done.returncode == 0, done.stderr
    with storage.open(url, create=False) as store:
        trials = store.trials("div")
        evals = store.evaluations("div")
    assert list(trials["state"]) == ["FAIL", "FAIL"]
    assert all("diverged in epoch" in reason for reason in trials["fail_reason"])
    assert evals.empty  # no complete trial: nothing to evaluate, and the run says so


BAD_RUNS = [
    (["run", "missing.toml"], "missing.toml"),
    (["run", "{bad_toml}"], "line"),
    (["run", "{bad_sampler}"], "search.sampler"),
    (["run", "{tiny}", "--workers", "0"], "--workers"),
    (["run", "{tiny}", "--storage", "bogus://x"], "bogus"),
    (["trials", "nope"], "nope"),
    (["status", "nope"], "nope"),
    (["evaluate", "nope"], "nope"),
    (["worker", "nope"], "nope"),
    (["sql", "DROP TABLE trials"], "read-only"),
]


@pytest.mark.parametrize(("args", "fragment"), BAD_RUNS, ids=[" ".join(a) for a, _ in BAD_RUNS])
def test_bad_study_input_is_one_line_exit_2_and_writes_nothing(tmp_path, args, fragment):
    tiny = write_config(tmp_path)
    bad_toml = tmp_path / "bad.toml"
    bad_toml.write_text("[experiment\nname = 'x'\n")
    bad_sampler = tmp_path / "sampler.toml"
    bad_sampler.write_text(tiny.read_text().replace('"random"', '"annealing"'))
    paths = {"tiny": tiny, "bad_toml": bad_toml, "bad_sampler": bad_sampler}
    args = [a.format(**paths) for a in args]
    db = tmp_path / "fresh.db"
    if args[0] == "sql" or (args[0] != "run" and "nope" in args):
        with storage.open(f"sqlite:///{db}"):
            pass  # an existing, empty store
    before = db.read_bytes() if db.exists() else None
    storage_args = [] if "--storage" in args else ["--storage", f"sqlite:///{db}"]
    proc = dynl2(*args, *storage_args)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert fragment in lines[0]
    after = db.read_bytes() if db.exists() else None
    assert after == before  # nothing written (no new database for a bad run)
