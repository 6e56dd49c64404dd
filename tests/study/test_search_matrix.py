"""Every sampler × pruner ``[search]`` accepts (docs/config.md), end to end: ``dynl2 run`` on
a tiny experiment each, with exact counts per arm, nothing left RUNNING, evaluations recorded,
and under Hyperband every trial judged by it. Then what broke only in real runs: Hyperband with
two worker processes (on SQLite and PostgreSQL), and no thread but a process's main one ever
importing a module while a run goes on (a thread that did ended QMC runs with ``ImportError:
... partially initialized module 'scipy.stats._qmc'``).
"""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

import optuna
import pytest

import storage
from study.config.experiment import PRUNERS, SAMPLERS
from tests.storage.backends import BACKENDS, empty_url
from tests.tiny import tiny_config

ROOT = Path(__file__).resolve().parents[2]
RUNG = "completed_rung_"  # the system attribute Hyperband's rungs leave on each trial they judge


def write_config(
    directory: Path,
    name: str,
    sampler: str,
    pruner: str,
    *,
    epochs: int,
    n_trials: int,
    arms: Sequence[str] = ("fixed", "none"),
) -> Path:
    """tests/tiny.py's experiment (one evaluation seed) with this sampler and pruner."""
    text = tiny_config(name, epochs=epochs, n_trials=n_trials, seeds=1, arms=arms)
    for key, default, value in (("sampler", "random", sampler), ("pruner", "none", pruner)):
        text = text.replace(f'{key} = "{default}"', f'{key} = "{value}"')
        assert f'{key} = "{value}"' in text, f"tests/tiny.py no longer sets {key} = {default!r}"
    path = directory / f"{name}.toml"
    path.write_text(text)
    return path


def check_run(url: str, name: str, arms: Sequence[str], n_trials: int, epochs: int,
              pruner: str) -> dict[str, int]:  # fmt: skip
    """Exact results per arm, nothing RUNNING or retried, epochs for every COMPLETE trial, an
    evaluation per arm, and under Hyperband every trial judged at a rung (under any other
    pruner, none). Returns how many trials were PRUNED, by arm."""
    with storage.open(url, create=False) as store:
        trials = store.trials(name)
        epoch_rows = store.epochs(name)
        assert sorted(store.evaluations(name)["arm"]) == sorted(arms)
        rdb = store.optuna_storage()
        system_attrs = {
            arm: [t.system_attrs for t in optuna.load_study(
                study_name=storage.study_name(name, arm), storage=rdb).get_trials()]
            for arm in arms
        }  # fmt: skip
    pruned = {}
    for arm in arms:
        mine = trials[trials["arm"] == arm]
        assert len(mine) == n_trials and mine["number"].is_unique, mine
        assert mine["state"].isin(["COMPLETE", "PRUNED"]).all(), mine  # none RUNNING or lost
        pruned[arm] = int((mine["state"] == "PRUNED").sum())
        judged = [any(key.startswith(RUNG) for key in attrs) for attrs in system_attrs[arm]]
        assert judged == [pruner == "hyperband"] * n_trials, system_attrs[arm]
    for trial_id in trials.loc[trials["state"] == "COMPLETE", "trial_id"]:
        rows = epoch_rows[epoch_rows["trial_id"] == trial_id]
        assert sorted(rows["epoch"]) == list(range(1, epochs + 1))
    return pruned


@pytest.fixture
def here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A run in this process: its report lands under ``tmp_path``, and the torch threads it
    sets (as a worker process's) are put back."""
    import torch

    monkeypatch.chdir(tmp_path)
    before = torch.get_num_threads()
    yield tmp_path
    torch.set_num_threads(before)


def run_here(*args: str) -> subprocess.CompletedProcess[str]:
    """``dynl2 ARGS`` in this process (``study.cli.dispatch.main``): no interpreter start nor torch
    import per run."""
    from study.cli.dispatch import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(args))
    return subprocess.CompletedProcess(["dynl2", *args], code, out.getvalue(), err.getvalue())


@pytest.mark.slow
@pytest.mark.parametrize("pruner", PRUNERS)
@pytest.mark.parametrize("sampler", SAMPLERS)
def test_every_sampler_and_pruner_runs_end_to_end(sampler, pruner, here):
    """One worker, in this process: 2 arms × 3 trials × 2 epochs (Hyperband: one bracket, its
    rung at epoch 1; more brackets below)."""
    name = f"m-{sampler}-{pruner}"
    config = write_config(here, name, sampler, pruner, epochs=2, n_trials=3)
    url = f"sqlite:///{here / 'dynl2.db'}"
    done = run_here("run", str(config), "--quiet", "--storage", url)
    assert done.returncode == 0, done.stderr
    assert "failed" not in done.stderr and "verdict (test split" in done.stdout
    check_run(url, name, ("fixed", "none"), n_trials=3, epochs=2, pruner=pruner)


# ------------------------------------------------------------------------- real processes

PROBE = '''\
"""Installed by test_search_matrix.py in every process of a run (sitecustomize): notes each
module a thread other than the process's main one imports, and that the process started."""
import os, sys, threading

_LOG = os.environ.get("DYNL2_TEST_IMPORT_LOG")
if _LOG:
    with open(_LOG, "a") as f:
        f.write(f"start {os.getpid()}\\n")

    def _hook(event, args):
        if event == "import" and threading.current_thread() is not threading.main_thread():
            with open(_LOG, "a") as f:
                f.write(f"import {os.getpid()} {threading.current_thread().name} {args[0]}\\n")

    sys.addaudithook(_hook)
'''


def dynl2_watched(
    directory: Path, *args: str
) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    """``dynl2 ARGS`` as a real process (run in ``directory``), every Python process it starts
    watched for imports outside their main threads; returns the run and the lines of the
    watch's log (``start PID`` per process, ``import PID THREAD MODULE`` per such import)."""
    probe = directory / "probe"
    probe.mkdir()
    (probe / "sitecustomize.py").write_text(PROBE)
    log = directory / "imports.log"
    path = os.pathsep.join(p for p in (str(probe), str(ROOT), os.environ.get("PYTHONPATH")) if p)
    done = subprocess.run(
        [sys.executable, "-m", "study", *args],
        cwd=directory,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": path, "DYNL2_TEST_IMPORT_LOG": str(log)},
    )
    return done, log.read_text().splitlines() if log.exists() else []


def started(log: list[str]) -> int:
    return sum(line.startswith("start ") for line in log)


def imports_off_main(log: list[str]) -> list[str]:
    return [line for line in log if line.startswith("import ")]


@pytest.mark.slow
def test_a_one_worker_qmc_run_imports_in_its_main_thread_only(tmp_path):
    """The run process with its one worker in it: the progress thread and whatever else runs
    beside the training import nothing (a thread warming the report's imports raced QMC's)."""
    config = write_config(tmp_path, "race", "qmc", "none", epochs=1, n_trials=2, arms=("fixed",))
    url = f"sqlite:///{tmp_path / 'race.db'}"
    done, log = dynl2_watched(tmp_path, "run", str(config), "--quiet", "--storage", url)
    assert done.returncode == 0, done.stderr
    assert started(log) == 1  # the watch was on, and no other process ran
    assert imports_off_main(log) == []


@pytest.mark.slow
@pytest.mark.parametrize("backend", BACKENDS)
def test_hyperband_prunes_with_two_worker_processes(backend, tmp_path):
    """Hyperband and QMC in two ``dynl2 worker`` processes: trials PRUNED, the rest COMPLETE,
    exactly ``n_trials`` per arm (it failed every run with DetachedInstanceError, reported as
    "the database failed"); no process imports outside its main thread meanwhile."""
    epochs, n_trials = 3, 9  # two brackets: one with rungs at epochs 1 and 3, one at epoch 3
    config = write_config(tmp_path, "hb", "qmc", "hyperband", epochs=epochs, n_trials=n_trials,
                          arms=("fixed",))  # fmt: skip
    with empty_url(backend, tmp_path) as url:
        done, log = dynl2_watched(tmp_path, "run", str(config), "--workers", "2", "--storage", url)
        assert done.returncode == 0, done.stderr
        assert "Traceback" not in done.stderr and "failed" not in done.stderr
        pruned = check_run(url, "hb", ("fixed",), n_trials, epochs, "hyperband")
    assert pruned["fixed"] > 0
    assert started(log) >= 3  # the run and its two workers (and evaluation's)
    assert imports_off_main(log) == []
