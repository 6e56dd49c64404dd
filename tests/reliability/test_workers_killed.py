"""Issue 6, item 1: worker processes killed with SIGKILL in the middle of their trials while
another keeps going. The killed trials turn FAIL once their heartbeat lapses, each is retried
once with the same parameters, and every arm still ends with exactly ``n_trials`` results:
nothing lost, nothing counted twice, nothing left RUNNING. Three of ``dynl2 run``'s four
workers killed one after another, on SQLite and on PostgreSQL; a worker killed while it trains
a fused group; a worker killed between its claim and its first heartbeat."""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import sqlalchemy as sa

import storage
from study.config.experiment import load_experiment
from study.search.keys import Heartbeat
from study.search.studies import distributions, open_studies
from study.search.worker import run_worker
from tests.storage.backends import BACKENDS, empty_url

from .helpers import (
    assert_exact_results,
    create_experiment,
    early_in_flight,
    finish,
    retried_once,
    spawn,
    start_worker,
    trials,
    wait_until,
    whole,
    write_config,
)

pytestmark = [pytest.mark.reliability, pytest.mark.slow]

EPOCHS = 200
WAIT_S = 600  # the longest wait for a state: other work may share the machine


def _workers_of(run: subprocess.Popen[str]) -> list[int]:
    """The process ids of ``run``'s ``dynl2 worker`` children."""
    children = Path(f"/proc/{run.pid}/task/{run.pid}/children").read_text().split()
    out = []
    for pid in children:
        with contextlib.suppress(FileNotFoundError):
            if b"worker" in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0"):
                out.append(int(pid))
    return out


def _running_whole(url: str, experiment: str, searched: Callable[[str], object]) -> int:
    frame = trials(url, experiment)
    return int(((frame["state"] == "RUNNING") & whole(frame, searched)).sum())


def _training(url: str, experiment: str, searched: Callable[[str], object]) -> set[int]:
    """Process ids of the workers (this machine's) training a RUNNING trial that has all its
    parameters, from the trials' ``dynl2_worker`` attribute (``HOST:PID``)."""
    frame = trials(url, experiment)
    running = frame[(frame["state"] == "RUNNING") & whole(frame, searched)]
    if running.empty:
        return set()
    engine = sa.create_engine(url, poolclass=sa.NullPool)
    try:
        with engine.connect() as connection:
            rows = connection.execute(
                sa.text(
                    "SELECT value_json FROM trial_user_attributes WHERE key = 'dynl2_worker' "
                    "AND trial_id IN (" + ", ".join(str(int(t)) for t in running["trial_id"]) + ")"
                )
            ).scalars()
            identities = [json.loads(value) for value in rows]
    finally:
        engine.dispose()
    host = socket.gethostname()
    return {int(i.rsplit(":", 1)[1]) for i in identities if i.rsplit(":", 1)[0] == host}


def _ended(run: subprocess.Popen[str]) -> bool:
    return run.poll() is not None or len(_workers_of(run)) == 0


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_run_with_four_workers_loses_three_of_them(backend, tmp_path):
    """``dynl2 run --workers 4``; one worker after another is killed with SIGKILL at a random
    moment while every worker still alive is training a trial, three times. The last worker
    retries what the others left and the run finishes by itself: exact counts, and every
    killed trial retried once."""
    n_trials, epochs = 8, 100  # enough trials that three kills land before the search ends
    config = write_config(tmp_path, "four", epochs=epochs, n_trials=n_trials)
    searched = load_experiment(config).searched
    rng = random.Random(20261127)
    with empty_url(backend, tmp_path) as url:
        argv = ["run", str(config), "--workers", "4", "--batch", "1", "--quiet", "--storage", url]
        run = spawn(argv, group=True, DYNL2_HEARTBEAT="1,2")
        wait_until(lambda: len(_workers_of(run)) == 4, 60, "4 workers")
        alive = _workers_of(run)
        for _ in range(3):
            # a worker alive holds a trial with all its parameters (a claim takes one:
            # --batch 1; the next test kills a worker that trains a fused group). The victim is
            # one such worker, known by the trial's dynl2_worker attribute: waiting for every
            # worker to hold one let three fast workers use up the budget while a fourth was
            # still importing on a busy machine.
            wait_until(
                lambda: bool(_training(url, "four", searched) & set(alive)) or _ended(run),
                WAIT_S,
                "a worker in a trial",
            )
            assert not _ended(run), "the search ended before the three kills"
            time.sleep(rng.uniform(0.0, 0.5))  # a random point of that trial
            training = sorted(_training(url, "four", searched) & set(alive))
            victim = rng.choice(training or alive)  # it may just have finished: another claim
            os.kill(victim, signal.SIGKILL)
            alive.remove(victim)
            # No wait for the victim's trial to go stale: the next victim is chosen among the
            # workers still alive, and waiting (up to the grace period and more on a busy
            # machine, three times) let the survivors use up the budget before the third kill.
        code, _, err = finish(run, 300)
        assert code == 0, err
        assert "Traceback" not in err
        frame = assert_exact_results(url, "four", n_trials, epochs)
    assert retried_once(frame, searched) >= 2  # kills that caught a trial in training


def test_a_fused_worker_killed_on_postgresql(tmp_path):
    """A worker training a fused group of two dies: both of its trials are retried, once each,
    by the other worker (whose next claim pops them first), on the PostgreSQL server."""
    with empty_url("postgresql", tmp_path) as url:
        n_trials = 4
        create_experiment(url, write_config(tmp_path, "fz", epochs=EPOCHS, n_trials=n_trials),
                          Heartbeat(1, 2))  # fmt: skip
        env = {"DYNL2_HEARTBEAT": "1,2"}
        victim = start_worker("fz", url, 0, batch=2, **env)
        searched = load_experiment(tmp_path / "fz.toml")

        # the group of two, early enough in its training that it cannot end before the kill
        wait_until(lambda: early_in_flight(url, 2, EPOCHS) >= 2, 90, "a fused group in flight")
        victim.send_signal(signal.SIGKILL)
        victim.communicate(timeout=30)
        assert victim.returncode == -signal.SIGKILL
        survivor = start_worker("fz", url, 1, batch=2, **env)
        code, _, err = finish(survivor, 240)
        assert code == 0, err
        frame = assert_exact_results(url, "fz", n_trials, EPOCHS)
    lost = frame[(frame["state"] == "FAIL") & whole(frame, searched.searched)]
    assert len(lost) >= 2  # the group the victim was training
    for _, dead in lost.iterrows():  # each retried once, with the same parameters, and completed
        same = frame[(frame["arm"] == dead["arm"]) & frame["params"].map(dead["params"].__eq__)]
        assert len(same) == 2 and (same["state"] == "COMPLETE").sum() == 1


@pytest.mark.filterwarnings("ignore:Heartbeat of storage:UserWarning")
def test_a_worker_killed_between_its_claim_and_first_heartbeat(tmp_path):
    """The narrowest window: a trial asked for, its worker dead before writing the first
    heartbeat. Optuna never declares such a trial stale; the next worker must still retry it
    (the arm would otherwise wait for it forever)."""
    config = load_experiment(write_config(tmp_path, "orphan", epochs=2, n_trials=1))
    with storage.open(f"sqlite:///{tmp_path / 'orphan.db'}") as store:
        store.create_experiment(config.name, config.to_dict())
        studies = open_studies(store, config, Heartbeat(1, 2))
        orphan = studies[("fixed", 1)].ask(distributions(config, "fixed"))  # and then it died
        done: list[object] = []
        thread = threading.Thread(
            target=lambda: done.append(run_worker(store, config, Heartbeat(1, 2), poll=0.2)),
            daemon=True,
        )
        thread.start()
        thread.join(60)
        assert done, "the worker waited for the orphaned trial forever"
        frame = store.trials("orphan")
    fixed = frame[frame["arm"] == "fixed"].set_index("number")
    assert fixed.loc[orphan.number, "state"] == "FAIL"  # failed once its adopted beat lapsed
    retry = fixed[fixed["state"] == "COMPLETE"]
    assert len(retry) == 1 and retry.iloc[0]["params"] == orphan.params
    assert_exact_results(f"sqlite:///{tmp_path / 'orphan.db'}", "orphan", 1, 2)
