"""Issue 6, item 1: worker processes killed with SIGKILL in the middle of their trials while
another keeps going. The killed trials turn FAIL once their heartbeat lapses, each is retried
once with the same parameters, and every arm still ends with exactly ``n_trials`` results:
nothing lost, nothing counted twice, nothing left RUNNING.

(``tests/study/test_run_e2e.py`` kills one worker and then starts a rescuer; here two of three
die at once and the survivor, already running, picks up their trials.)"""

from __future__ import annotations

import signal
import threading

import pytest

import storage
from study.experiment import load_experiment
from study.studies import Heartbeat, distributions, open_studies
from study.worker import run_worker
from tests.storage.backends import empty_url

from .helpers import (
    ARMS,
    assert_exact_results,
    create_experiment,
    early_in_flight,
    finish,
    start_worker,
    wait_until,
    write_config,
)

pytestmark = [pytest.mark.reliability, pytest.mark.slow]

EPOCHS, N_TRIALS = 200, 3  # 3 trials per arm: each claim takes one trial (no fused group)


def test_two_of_three_workers_killed_mid_trial(tmp_path):
    url = f"sqlite:///{tmp_path / 'killed.db'}"
    create_experiment(url, write_config(tmp_path, "wk", epochs=EPOCHS, n_trials=N_TRIALS),
                      Heartbeat(1, 2))  # fmt: skip
    env = {"DYNL2_HEARTBEAT": "1,2"}
    victims = [start_worker("wk", url, i, **env) for i in (0, 1)]
    survivor = start_worker("wk", url, 2, **env)
    searched = load_experiment(tmp_path / "wk.toml")

    assert {len(searched.searched(arm)) for arm in ARMS} == {2}  # lr and the arm's strength
    # Two trials early in flight with their parameters: the survivor holds at most one, so a
    # victim holds the other, and it cannot end before the kill.
    wait_until(lambda: early_in_flight(url, 2, EPOCHS) >= 2, 90, "2 trials")
    for victim in victims:
        victim.send_signal(signal.SIGKILL)
    for victim in victims:
        victim.communicate(timeout=30)
        assert victim.returncode == -signal.SIGKILL
    code, _, err = finish(survivor, 180)
    assert code == 0, err
    frame = assert_exact_results(url, "wk", N_TRIALS, EPOCHS)
    lost = frame[frame["state"] == "FAIL"]
    assert len(lost) >= 1  # the kills cut trials short
    retried = 0
    for _, dead in lost.iterrows():  # each retried once, with the same parameters
        if set(dead["params"]) != set(searched.searched(dead["arm"])):
            # Killed inside its claim, after Optuna created the trial but before all of its
            # parameters were written: there is nothing to repeat, and it is not counted.
            continue
        same = frame[(frame["arm"] == dead["arm"]) & frame["params"].map(dead["params"].__eq__)]
        assert len(same) == 2 and (same["state"] == "COMPLETE").sum() == 1
        retried += 1
    assert retried >= 1  # at least the trial a victim was training


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
    lost = frame[frame["state"] == "FAIL"]
    whole = [dead for _, dead in lost.iterrows()
             if set(dead["params"]) == set(searched.searched(dead["arm"]))]  # fmt: skip
    assert len(whole) >= 2  # the group the victim was training
    for dead in whole:  # each retried once, with the same parameters, and completed
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
        orphan = studies["fixed"].ask(distributions(config, "fixed"))  # and then it died
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
