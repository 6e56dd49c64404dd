"""A worker's claimed group of trials of one arm, trained together (:mod:`trainers.fused`).

Optuna has no batch ask: the worker asks K trials in a row under the claim lock, trains them as
one stacked model, and tells each result as that member ends (a pruned member is told at the end
of its epoch, not when the group finishes). Each member is exactly the trial an unfused worker
would train (up to float rounding): its own initialization (its trainer seed), and the batch
order every search trial shares (:func:`studies.search_order_seed`, recorded as ``order_seed``
in its stored config, so ``dynl2 train`` replays any trial). So a trial's result does not depend
on which trials share its group, and trial k of every arm shares its initialization and batch
order (common random numbers across arms).

How many trials a group holds (``[search] batch``, ``--batch``) trades speed for search quality:
the sampler proposes a whole group before it hears any of its results. :func:`default_batch`
picks it per device from ``bench/throughput.py``'s measurements (docs/trainer.md).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Container, Sequence
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from storage import Store
from study.config.experiment import ExperimentConfig
from study.search import signals
from study.search.keys import CONFIG_ATTR
from study.search.optuna_adapter import (
    latest_trial,
    report_many,
    set_user_attrs_many,
    trial_id_of,
)
from study.search.resilience import DatabaseAway, retrying
from study.search.studies import search_order_seed, trial_seed
from study.search.trials import ABANDONED, conclude_many, fail_trial, metric_of
from trainers import (
    PER_MEMBER,
    Dataset,
    DivergenceError,
    EpochRecord,
    FusedOutcome,
    TrainResult,
    fuse_problem,
    scheme_parameters,
    train_fused,
)

# The largest group dynl2 forms by itself, per device type. CPU: bench/throughput.py measures
# trials per minute highest near K = 32 on 2 cores and none higher up to 128, so a larger group
# would only delay the sampler's feedback. GPU: not measured yet; set higher since a GPU's
# products gain from size.
DEVICE_BATCH = {"cpu": 32, "cuda": 128, "mps": 32}
MIN_ROUNDS = 4  # the default leaves the sampler at least this many rounds of feedback per arm


def default_batch(device_type: str, n_trials: int) -> int:
    """The group size when neither ``[search] batch`` nor ``--batch`` gives one: the device's
    cap, but no more than ``n_trials / MIN_ROUNDS`` so TPE still learns between groups."""
    cap = DEVICE_BATCH.get(device_type, 1)
    return max(1, min(cap, math.ceil(n_trials / MIN_ROUNDS)))


def group_sizes(
    config: ExperimentConfig,
    device_type: str,
    batch: int | None,
    note: Callable[[str], None] | None = None,
) -> dict[str, int]:
    """How many trials a claim takes per searched arm: ``batch`` (``--batch``), else
    ``[search] batch``, else :func:`default_batch`; 1 for an arm that cannot fuse (said once
    through ``note``)."""
    size = batch or config.search.batch or default_batch(device_type, config.search.n_trials)
    if config.train_fixed.get("loop"):
        size = 1  # a user's own loop trains one trial at a time (trainers.custom)
    sizes = {}
    for arm in config.arms:
        if not config.searched(arm.name):
            continue
        problem = unfusable(config, arm.name) if size > 1 else None
        if problem is not None and note is not None:
            note(problem)
        sizes[arm.name] = 1 if problem is not None else size
    return sizes


def unfusable(config: ExperimentConfig, arm: str) -> str | None:
    """Why ``arm``'s trials cannot share a group (it searches a setting every member of a group
    must share, such as ``epochs`` or ``batch_size``), or None."""
    scheme = config.arm(arm).scheme
    own = set(PER_MEMBER) | set(scheme_parameters(scheme))
    shared = sorted(set(config.searched(arm)) - own)
    if shared:
        return (
            f"arm {arm!r} searches {', '.join(shared)}, which the trials of a fused group must "
            "share; its trials train one at a time"
        )
    return None


def run_trials(
    store: Store,
    config: ExperimentConfig,
    arm: str,
    study: optuna.Study,
    trials: Sequence[optuna.trial.Trial],
    dataset: Callable[[], Dataset],
    note: Callable[[str], None] | None = None,
    draws: Sequence[int] | None = None,
) -> list[str]:
    """Train ``trials`` (of ``arm``) together in the one training engine (a group of one
    too), each with the trainer seed of its draw (``draws``, :mod:`storage.draws`;
    default: its number, as in a search without retries); returns each one's outcome, in
    order: "complete", "pruned", "diverged", or :data:`trials.ABANDONED` when another worker
    declared the trial stale meanwhile (its retry belongs to whoever picks it up). Any other
    failure marks the trials that had not ended FAIL with its reason and raises
    :class:`trials.WorkerFailed`."""
    data = dataset
    shared_order = search_order_seed(config)
    drawn = [t.number for t in trials] if draws is None else list(draws)
    try:
        configs = [
            config.train_config(arm, t.params, trial_seed(config, draw)).with_(
                order_seed=shared_order
            )
            for t, draw in zip(trials, drawn, strict=True)
        ]
    except Exception as exc:
        errors = [fail_trial(arm, study, t, exc) for t in trials]
        raise errors[0] from exc
    problem = fuse_problem(configs)
    if problem is not None:  # a safety net: unfusable() keeps such arms at one trial a group
        if note is not None:
            note(f"arm {arm!r}: {problem}; training its {len(trials)} trials one at a time")
        return [
            outcome
            for t, draw in zip(trials, drawn, strict=True)
            for outcome in run_trials(store, config, arm, study, [t], data, note, [draw])
        ]
    as_attrs = [
        (trial, {CONFIG_ATTR: c.to_dict()}) for trial, c in zip(trials, configs, strict=True)
    ]
    retrying(lambda: set_user_attrs_many(study, as_attrs), "recording the trials' configs")
    group = _Group(store, config, study, trials)
    try:
        train_fused(
            configs,
            on_epoch=[group.on_epoch(k) for k in range(len(trials))],
            data=data(),
            shared_order=shared_order,
            on_ends=group.on_ends,
            on_epochs=group.report,
            **({"note": note} if note is not None else {}),  # told only when someone listens
        )
    except DatabaseAway:
        raise  # not the trials' fault: they stay RUNNING, go stale and are retried
    except Exception as exc:
        errors = [
            fail_trial(arm, study, t, exc) for k, t in enumerate(trials) if k not in group.ended
        ]
        raise (errors[0] if errors else exc) from exc
    return [group.ended[k] for k in range(len(trials))]


class _Group:
    """The per-member callbacks of one fused group: report, prune, conclude."""

    def __init__(
        self,
        store: Store,
        config: ExperimentConfig,
        study: optuna.Study,
        trials: Sequence[optuna.trial.Trial],
    ) -> None:
        self.store = store
        self.config = config
        self.study = study
        self.trials = trials
        self.epochs: list[list[EpochRecord]] = [[] for _ in trials]
        self.taken_away: set[int] = set()
        self.ended: dict[int, str] = {}
        self._snapshot: _Snapshot | None = None

    def report(self, records: Sequence[tuple[int, EpochRecord]]) -> None:
        """Report one epoch of every member still training, in one transaction. Each epoch is
        also a safe point for a stop whose first raise was lost (a signal that landed in a
        garbage-collection callback, which Python drops): the group stops within an epoch, its
        trials handed back, instead of training to its end (:func:`signals.check`)."""
        signals.check()
        metric = self.config.search.metric
        reports = []
        for k, record in records:
            self.epochs[k].append(record)
            if k not in self.taken_away:
                reports.append((self.trials[k], record.epoch, metric_of(record, metric)))
        finished = retrying(lambda: report_many(self.study, reports), "reporting an epoch")
        for k, trial in enumerate(self.trials):
            if trial_id_of(trial) in finished:
                self.taken_away.add(k)  # declared stale meanwhile: stop this member alone

    def on_epoch(self, k: int) -> Callable[[EpochRecord], bool]:
        trial = self.trials[k]

        def decide(record: EpochRecord) -> bool:
            if k in self.taken_away:
                return True
            return bool(retrying(lambda: self.should_prune(trial, record.epoch), "pruning"))

        return decide

    def should_prune(self, trial: optuna.trial.Trial, epoch: int) -> bool:
        """``trial.should_prune()``, with the study read once per epoch for the whole group.

        Asked member by member, every call would read all the study's unfinished trials from
        the database: K reads an epoch, each of K running trials (measured: a 64-trial study in
        groups of 16 spent more time in the pruner than in training). A percentile (median)
        pruner compares a trial only with COMPLETE ones, which one snapshot per epoch holds;
        the trial itself is its own up-to-date local copy, as in ``Trial.should_prune``. Other
        pruners keep Optuna's own call; no pruner needs no call.
        """
        pruner = self.study.pruner
        if isinstance(pruner, optuna.pruners.NopPruner):
            return False
        if not isinstance(pruner, optuna.pruners.PercentilePruner):
            return trial.should_prune()
        if self._snapshot is None or self._snapshot.epoch != epoch:
            self._snapshot = _Snapshot(self.study, epoch)
        latest = latest_trial(trial)  # what Trial.should_prune hands the pruner
        return pruner.prune(self._snapshot, latest)  # type: ignore[arg-type]

    def on_ends(self, ended: Sequence[tuple[int, FusedOutcome]]) -> None:
        """Conclude the members that ended together (see :func:`trials.conclude_many`)."""
        mine = []
        for k, outcome in ended:
            if k in self.taken_away:
                self.ended[k] = ABANDONED
            else:
                assert isinstance(outcome, TrainResult | DivergenceError)
                mine.append((k, outcome))
        told = conclude_many(
            self.store,
            self.config,
            self.study,
            [(self.trials[k], self.epochs[k], outcome) for k, outcome in mine],
        )
        for (k, _), result in zip(mine, told, strict=True):
            self.ended[k] = result


class _Snapshot:
    """A study's trials as read once (for a pruner's decisions within one epoch); everything
    else is the study's own."""

    def __init__(self, study: optuna.Study, epoch: int) -> None:
        self.epoch = epoch
        self._study = study
        self._trials = study.get_trials(deepcopy=False)

    def get_trials(
        self, deepcopy: bool = True, states: Container[TrialState] | None = None
    ) -> list[FrozenTrial]:
        trials = [t for t in self._trials if states is None or t.state in states]
        return copy.deepcopy(trials) if deepcopy else trials

    def __getattr__(self, name: str) -> Any:
        return getattr(self._study, name)
