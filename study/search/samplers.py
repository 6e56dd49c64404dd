"""Optuna samplers and pruners built from an experiment's ``[search]`` section.

Every arm's study gets the same sampler kind and seed, so no arm is searched better than another.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager

import optuna
from optuna.exceptions import ExperimentalWarning

from study.config.search import SearchConfig


def make_sampler(search: SearchConfig, seed: int | None) -> optuna.samplers.BaseSampler:
    """The sampler named by ``search.sampler``, seeded with ``seed`` (None: a fresh seed)."""
    name = search.sampler
    if name == "tpe":
        # multivariate: models the parameters jointly (lr and alpha interact: both scale the
        # step's weight decay), reported to beat independent TPE on single-objective problems.
        # constant_liar: trials still running count as bad guesses, so workers (and the K trials
        # of a fused batch) asking together do not all get the same point. Both are the
        # defaults in Optuna 5 but experimental (warning) in Optuna 4.
        with _experimental_ok():
            return optuna.samplers.TPESampler(seed=seed, multivariate=True, constant_liar=True)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "qmc":
        # Scrambled Sobol points: well spread for small budgets; scrambling makes the seed count.
        with _experimental_ok():
            return optuna.samplers.QMCSampler(seed=seed, scramble=True)
    if name == "cmaes":
        return optuna.samplers.CmaEsSampler(seed=seed)  # needs the `cmaes` package
    if name == "gp":
        with _experimental_ok():  # experimental in Optuna 4; needs torch and scipy
            return optuna.samplers.GPSampler(seed=seed)
    raise ValueError(f"`search.sampler` must be one of tpe, random, qmc, cmaes, gp, got {name!r}")


MEDIAN_STARTUP = 5  # complete trials before the median pruner prunes anything


def pruning_startup(search: SearchConfig) -> int:
    """Complete trials an arm needs before its pruner prunes at all (0: none needed).

    Fused groups respect it: trials started together cannot prune each other, so until an arm
    has this many complete trials its groups hold no more than are still missing."""
    return MEDIAN_STARTUP if search.pruner == "median" else 0


def make_pruner(search: SearchConfig, epochs: int) -> optuna.pruners.BasePruner:
    """The pruner named by ``search.pruner`` for trials that report once per epoch (step =
    epoch number) and train at most ``epochs`` epochs."""
    if epochs < 1:
        raise ValueError(f"`epochs` must be >= 1, but got {epochs}")
    name = search.pruner
    if name == "none":
        return optuna.pruners.NopPruner()
    if name == "median":
        # Five complete trials before any pruning: a median of fewer is mostly noise. No pruning
        # in the first epochs either, where curves of good and bad settings still cross; capped
        # at 5 and at a fifth of the run so short runs can be pruned at all.
        return optuna.pruners.MedianPruner(
            n_startup_trials=MEDIAN_STARTUP, n_warmup_steps=min(5, epochs // 5), interval_steps=1
        )
    if name == "hyperband":
        # Resources are epochs: the smallest rung is one epoch, the largest a full run.
        return optuna.pruners.HyperbandPruner(
            min_resource=1, max_resource=epochs, reduction_factor=3
        )
    raise ValueError(f"`search.pruner` must be one of none, median, hyperband, got {name!r}")


@contextmanager
def _experimental_ok() -> Iterator[None]:
    """Silence Optuna's ExperimentalWarning for one construction: we chose the feature."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExperimentalWarning)
        yield
