"""Samplers and pruners from ``[search]``: each one builds, drives a study, and is reproducible."""

from __future__ import annotations

import warnings

import optuna
import pytest

from study.config.experiment import SAMPLERS, SearchConfig
from study.search.samplers import make_pruner, make_sampler

SAMPLER_TYPES = {
    "tpe": optuna.samplers.TPESampler,
    "random": optuna.samplers.RandomSampler,
    "qmc": optuna.samplers.QMCSampler,
    "cmaes": optuna.samplers.CmaEsSampler,
    "gp": optuna.samplers.GPSampler,
}


@pytest.fixture(autouse=True)
def _quiet_optuna():
    level = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    yield
    optuna.logging.set_verbosity(level)


def _objective(trial: optuna.Trial) -> float:
    # Shaped like an arm's search space: a log-scaled float, a plain float, a log-scaled int.
    lr = trial.suggest_float("lr", 1e-3, 3e-2, log=True)
    alpha = trial.suggest_float("alpha", 0.0, 1.0)
    width = trial.suggest_int("batch_size", 16, 256, log=True)
    return (lr - 1e-2) ** 2 + (alpha - 0.3) ** 2 + width / 1e4


def _first_params(sampler_name: str, seed: int, n: int = 3) -> list[dict[str, object]]:
    sampler = make_sampler(SearchConfig(sampler=sampler_name), seed)
    study = optuna.create_study(sampler=sampler)  # in memory
    study.optimize(_objective, n_trials=n)
    return [t.params for t in study.trials]


def test_every_configured_sampler_is_covered():
    assert set(SAMPLER_TYPES) == set(SAMPLERS)


@pytest.mark.parametrize("name", SAMPLERS)
def test_sampler_builds_and_drives_trials(name):
    sampler = make_sampler(SearchConfig(sampler=name), seed=0)
    assert isinstance(sampler, SAMPLER_TYPES[name])
    study = optuna.create_study(direction="minimize", sampler=sampler)
    study.optimize(_objective, n_trials=3)
    trials = study.trials
    assert [t.state for t in trials] == [optuna.trial.TrialState.COMPLETE] * 3
    for t in trials:
        assert 1e-3 <= t.params["lr"] <= 3e-2
        assert 0.0 <= t.params["alpha"] <= 1.0
        assert isinstance(t.params["batch_size"], int) and 16 <= t.params["batch_size"] <= 256


@pytest.mark.parametrize("name", SAMPLERS)
def test_same_seed_same_suggestions(name):
    first = _first_params(name, seed=123)
    assert first == _first_params(name, seed=123)
    assert len({tuple(sorted(p.items())) for p in first}) == 3  # three distinct points


@pytest.mark.parametrize("name", ["tpe", "random", "qmc"])
def test_other_seed_other_suggestions(name):
    assert _first_params(name, seed=1) != _first_params(name, seed=2)


def test_tpe_settings():
    sampler = make_sampler(SearchConfig(sampler="tpe"), seed=0)
    assert sampler._multivariate is True  # type: ignore[attr-defined]
    assert sampler._constant_liar is True  # type: ignore[attr-defined]


@pytest.mark.parametrize("name", ["tpe", "qmc", "gp"])
def test_no_experimental_warning(name):
    with warnings.catch_warnings():
        warnings.simplefilter("error", optuna.exceptions.ExperimentalWarning)
        make_sampler(SearchConfig(sampler=name), seed=0)


def _report_curves(study: optuna.Study, finals: list[float], epochs: int) -> None:
    """One trial per final value; each reports a rising curve ending at it, pruned or not."""
    for final in finals:
        trial = study.ask()
        pruned = False
        for epoch in range(1, epochs + 1):
            trial.report(final * epoch / epochs, epoch)
            if trial.should_prune():
                pruned = True
                break
        if pruned:
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        else:
            study.tell(trial, final)


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("none", optuna.pruners.NopPruner),
        ("median", optuna.pruners.MedianPruner),
        ("hyperband", optuna.pruners.HyperbandPruner),
    ],
)
def test_pruner_builds_and_drives_trials(name, kind):
    pruner = make_pruner(SearchConfig(pruner=name), epochs=10)
    assert isinstance(pruner, kind)
    study = optuna.create_study(direction="maximize", pruner=pruner)
    _report_curves(study, [0.5, 0.7, 0.6], epochs=10)
    assert len(study.trials) == 3
    assert all(t.state.is_finished() for t in study.trials)


def test_median_pruner_prunes_a_bad_trial_after_warmup():
    pruner = make_pruner(SearchConfig(pruner="median"), epochs=10)
    study = optuna.create_study(direction="maximize", pruner=pruner)
    _report_curves(study, [0.8, 0.9, 0.85, 0.7, 0.75], epochs=10)  # five startup trials
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)
    _report_curves(study, [0.1], epochs=10)
    bad = study.trials[-1]
    assert bad.state == optuna.trial.TrialState.PRUNED
    assert bad.last_step == 2  # warm-up: min(5, 10 // 5) = 2 steps; pruned at the first check


def test_nop_pruner_never_prunes():
    study = optuna.create_study(
        direction="maximize", pruner=make_pruner(SearchConfig(pruner="none"), 10)
    )
    _report_curves(study, [0.8, 0.9, 0.85, 0.7, 0.75, 0.01], epochs=10)
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)


@pytest.mark.parametrize("epochs", [1, 3, 150])
def test_pruner_limits_follow_epochs(epochs):
    median = make_pruner(SearchConfig(pruner="median"), epochs)
    assert median._n_warmup_steps == min(5, epochs // 5)  # type: ignore[attr-defined]
    hyperband = make_pruner(SearchConfig(pruner="hyperband"), epochs)
    assert hyperband._max_resource == epochs  # type: ignore[attr-defined]
    study = optuna.create_study(direction="maximize", pruner=hyperband)
    _report_curves(study, [0.5, 0.6, 0.4], epochs=epochs)
    assert all(t.state.is_finished() for t in study.trials)


def test_pruner_needs_an_epoch():
    with pytest.raises(ValueError, match="`epochs` must be >= 1"):
        make_pruner(SearchConfig(), epochs=0)
