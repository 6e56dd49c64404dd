"""Worker edge cases, in process: a claim is never left without a heartbeat, and a trial taken
away (declared stale) mid-training is abandoned instead of crashing the worker."""

from __future__ import annotations

import time

import optuna
import pytest
from optuna.trial import TrialState

import storage
from study import worker as worker_module
from study.experiment import load_experiment
from study.studies import Heartbeat, count, open_studies
from trainers import EpochRecord
from trainers.loop import TrainResult

from .test_run_e2e import write_config


@pytest.fixture
def setup(tmp_path):
    config = load_experiment(write_config(tmp_path, name="w", n_trials=2))
    store = storage.open(f"sqlite:///{tmp_path / 'w.db'}")
    store.create_experiment(config.name, config.to_dict())
    studies = open_studies(store, config, Heartbeat(1, 2))
    yield store, config, studies
    store.close()


def test_a_claim_that_is_never_trained_goes_stale_and_is_queued_again(setup):
    store, config, studies = setup
    claim = worker_module._claim(store, config, studies)
    assert not isinstance(claim, str)
    # The claiming "worker" died before training: no further heartbeat. The grace is 2 s, but
    # SQLite's CURRENT_TIMESTAMP has 1 s resolution, so when the trial turns stale varies by up
    # to a second: poll until a deadline instead of one fixed sleep.
    deadline = time.monotonic() + 10
    while True:
        with worker_module._quiet_optuna():
            optuna.storages.fail_stale_trials(studies[claim.key])
        counts = count(studies[claim.key], config.direction)
        if counts.running == 0 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert counts.lost == 1 and counts.running == 0
    assert counts.waiting == 1  # the retry, with the same parameters
    waiting = studies[claim.key].get_trials(states=(TrialState.WAITING,))[0]
    assert waiting.params == claim.trials[0].params


def test_trial_taken_away_mid_training_is_abandoned(setup, monkeypatch):
    store, config, studies = setup
    claim = worker_module._claim(store, config, studies)
    assert not isinstance(claim, str)
    study = studies[claim.key]

    def fake_train(train_config, on_epoch, data):
        # Another worker declares the trial stale while this one trains it.
        study._storage.set_trial_state_values(claim.trials[0]._trial_id, state=TrialState.FAIL)
        record = EpochRecord(1, 1.0, 0.5, 1.0, 0.5, 0.0, 0.0, 0.0, 0.0, 1.0, 0.01)
        on_epoch(record)
        return TrainResult(train_config, (record,), 1.0, 0.5, 0.01, False, "cpu")

    monkeypatch.setattr(worker_module, "train", fake_train)
    outcome = worker_module.run_trial(
        store, config, claim.arm, study, claim.trials[0], lambda: None
    )
    assert outcome == worker_module.ABANDONED
    assert study.get_trials()[0].state == TrialState.FAIL  # left as the other worker set it


def test_a_crashing_trial_is_failed_with_its_reason(setup, monkeypatch):
    store, config, studies = setup
    claim = worker_module._claim(store, config, studies)
    assert not isinstance(claim, str)

    def broken_train(train_config, on_epoch, data):
        raise RuntimeError("CUDA out of memory")

    monkeypatch.setattr(worker_module, "train", broken_train)
    with pytest.raises(worker_module.WorkerFailed, match="out of memory"):
        worker_module.run_trial(
            store, config, claim.arm, studies[claim.key], claim.trials[0], lambda: None
        )
    trial = studies[claim.key].get_trials()[0]
    assert trial.state == TrialState.FAIL
    assert "out of memory" in trial.user_attrs["fail_reason"]
    assert count(studies[claim.key], config.direction).lost == 1  # not a result
