"""The run's progress counts: one grouped SQL query that must agree with counting Optuna's
trials one by one (:func:`study.search.studies.count`), on SQLite and PostgreSQL."""

from __future__ import annotations

import math
import warnings

import optuna
import pytest
from optuna.trial import TrialState

import storage
from study.config.experiment import load_experiment
from study.run.progress import arm_counts
from study.search.keys import DIVERGED, RESULT_ATTR, ArmCounts, Heartbeat
from study.search.studies import count, distributions, open_studies
from tests.storage.backends import BACKENDS, empty_url

from .test_run_e2e import write_config


def _fill(study: optuna.Study, dists: dict, values: list[float]) -> None:  # type: ignore[type-arg]
    def ask() -> optuna.trial.Trial:
        return study.ask(dists)

    for value in values:
        trial = ask()
        trial.set_user_attr(RESULT_ATTR, "complete")
        study.tell(trial, value)
    pruned = ask()
    pruned.report(0.1, 1)
    study.tell(pruned, state=TrialState.PRUNED)
    for _ in range(2):
        diverged = ask()
        diverged.set_user_attr(RESULT_ATTR, DIVERGED)
        study.tell(diverged, state=TrialState.FAIL)
    study.tell(ask(), state=TrialState.FAIL)  # lost: no result attribute
    ask()  # running
    ask()
    study.enqueue_trial({})  # waiting


@pytest.mark.parametrize("backend", BACKENDS)
def test_counts_agree_with_optuna_s_trials(backend, tmp_path):
    config = load_experiment(write_config(tmp_path, name="tally"))
    with empty_url(backend, tmp_path) as url, storage.open(url) as store:
        store.create_experiment(config.name, config.to_dict())
        assert set(arm_counts(store, config).values()) == {ArmCounts(0, 0, 0, 0, 0, 0, None)}
        studies = open_studies(store, config, Heartbeat())
        arms = sorted(arm for arm, _ in studies)  # one replicate: keys (arm, 1)
        assert len(arms) >= 2
        with warnings.catch_warnings():  # Optuna: heartbeats are meant for optimize()
            warnings.simplefilter("ignore", UserWarning)
            _fill(studies[(arms[0], 1)], distributions(config, arms[0]), [0.25, 0.75, 0.5])
            _fill(studies[(arms[1], 1)], distributions(config, arms[1]), [0.5, math.inf])
        counts = arm_counts(store, config)
        expected = {arm: count(study, config.direction) for (arm, _), study in studies.items()}
        assert counts == expected
        first = counts[arms[0]]
        assert (first.complete, first.pruned, first.diverged, first.lost) == (3, 1, 2, 1)
        assert (first.running, first.waiting) == (2, 1)
        want = max if config.direction == "maximize" else min
        assert first.best == want(0.25, 0.75, 0.5)
        assert counts[arms[1]].best == want(0.5, math.inf)
        store.optuna_storage().engine.dispose()
