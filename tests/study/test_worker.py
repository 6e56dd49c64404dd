"""Worker edge cases, in process: a claim is never left without a heartbeat, and a trial taken
away (declared stale) mid-training is abandoned instead of crashing the worker."""

from __future__ import annotations

import time

import optuna
import pytest
from optuna.trial import TrialState

import storage
from study.config.experiment import load_experiment
from study.search import fused as fused_trials
from study.search import trials
from study.search import worker as worker_module
from study.search.keys import Heartbeat
from study.search.optuna_adapter import storage_of, trial_id_of
from study.search.studies import count, open_studies
from trainers import EpochRecord, TrainResult

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

    def fake_train_fused(configs, on_epoch, data, shared_order, on_ends, on_epochs):
        # Another worker declares the trial stale while this one trains it.
        storage_of(study).set_trial_state_values(trial_id_of(claim.trials[0]), TrialState.FAIL)
        record = EpochRecord(1, 1.0, 0.5, 1.0, 0.5, 0.0, 0.0, 0.0, 0.0, 1.0, 0.01)
        on_epochs([(0, record)])
        stopped = on_epoch[0](record)
        result = TrainResult(configs[0], (record,), 1.0, 0.5, 0.01, stopped, "cpu")
        on_ends([(0, result)])
        return [result]

    monkeypatch.setattr(fused_trials, "train_fused", fake_train_fused)
    outcomes = fused_trials.run_trials(store, config, claim.arm, study, claim.trials, lambda: None)
    assert outcomes == [trials.ABANDONED]
    assert study.get_trials()[0].state == TrialState.FAIL  # left as the other worker set it


def test_a_crashing_trial_is_failed_with_its_reason(setup, monkeypatch):
    store, config, studies = setup
    claim = worker_module._claim(store, config, studies)
    assert not isinstance(claim, str)

    def broken_train_fused(configs, **kwargs):
        raise RuntimeError("CUDA out of memory")

    monkeypatch.setattr(fused_trials, "train_fused", broken_train_fused)
    with pytest.raises(trials.WorkerFailed, match="out of memory"):
        fused_trials.run_trials(
            store, config, claim.arm, studies[claim.key], claim.trials, lambda: None
        )
    trial = studies[claim.key].get_trials()[0]
    assert trial.state == TrialState.FAIL
    assert "out of memory" in trial.user_attrs["fail_reason"]
    assert count(studies[claim.key], config.direction).lost == 1  # not a result
