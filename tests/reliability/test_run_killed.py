"""Issue 6, item 2: the whole run killed (kill -9 of the process group: the ``dynl2 run`` parent
and its workers), once mid-search and once mid-evaluation, then started again: it finishes with
exactly ``n_trials`` results per arm, nothing RUNNING, nothing counted twice, and the evaluation
that was cut off is redone while the seeds already evaluated are kept as they were."""

from __future__ import annotations

import subprocess

import pytest

import storage
from study.config.experiment import load_experiment
from study.search.keys import Heartbeat
from study.search.studies import distributions, open_studies

from .helpers import (
    ARMS,
    assert_exact_results,
    early_in_flight,
    finish,
    kill_group,
    retried_once,
    spawn,
    trials,
    wait_until,
    write_config,
)

pytestmark = [pytest.mark.reliability, pytest.mark.slow]

EPOCHS, N_TRIALS, SEEDS = 200, 3, 3
ENV = {"DYNL2_HEARTBEAT": "1,2"}


def _start_run(config: str, url: str) -> subprocess.Popen[str]:
    # --batch 1: the evaluation trains each (arm, seed) alone, 6 runs in 3 rounds of 2, so the
    # kill in step 2 can land between rounds (the search claims one trial at a time anyway)
    argv = ["run", config, "--workers", "2", "--batch", "1", "--quiet", "--storage", url]
    return spawn(argv, group=True, **ENV)  # the run leads a group: it and its workers


def _evaluations(url: str) -> int:
    with storage.open(url, create=False) as store:
        return len(store.evaluations("killed"))


def test_a_run_killed_twice_finishes_exactly(tmp_path):
    config = str(write_config(tmp_path, "killed", epochs=EPOCHS, n_trials=N_TRIALS, seeds=SEEDS))
    url = f"sqlite:///{tmp_path / 'killed.db'}"
    searched = load_experiment(config).searched
    assert {len(searched(arm)) for arm in ARMS} == {2}  # lr and the arm's strength

    # 1. Kill everything mid-search: a trial done, others in flight.
    run = _start_run(config, url)

    def mid_search() -> bool:
        if run.poll() is not None:
            pytest.fail(f"the run ended before it could be killed: {run.communicate()}")
        if not (tmp_path / "killed.db").exists():
            return False
        frame = trials(url, "killed") if _has_experiment(url) else None
        if frame is None:
            return False
        # a trial in flight with all its parameters (its retry can be recognised afterwards),
        # early enough in its training that it cannot end before the kill
        return bool((frame["state"] == "COMPLETE").any()) and early_in_flight(url, 2, EPOCHS) >= 1

    wait_until(mid_search, 120, "a search with trials done and in flight")
    kill_group(run)
    frame = trials(url, "killed")
    assert (frame["state"] == "RUNNING").sum() >= 1  # the kill left trials behind
    total = len(ARMS) * SEEDS

    # 2. Start again, kill everything mid-evaluation: some seeds written, a round to go.
    run = _start_run(config, url)
    wait_until(
        lambda: run.poll() is not None or 1 <= _evaluations(url) <= total - 2,
        240,
        "the evaluation to start",
        every=0.05,
    )
    assert run.poll() is None, f"the run ended before it could be killed: {run.communicate()}"
    kill_group(run)
    with storage.open(url, create=False) as store:
        kept = store.evaluations("killed")
    assert 1 <= len(kept) < total
    assert_exact_results(url, "killed", N_TRIALS, EPOCHS)  # the search was already whole

    # 3. Start again: it finishes.
    code, _, err = finish(_start_run(config, url), 240)
    assert code == 0, err
    assert "Traceback" not in err
    frame = assert_exact_results(url, "killed", N_TRIALS, EPOCHS)
    # the trials the first kill cut off: failed, not counted, each retried once with the same
    # parameters; at least the one in flight with all its parameters
    assert retried_once(frame, searched) >= 1
    with storage.open(url, create=False) as store:
        evals = store.evaluations("killed")
    assert len(evals) == total
    assert not evals.duplicated(["arm", "seed"]).any()
    assert sorted(evals.groupby("arm").size().items()) == [(arm, SEEDS) for arm in ARMS]
    before = kept.set_index(["arm", "seed"])["created"]
    after = evals.set_index(["arm", "seed"])["created"]
    assert (after[before.index] == before).all()  # seeds written before the kill: not redone


def _has_experiment(url: str) -> bool:
    try:
        with storage.open(url, create=False) as store:
            store.get_experiment("killed")
    except storage.StorageError:
        return False
    return True


@pytest.mark.filterwarnings("ignore:Heartbeat of storage:UserWarning")
def test_a_restarted_worker_does_not_replay_its_draws(tmp_path):
    """What the kill test above first caught: worker 0 restarted with the same sampler seed
    drew the very parameters it had already tried, so one configuration was counted twice."""
    config = load_experiment(write_config(tmp_path, "replay", epochs=2, n_trials=4))
    with storage.open(f"sqlite:///{tmp_path / 'replay.db'}") as store:
        store.create_experiment(config.name, config.to_dict())
        drawn = []
        for _ in range(2):  # a first start, then a restart (new study objects, same --index)
            study = open_studies(store, config, Heartbeat())[("fixed", 1)]
            for _ in range(2):
                trial = study.ask(distributions(config, "fixed"))
                study.tell(trial, 0.5)
                drawn.append(tuple(sorted(trial.params.items())))
    assert len(set(drawn)) == 4, drawn
