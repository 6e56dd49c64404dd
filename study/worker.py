"""A worker process: joins an experiment's studies and trains trials until every arm is done.

Each loop, under the experiment's claim lock (held only while asking, never while training):
fail stale trials (their retries become WAITING), pick the arm furthest from its budget, and ask
it for a trial only if its results plus trials in flight are still below ``n_trials``. So each arm
ends with exactly ``n_trials`` results however many workers join, die or restart. Nothing
home-made coordinates workers beyond that lock: the database does.
"""

from __future__ import annotations

import math
import threading
import time
import traceback
import warnings
from collections.abc import Callable, Iterator
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
    data_from_dict,
    load_dataset,
    resolve_device,
    train,
)

from .errors import StudyError
from .experiment import ExperimentConfig
from .studies import (
    BEST_EPOCH_ATTR,
    CONFIG_ATTR,
    DIVERGED,
    REASON_ATTR,
    RESULT_ATTR,
    Heartbeat,
    count,
    distributions,
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
) -> WorkerSummary:
    """Train trials of ``config`` until every searched arm has ``n_trials`` results.

    ``worker`` (0, 1, ...) seeds this worker's samplers; see :func:`studies.sampler_seed`.
    """
    studies = open_studies(store, config, heartbeat or Heartbeat(), worker)
    summary = WorkerSummary()
    data: list[Dataset] = []  # loaded on the first claim, then reused for every trial

    def dataset() -> Dataset:
        if not data:
            device = resolve_device(str(config.train_fixed.get("device", "auto")))
            data.append(load_dataset(data_from_dict(config.data), device))
        return data[0]

    while studies:
        claim = _claim(store, config, studies)
        if claim == "done":
            return summary
        if claim == "wait":  # others still run the last trials; one may die and need a retry
            time.sleep(poll)
            continue
        study = studies[claim.arm]
        with _heartbeat(study, claim.trial._trial_id):
            outcome = run_trial(store, config, claim.arm, study, claim.trial, dataset)
        summary.trials[claim.arm] = summary.trials.get(claim.arm, 0) + 1
        if on_trial is not None:
            on_trial(claim.arm, claim.trial.number, outcome)
    return summary


@dataclass(frozen=True)
class _Claim:
    arm: str
    trial: optuna.trial.Trial


def _claim(
    store: Store, config: ExperimentConfig, studies: dict[str, optuna.Study]
) -> _Claim | Literal["wait", "done"]:
    """Ask the arm furthest from its budget for a trial, if any arm still has a free slot.

    The new trial's first heartbeat is written before the lock is released: Optuna never
    declares a RUNNING trial without any heartbeat stale, so a worker dying right after its
    claim would otherwise leave the trial RUNNING forever.
    """
    n = config.search.n_trials
    with store.lock(f"claim:{config.name}"), _quiet_optuna():
        pending = False
        best: tuple[float, str] | None = None
        for arm, study in studies.items():
            fail_stale_trials(study)
            counts = count(study, config.direction)
            if counts.results >= n:
                continue
            pending = True
            if counts.waiting == 0 and counts.results + counts.running >= n:
                continue  # all of its remaining slots are being trained right now
            progress = (counts.results + counts.running) / n
            if best is None or progress < best[0]:
                best = (progress, arm)
        if best is None:
            return "wait" if pending else "done"
        arm = best[1]
        trial = studies[arm].ask(distributions(config, arm))
        studies[arm]._storage.record_heartbeat(trial._trial_id)  # type: ignore[attr-defined]
    return _Claim(arm, trial)


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
            trial.report(metric_of(record, metric), record.epoch)
        except optuna.exceptions.UpdateFinishedTrialError:
            raise _TrialTakenAway from None
        return trial.should_prune()

    try:
        train_config = config.train_config(arm, trial.params, trial_seed(config, trial.number))
        trial.set_user_attr(CONFIG_ATTR, train_config.to_dict())
        result = train(train_config, on_epoch=on_epoch, data=dataset())
    except (_TrialTakenAway, optuna.exceptions.UpdateFinishedTrialError):
        return ABANDONED
    except DivergenceError as exc:
        return _finish(
            store, study, trial, epochs, TrialState.FAIL,
            {RESULT_ATTR: DIVERGED, REASON_ATTR: str(exc)},
        )  # fmt: skip
    except Exception as exc:
        detail = traceback.format_exception_only(exc)[-1].strip()
        with suppress(Exception):  # best effort: the trial must not stay RUNNING
            trial.set_user_attr(REASON_ATTR, detail)
            study.tell(trial, state=TrialState.FAIL)
        raise WorkerFailed(f"trial {arm}#{trial.number} failed: {detail}") from exc
    values = [metric_of(e, metric) for e in epochs]
    pick = max if config.direction == "maximize" else min
    attrs: dict[str, object] = {BEST_EPOCH_ATTR: epochs[values.index(pick(values))].epoch}
    if result.stopped:
        return _finish(
            store, study, trial, epochs, TrialState.PRUNED, attrs | {RESULT_ATTR: "pruned"}
        )
    assert math.isfinite(values[-1])  # a non-finite metric raised DivergenceError
    attrs[RESULT_ATTR] = "complete"
    return _finish(store, study, trial, epochs, TrialState.COMPLETE, attrs, values[-1])


def _finish(
    store: Store,
    study: optuna.Study,
    trial: optuna.trial.Trial,
    epochs: list[EpochRecord],
    state: TrialState,
    attrs: dict[str, object],
    value: float | None = None,
) -> str:
    """Record the epochs (one transaction), then the attributes, then tell: a trial is never
    COMPLETE without its epoch rows."""
    try:
        store.record_epochs(trial._trial_id, [e.to_dict() for e in epochs])
        for key, item in attrs.items():
            trial.set_user_attr(key, item)
        study.tell(trial, value, state=state)
    except optuna.exceptions.UpdateFinishedTrialError:
        return ABANDONED
    return str(attrs[RESULT_ATTR])


@contextmanager
def _quiet_optuna() -> Iterator[None]:
    """Optuna flags fail_stale_trials as experimental and warns that heartbeats are meant for
    Study.optimize; dynl2 drives both on purpose with ask/tell (the worker's heartbeat thread)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used")
        yield


@contextmanager
def _heartbeat(study: optuna.Study, trial_id: int) -> Iterator[None]:
    """Record the trial's heartbeat every ``interval`` seconds while it trains."""
    storage = study._storage
    interval = storage.get_heartbeat_interval()  # type: ignore[attr-defined]
    stop = threading.Event()

    def beat() -> None:
        while True:
            with suppress(Exception):  # a missed beat is retried; the trial goes on
                storage.record_heartbeat(trial_id)  # type: ignore[attr-defined]
            if stop.wait(interval):
                return

    thread = threading.Thread(target=beat, name=f"dynl2-heartbeat-{trial_id}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
