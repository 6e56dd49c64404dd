"""Optuna samplers and pruners built from an experiment's ``[search]`` section.

Every arm's study gets the same sampler kind and seed, so no arm is searched better than another.

A search's sampler (:func:`search_sampler`) draws the parameters of its k-th draw (its trials
counted without retries, :mod:`storage.draws`) from a sampler seeded with a hash of
(search seed, k), built afresh for that trial: whichever worker, group, machine or resumed run
asks for it, and however many trials a stop handed back before it, a sampler whose draws ignore
earlier results (random, and the start-up trials of TPE, GP and CMA-ES) draws the same point.
QMC is Optuna's own, with one seed for everyone: it numbers its points with a counter in the
study that advances once per new trial (a retry reuses its parameters and advances nothing),
under the claim lock, so in the order of draws.

What a model-based sampler proposes after its start-up depends on which trials have finished
when it is asked. With ``[search] reproducible`` (TPE; random and QMC need no history) draw k
sees a fixed history instead (:class:`History`): the draws k - lag or lower as they ended,
those in between as still running; the worker's claim waits until the draws k - lag or lower
have ended (:func:`reproducible_lag`). The median pruner judges draw k against the same
history, so whether a trial is pruned is a function of its draw too.
"""

from __future__ import annotations

import hashlib
import math
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import optuna
from optuna.distributions import BaseDistribution
from optuna.exceptions import ExperimentalWarning
from optuna.samplers import BaseSampler
from optuna.trial import FrozenTrial, TrialState

from storage import draws_of
from study.config.search import SearchConfig
from study.search.optuna_adapter import History, trials_seen

LAG_CAP = 32  # the most trials in flight per search that reproducible = true allows by default
LAG_ROUNDS = 4  # ... and no more than n_trials / this, as the CPU's default group size


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


def search_sampler(search: SearchConfig, seed: int) -> BaseSampler:
    """The sampler of one search (an arm's replicate) seeded with ``seed``: trial k's draws are
    a function of (``seed``, k), and with ``search.reproducible`` so is its history."""
    if search.sampler == "qmc":
        return make_sampler(search, seed)  # indexed by trial already (see the module's doc)
    lag = reproducible_lag(search) if search.reproducible else None
    return TrialSeeded(lambda s: make_sampler(search, s), seed, lag)


def reproducible_lag(search: SearchConfig) -> int:
    """With ``reproducible``: trial k sees the results of trials numbered k - lag or lower, and
    at most ``lag`` trials of a search train at once. ``[search] batch`` when given, else the
    CPU's default group size (n_trials / 4, at most 32): never ``--batch`` nor the device, so
    that the history of trial k is the same on every machine."""
    return search.batch or max(1, min(LAG_CAP, math.ceil(search.n_trials / LAG_ROUNDS)))


def trial_draw_seed(seed: int, draw: int) -> int:
    """The seed of the sampler that draws the ``draw``-th trial (:mod:`storage.draws`)
    of a search seeded with ``seed``."""
    digest = hashlib.sha256(f"dynl2-trial:{seed}:{draw}".encode()).digest()
    return int.from_bytes(digest[:4], "big") % 2**31


class TrialSeeded(BaseSampler):
    """The parameters of draw k drawn by ``build(trial_draw_seed(seed, k))``, a sampler made
    for that trial alone (cheap: Optuna's samplers keep nothing a fresh one would miss but
    caches), through :class:`History` when ``lag`` is given. A trial's draw is read from the
    trials its sampler sees (:func:`trials_seen`). Optuna asks one trial at a time, in one
    thread (the claim lock), so one sampler is kept: the latest trial's."""

    def __init__(self, build: Callable[[int], BaseSampler], seed: int, lag: int | None) -> None:
        self._build = build
        self._seed = seed
        self._lag = lag
        self._number: int | None = None
        self._inner: BaseSampler | None = None
        self._seen: History | None = None

    def _of(self, study: optuna.Study, trial: FrozenTrial) -> tuple[BaseSampler, optuna.Study]:
        """The sampler of ``trial``, and the study as it sees it."""
        if self._inner is None or self._number != trial.number:
            self._number = trial.number
            draw = draws_of(trials_seen(study), [trial.number])[0]
            self._inner = self._build(trial_draw_seed(self._seed, draw))
            self._seen = None
            if self._lag is not None:
                self._seen = History(study, trial.number, self._lag)
        seen = self._seen if self._seen is not None else study
        return self._inner, seen  # type: ignore[return-value]

    def infer_relative_search_space(
        self, study: optuna.Study, trial: FrozenTrial
    ) -> dict[str, BaseDistribution]:
        inner, seen = self._of(study, trial)
        return inner.infer_relative_search_space(seen, trial)

    def sample_relative(
        self, study: optuna.Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        inner, seen = self._of(study, trial)
        return inner.sample_relative(seen, trial, search_space)

    def sample_independent(
        self,
        study: optuna.Study,
        trial: FrozenTrial,
        param_name: str,
        param_distribution: BaseDistribution,
    ) -> Any:
        inner, seen = self._of(study, trial)
        return inner.sample_independent(seen, trial, param_name, param_distribution)

    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        inner, seen = self._of(study, trial)
        inner.before_trial(seen, trial)

    def after_trial(
        self,
        study: optuna.Study,
        trial: FrozenTrial,
        state: TrialState,
        values: Sequence[float] | None,
    ) -> None:
        # Told by whichever worker trains the trial: its own sampler for it, not the latest
        # (any seed will do for one made here: Optuna's after_trial hooks draw nothing).
        if self._inner is not None and self._number == trial.number:
            self._inner.after_trial(study, trial, state, values)
        else:
            self._build(trial_draw_seed(self._seed, trial.number)).after_trial(
                study, trial, state, values
            )

    def reseed_rng(self) -> None:
        """Nothing to reseed: every trial's sampler is seeded from its number."""


class LaggedMedianPruner(optuna.pruners.MedianPruner):
    """Optuna's median pruner judging draw k against :class:`History`'s view of the study:
    the draws k - lag or lower, which had all ended when k was asked."""

    def __init__(self, lag: int, **settings: Any) -> None:
        super().__init__(**settings)
        self._lag = lag

    def prune(self, study: optuna.Study, trial: FrozenTrial) -> bool:
        seen = History(study, trial.number, self._lag)
        return super().prune(seen, trial)  # type: ignore[arg-type]


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
        settings: dict[str, Any] = {
            "n_startup_trials": MEDIAN_STARTUP,
            "n_warmup_steps": min(5, epochs // 5),
            "interval_steps": 1,
        }
        if search.reproducible:
            return LaggedMedianPruner(reproducible_lag(search), **settings)
        return optuna.pruners.MedianPruner(**settings)
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
