"""A worker process: joins an experiment's studies and trains trials until every arm is done.

Each loop, under the experiment's claim lock (held only while asking, never while training):
fail stale trials (their retries become WAITING), pick the arm furthest from its budget, and ask
it for a trial only if its results plus trials in flight are still below ``n_trials``. So each arm
ends with exactly ``n_trials`` results however many workers join, die or restart. Nothing
home-made coordinates workers beyond that lock: the database does.
"""

from __future__ import annotations

import copy
import functools
import math
import os
import socket
import threading
import time
import traceback
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from typing import Literal

import optuna
from optuna.storages import fail_stale_trials
from optuna.trial import TrialState

from storage import Store
from trainers import (
    Dataset,
    DivergenceError,
    EpochRecord,
    TrainResult,
    data_from_dict,
    load_dataset,
    resolve_device,
    train,
)

from . import signals
from .errors import StudyError
from .experiment import ExperimentConfig
from .optuna_batch import Tell, ask_many, tell_many
from .resilience import DatabaseAway, retrying
from .samplers import pruning_startup
from .studies import (
    BEST_EPOCH_ATTR,
    CONFIG_ATTR,
    DIVERGED,
    REASON_ATTR,
    RESULT_ATTR,
    WORKER_ATTR,
    Heartbeat,
    SearchKey,
    adopt_silent_claims,
    count,
    distributions,
    label,
    open_studies,
    trial_seed,
)


class WorkerFailed(StudyError):
    """A trial failed for a reason other than divergence (a bug or a broken environment)."""


@dataclass
class WorkerSummary:
    trials: dict[str, int] = field(default_factory=dict)  # arm -> trials this worker finished

    @property
    def total(self) -> int:
        return sum(self.trials.values())


def metric_of(record: EpochRecord, metric: str) -> float:
    value = record.val_acc if metric == "val_acc" else record.val_loss
    if value is None:  # guarded by config validation: val_acc needs classification
        raise StudyError(f"metric {metric!r} is not reported for this dataset")
    return value


def run_worker(
    store: Store,
    config: ExperimentConfig,
    heartbeat: Heartbeat | None = None,
    on_trial: Callable[[str, int, str], None] | None = None,
    poll: float = 1.0,
    worker: int | None = 0,
    note: Callable[[str], None] | None = None,
    batch: int | None = None,
) -> WorkerSummary:
    """Train trials of ``config`` until every search (each searched arm, once per replicate)
    has ``n_trials`` results.

    ``worker`` (0, 1, ...) seeds this worker's samplers; see :func:`studies.sampler_seed`.
    Each claim takes up to ``batch`` trials of one arm and trains them fused (default:
    ``[search] batch``, else :func:`fused_trials.default_batch` for the device).
    A database that stops answering is waited for (see :mod:`study.resilience`); ``note``
    hears when it goes and comes back.
    """
    studies = retrying(
        lambda: open_studies(store, config, heartbeat or Heartbeat(), worker),
        "opening the studies",
        note=note,
    )
    from .fused_trials import group_sizes, run_trials  # they build on this module's trials

    summary = WorkerSummary()
    data: list[Dataset] = []  # loaded on the first claim, then reused for every trial
    device = resolve_device(str(config.train_fixed.get("device", "auto")))
    sizes = group_sizes(config, device.type, batch, note)

    def dataset() -> Dataset:
        if not data:
            data.append(load_dataset(data_from_dict(config.data), device))
        return data[0]

    while studies:
        signals.check()  # a stop whose raise was swallowed: stop before the next claim
        claimed: list[tuple[SearchKey, int]] = []  # (search, trial id) as each is made
        try:
            claim = retrying(
                functools.partial(_claim, store, config, studies, sizes, claimed),
                "claiming trials",
                note=note,
            )
            if claim == "done":
                return summary
            if claim == "wait":  # others still run the last trials; one may die and need a retry
                time.sleep(poll)
                continue
            study = studies[claim.key]
            _record_worker(study, claim.trials)
            with _heartbeat(study, [t._trial_id for t in claim.trials]):
                outcomes = run_trials(store, config, claim.arm, study, claim.trials, dataset, note)
        except KeyboardInterrupt:  # Ctrl-C or SIGTERM (study.signals), here or in the claim
            signals.stopping()
            hand_back(store, config, studies, claimed)
            raise
        name = label(config, claim.key)
        summary.trials[name] = summary.trials.get(name, 0) + len(claim.trials)
        if on_trial is not None:
            for trial, outcome in zip(claim.trials, outcomes, strict=True):
                on_trial(name, trial.number, outcome)
    return summary


def hand_back(
    store: Store,
    config: ExperimentConfig,
    studies: dict[SearchKey, optuna.Study],
    trials: Sequence[tuple[SearchKey, int]],
) -> list[int]:
    """Fail the trials (``(search, trial id)``) this worker claimed and was training when it was
    told to stop, and queue each one's retry, as Optuna does for a dead worker's trial once its
    heartbeat lapses (``fail_stale_trials``, under the same claim lock), but at once: the next
    worker or run trains them without waiting for the grace period. Trials that already ended
    (a fused group's pruned members, say) stay as they are. Returns the ids handed back.

    Best effort and quick: no retrying. A trial this cannot reach (the database away, the lock
    not had before the run kills this process) stays RUNNING; its heartbeat lapses and it is
    failed and retried all the same."""
    handed: list[int] = []
    if not trials:
        return handed
    with suppress(Exception), store.lock(f"claim:{config.name}"), _quiet_optuna():
        for key, trial_id in trials:
            with suppress(Exception):  # one that cannot be handed back keeps its heartbeat way
                if _fail_and_requeue(studies[key], trial_id):
                    handed.append(trial_id)
    return handed


def _fail_and_requeue(study: optuna.Study, trial_id: int) -> bool:
    storage = study._storage
    try:
        if not storage.set_trial_state_values(trial_id, state=TrialState.FAIL):
            return False
    except optuna.exceptions.UpdateFinishedTrialError:
        return False  # it ended before the stop
    get_retry = getattr(storage, "get_heartbeat_stale_trial_callback", None) or getattr(
        storage, "get_failed_trial_callback", None
    )  # optuna >= 4.9, and before (see studies.py)
    retry = get_retry() if get_retry is not None else None
    if retry is not None:
        retry(study, copy.deepcopy(storage.get_trial(trial_id)))
    return True


@dataclass(frozen=True)
class _Claim:
    key: SearchKey  # (arm, replicate)
    trials: tuple[optuna.trial.Trial, ...]

    @property
    def arm(self) -> str:
        return self.key[0]


def _claim(
    store: Store,
    config: ExperimentConfig,
    studies: dict[SearchKey, optuna.Study],
    sizes: dict[str, int] | None = None,
    claimed: list[tuple[SearchKey, int]] | None = None,
) -> _Claim | Literal["wait", "done"]:
    """Ask the search (an arm's replicate) furthest from its budget for up to ``sizes[arm]``
    trials (default 1), as many as it has free slots. Replicates progress at the same pace
    as arms do: a cut-short run leaves every search about as far along.

    The new trial's first heartbeat is written before the lock is released: Optuna never
    declares a RUNNING trial without any heartbeat stale, so a worker dying right after its
    claim would otherwise leave the trial RUNNING forever.
    """
    n = config.search.n_trials
    with store.lock(f"claim:{config.name}"), _quiet_optuna():
        pending = False
        best: tuple[float, SearchKey] | None = None
        by_key = {}
        for key, study in studies.items():
            fail_stale_trials(study)
            adopt_silent_claims(store, study)
            counts = by_key[key] = count(study, config.direction)
            if counts.results >= n:
                continue
            pending = True
            if counts.waiting == 0 and counts.results + counts.running >= n:
                continue  # all of its remaining slots are being trained right now
            progress = (counts.results + counts.running) / n
            if best is None or progress < best[0]:
                best = (progress, key)
        if best is None:
            return "wait" if pending else "done"
        key = best[1]
        arm = key[0]
        counts = by_key[key]  # as read under this lock: nothing has changed it since
        free = max(n - counts.results - counts.running, counts.waiting)
        size = (sizes or {}).get(arm, 1)
        startup = pruning_startup(config.search)
        if counts.complete < startup:  # the pruner's reference trials come first
            size = min(size, max(1, startup - counts.complete - counts.running))
        beat = studies[key]._storage.record_heartbeat  # type: ignore[attr-defined]

        def first_heartbeat(trial: optuna.trial.Trial) -> None:
            if claimed is not None:  # handed back if a stop comes before the claim returns
                claimed.append((key, trial._trial_id))
            # Retried on its own: retrying the whole claim would ask again and leave this
            # trial RUNNING without a heartbeat, which Optuna never declares stale.
            retrying(functools.partial(beat, trial._trial_id), "recording a heartbeat")

        trials = ask_many(
            studies[key],
            distributions(config, arm),
            max(1, min(size, free)),
            waiting=counts.waiting,
            then=first_heartbeat,
        )
    return _Claim(key, tuple(trials))


def _record_worker(study: optuna.Study, trials: Sequence[optuna.trial.Trial]) -> None:
    """Which worker trains each trial (a retried trial: the last to claim it), for users
    reading the store and for tests that must stop the worker of a given trial. Written after
    the claim, outside its lock: other workers' claims do not wait for it."""
    identity = _identity()
    for trial in trials:
        retrying(
            functools.partial(
                study._storage.set_trial_user_attr, trial._trial_id, WORKER_ATTR, identity
            ),
            "recording the trial's worker",
        )


def _identity() -> str:
    """``HOST:PID`` of this worker (asked each time: cheap, and right after a fork)."""
    return f"{socket.gethostname()}:{os.getpid()}"


class _TrialTakenAway(Exception):
    """The trial was declared stale (its heartbeat lapsed) while this worker trained it."""


ABANDONED = "abandoned"


def run_trial(
    store: Store,
    config: ExperimentConfig,
    arm: str,
    study: optuna.Study,
    trial: optuna.trial.Trial,
    dataset: Callable[[], Dataset],
) -> str:
    """Train one trial, report every epoch, record its epochs, tell the study.

    Returns "complete", "pruned", "diverged", or "abandoned" when another worker declared the
    trial stale meanwhile (its retry belongs to whoever picks it up; this run is dropped).
    Any other failure marks the trial FAIL with its reason and raises :class:`WorkerFailed`.
    """
    metric = config.search.metric
    epochs: list[EpochRecord] = []

    def on_epoch(record: EpochRecord) -> bool:
        epochs.append(record)
        try:
            retrying(
                lambda: trial.report(metric_of(record, metric), record.epoch),
                "reporting an epoch",
            )
        except optuna.exceptions.UpdateFinishedTrialError:
            raise _TrialTakenAway from None
        return retrying(trial.should_prune, "asking the pruner")

    try:
        train_config = config.train_config(arm, trial.params, trial_seed(config, trial.number))
        retrying(
            lambda: trial.set_user_attr(CONFIG_ATTR, train_config.to_dict()),
            "recording the trial's config",
        )
        outcome: TrainResult | DivergenceError
        try:
            outcome = train(train_config, on_epoch=on_epoch, data=dataset())
        except DivergenceError as exc:
            outcome = exc
        # Concluding is part of the trial, as in a fused group: a failure there (other than
        # the database staying away) marks it FAIL and says so, rather than leaving it RUNNING
        # and reaching the CLI as a bare library error.
        return conclude(store, config, study, trial, epochs, outcome)
    except (_TrialTakenAway, optuna.exceptions.UpdateFinishedTrialError):
        return ABANDONED
    except DatabaseAway:
        raise  # not the trial's fault: it stays RUNNING, goes stale and is retried
    except Exception as exc:
        raise fail_trial(arm, study, trial, exc) from exc


def conclude(
    store: Store,
    config: ExperimentConfig,
    study: optuna.Study,
    trial: optuna.trial.Trial,
    epochs: list[EpochRecord],
    outcome: TrainResult | DivergenceError,
) -> str:
    """Record how a trained trial ended (its epochs, result and value) and tell the study;
    returns "complete", "pruned", "diverged" or "abandoned" (see :func:`run_trial`)."""
    return conclude_many(store, config, study, [(trial, epochs, outcome)])[0]


Ended = tuple[optuna.trial.Trial, list[EpochRecord], TrainResult | DivergenceError]


def conclude_many(
    store: Store, config: ExperimentConfig, study: optuna.Study, ended: Sequence[Ended]
) -> list[str]:
    """:func:`conclude` for trials that ended together, in two transactions: their epochs,
    then their results with the tells, so a trial is never COMPLETE without its epoch rows.
    Each may run twice (see :mod:`study.resilience`): epochs are upserted, and a tell that finds
    its trial finished in the state it tells counts as told (by its own first try)."""
    tells: list[Tell] = []
    rows: dict[int, list[dict[str, float | int | None]]] = {}
    for trial, epochs, outcome in ended:
        tells.append((trial, *_ending(config, epochs, outcome)))
        rows[trial._trial_id] = [e.to_dict() for e in epochs]
    retrying(lambda: store.record_epochs_many(rows), "recording epochs")
    states = retrying(lambda: tell_many(study, tells), "telling")
    # finished meanwhile in another state: declared stale by another worker
    return [
        str(attrs[RESULT_ATTR]) if states[trial._trial_id] == state else ABANDONED
        for trial, state, _, attrs in tells
    ]


def _ending(
    config: ExperimentConfig, epochs: list[EpochRecord], outcome: TrainResult | DivergenceError
) -> tuple[TrialState, float | None, dict[str, object]]:
    """The state, value and user attributes that record how a trial ended."""
    if isinstance(outcome, DivergenceError):
        return TrialState.FAIL, None, {RESULT_ATTR: DIVERGED, REASON_ATTR: str(outcome)}
    values = [metric_of(e, config.search.metric) for e in epochs]
    pick = max if config.direction == "maximize" else min
    attrs: dict[str, object] = {BEST_EPOCH_ATTR: epochs[values.index(pick(values))].epoch}
    if outcome.stopped:
        return TrialState.PRUNED, None, attrs | {RESULT_ATTR: "pruned"}
    assert math.isfinite(values[-1])  # a non-finite metric raised DivergenceError
    return TrialState.COMPLETE, values[-1], attrs | {RESULT_ATTR: "complete"}


def fail_trial(
    arm: str, study: optuna.Study, trial: optuna.trial.Trial, exc: BaseException
) -> WorkerFailed:
    """Mark a trial FAIL with ``exc`` as its reason (best effort: it must not stay RUNNING)
    and return the error the worker stops with."""
    detail = traceback.format_exception_only(exc)[-1].strip()
    with suppress(Exception):
        trial.set_user_attr(REASON_ATTR, detail)
        study.tell(trial, state=TrialState.FAIL)
    return WorkerFailed(f"trial {arm}#{trial.number} failed: {detail}")


@contextmanager
def _quiet_optuna() -> Iterator[None]:
    """Optuna flags fail_stale_trials as experimental and warns that heartbeats are meant for
    Study.optimize; dynl2 drives both on purpose with ask/tell (the worker's heartbeat thread)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used")
        yield


@contextmanager
def _heartbeat(study: optuna.Study, trial_ids: list[int]) -> Iterator[None]:
    """Record the trials' heartbeats every ``interval`` seconds while they train."""
    storage = study._storage
    interval = storage.get_heartbeat_interval()  # type: ignore[attr-defined]
    stop = threading.Event()

    def beat() -> None:
        while True:
            with suppress(Exception):  # a missed beat is retried; the trial goes on
                for trial_id in trial_ids:
                    storage.record_heartbeat(trial_id)  # type: ignore[attr-defined]
            if stop.wait(interval):
                return

    thread = threading.Thread(target=beat, name=f"dynl2-heartbeat-{trial_ids[0]}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
