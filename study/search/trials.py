"""A claimed trial's end: its epochs and result recorded, the study told, or the trial marked
FAIL with its reason. Shared by every group a worker trains (:mod:`study.search.fused`)."""

from __future__ import annotations

import math
import traceback
from collections.abc import Sequence
from contextlib import suppress

import optuna
from optuna.trial import TrialState

from storage import Store
from study.config.experiment import ExperimentConfig
from study.errors import StudyError
from study.search.keys import BEST_EPOCH_ATTR, DIVERGED, REASON_ATTR, RESULT_ATTR
from study.search.optuna_adapter import Tell, tell_many, trial_id_of
from study.search.resilience import retrying
from trainers import DivergenceError, EpochRecord, TrainResult


class WorkerFailed(StudyError):
    """A trial failed for a reason other than divergence (a bug or a broken environment)."""


ABANDONED = "abandoned"  # declared stale by another worker meanwhile: this run is dropped


def metric_of(record: EpochRecord, metric: str) -> float:
    value = record.val_acc if metric == "val_acc" else record.val_loss
    if value is None:  # guarded by config validation: val_acc needs classification
        raise StudyError(f"metric {metric!r} is not reported for this dataset")
    return value


Ended = tuple[optuna.trial.Trial, list[EpochRecord], TrainResult | DivergenceError]


def conclude_many(
    store: Store, config: ExperimentConfig, study: optuna.Study, ended: Sequence[Ended]
) -> list[str]:
    """Record how trials that ended together ended, in two transactions: their epochs, then
    their results with the tells, so a trial is never COMPLETE without its epoch rows. Returns
    each one's outcome: "complete", "pruned", "diverged", or :data:`ABANDONED`.
    Each may run twice (see :mod:`study.search.resilience`): epochs are upserted, and a tell that
    finds its trial finished in the state it tells counts as told (by its own first try)."""
    tells: list[Tell] = []
    rows: dict[int, list[dict[str, float | int | None]]] = {}
    for trial, epochs, outcome in ended:
        tells.append((trial, *_ending(config, epochs, outcome)))
        rows[trial_id_of(trial)] = [e.to_dict() for e in epochs]
    retrying(lambda: store.record_epochs_many(rows), "recording epochs")
    states = retrying(lambda: tell_many(study, tells), "telling")
    # finished meanwhile in another state: declared stale by another worker
    return [
        str(attrs[RESULT_ATTR]) if states[trial_id_of(trial)] == state else ABANDONED
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
