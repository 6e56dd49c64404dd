"""The plain values the store hands out and accepts: frozen dataclasses and column lists.

Callers never see live ORM rows; these objects stay valid after the session that read them
has closed, and can be pickled to another process.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from storage.errors import InvalidRecord

__all__ = [
    "EPOCH_COLUMNS",
    "EPOCH_METRICS",
    "EVALUATION_COLUMNS",
    "EVALUATION_METRICS",
    "EXPERIMENT_COLUMNS",
    "STUDY_MARK",
    "TRIAL_COLUMNS",
    "ExperimentInfo",
    "StoredReport",
    "SuiteInfo",
    "SuiteMember",
    "Tally",
    "check_name",
    "check_replicate",
    "split_study_name",
    "study_name",
]

# The system attribute dynl2 writes on every Optuna study it creates, as JSON
# {"experiment": NAME, "arm": ARM, "direction": ..., "space": {param: distribution JSON}}: a
# study named EXPERIMENT/ARM without it was made by another program (or by a dynl2 older than
# the mark) and is never used as if it were the arm's search.
STUDY_MARK = "dynl2:study"

# Keys a row passed to Store.record_epochs may carry besides the required "epoch".
EPOCH_METRICS = (
    "train_loss",
    "train_acc",
    "val_loss",
    "val_acc",
    "lam_mean",
    "lam_min",
    "lam_max",
    "lam_last",
    "weight_norm",
    "seconds",
)

# Keyword metrics of Store.record_evaluation.
EVALUATION_METRICS = ("test_loss", "test_acc", "val_loss", "val_acc", "seconds")

# Columns of the DataFrames the read side returns, in order.
EXPERIMENT_COLUMNS = ("id", "name", "created", "config")
EPOCH_COLUMNS = ("arm", "replicate", "number", "trial_id", "state", "epoch", *EPOCH_METRICS)
EVALUATION_COLUMNS = (
    "arm",
    "seed",
    "replicate",  # which search of the arm chose the configuration; 1 in older stores
    "params",  # the searched parameters the run retrained ({} for an arm with none)
    *EVALUATION_METRICS,
    "trainer_seed",  # the seed the run trained with; <NA> when not recorded
    "diverged",  # why the run diverged; missing (None or NaN: pd.isna) when it did not
    "created",
)
TRIAL_COLUMNS = (
    "arm",
    "replicate",  # which search of the arm (1 .. [search] replicates): Optuna study EXP/ARM[/R]
    "number",
    "trial_id",
    "state",  # COMPLETE, PRUNED, FAIL, RUNNING or WAITING
    "value",  # the objective; NaN when the trial has none
    "params",  # dict of the trial's parameters in their external form
    "best_epoch",  # user attribute, <NA> when absent
    "fail_reason",  # user attribute, None when absent
    "datetime_start",  # UTC
    "datetime_complete",  # UTC
    "duration_s",
    "draw",  # where it stands in its search, retries not counted; a retry has its original's
)

NAME_MAX_LENGTH = 255
STUDY_NAME_SEPARATOR = "/"


@dataclass(frozen=True)
class ExperimentInfo:
    """One row of ``dynl2_experiments``; ``config`` is the decoded JSON (do not mutate it)."""

    id: int
    name: str
    config: dict[str, Any] = field(hash=False)
    created: datetime  # UTC, timezone-aware


@dataclass(frozen=True)
class StoredReport:
    """One row of ``dynl2_reports``: the page as written, and its verdict's numbers
    (``summary``: decoded JSON, do not mutate it)."""

    id: int
    experiment: str
    created: datetime  # UTC, timezone-aware
    path: str  # where the file was written
    summary: dict[str, Any] = field(hash=False)
    html: str = field(repr=False)


@dataclass(frozen=True)
class SuiteMember:
    """One experiment of a suite: its place (0-based), name and the matrix values that made it
    (dotted config key -> value, in the matrix's order; do not mutate them)."""

    position: int
    experiment: str
    factors: dict[str, Any] = field(hash=False)


@dataclass(frozen=True)
class SuiteInfo:
    """One row of ``dynl2_suites`` with its experiments in order; ``definition`` is the suite
    file as parsed (decoded JSON, in the file's order; do not mutate it)."""

    name: str
    created: datetime  # UTC, timezone-aware
    definition: dict[str, Any] = field(hash=False)
    members: tuple[SuiteMember, ...]


def check_name(value: object, argument: str) -> str:
    """Validate an experiment, arm or suite name: a non-empty string without ``/`` or edge
    spaces."""
    if not isinstance(value, str) or not value or value != value.strip():
        raise InvalidRecord(
            f"`{argument}` must be a non-empty string without leading or trailing spaces, "
            f"but got {value!r}."
        )
    if STUDY_NAME_SEPARATOR in value:
        raise InvalidRecord(
            f"`{argument}` must not contain {STUDY_NAME_SEPARATOR!r} (it separates experiment "
            f"and arm in Optuna study names), but got {value!r}."
        )
    if len(value) > NAME_MAX_LENGTH:
        raise InvalidRecord(
            f"`{argument}` must be at most {NAME_MAX_LENGTH} characters, "
            f"but got {len(value)} characters."
        )
    return value


def check_replicate(replicate: object) -> int:
    """Validate a replicate number: an int from 1 (searches are numbered from 1)."""
    if isinstance(replicate, bool) or not isinstance(replicate, int) or replicate < 1:
        raise InvalidRecord(
            f"`replicate` must be an int >= 1 (searches are numbered from 1), but got "
            f"{replicate!r}."
        )
    return replicate


def study_name(experiment: str, arm: str, replicate: int = 1) -> str:
    """The Optuna study name of one search of an arm: ``EXPERIMENT/ARM`` for replicate 1 (the
    only one before replicates existed, so older stores keep their names), ``EXPERIMENT/ARM/R``
    for replicate ``R`` >= 2."""
    check_name(experiment, "experiment")
    check_name(arm, "arm")
    check_replicate(replicate)
    base = f"{experiment}{STUDY_NAME_SEPARATOR}{arm}"
    return base if replicate == 1 else f"{base}{STUDY_NAME_SEPARATOR}{replicate}"


def split_study_name(name: str) -> tuple[str, str, int] | None:
    """``(experiment, arm, replicate)`` of a dynl2 study name (see :func:`study_name`), or
    ``None`` for any other study."""
    parts = name.split(STUDY_NAME_SEPARATOR)
    if len(parts) == 2 and all(parts):
        return parts[0], parts[1], 1
    if len(parts) == 3 and parts[0] and parts[1] and _REPLICATE.fullmatch(parts[2]):
        replicate = int(parts[2])
        return (parts[0], parts[1], replicate) if replicate >= 2 else None
    return None


_REPLICATE = re.compile(r"[1-9][0-9]{0,5}", re.ASCII)  # no leading zero: one name per search


@dataclass(frozen=True)
class Tally:
    """One Optuna study's trials counted by state, read with one query (a progress display
    polls it every second; loading every trial grows with the study, this does not).

    ``results`` counts trials by state and the JSON value of the user attribute the caller
    named (``None`` when a trial has none); ``highest`` and ``lowest`` are over COMPLETE trials'
    values (``±inf`` included), ``None`` when there are none.
    """

    states: Mapping[str, int]
    results: Mapping[tuple[str, str | None], int]
    highest: float | None
    lowest: float | None
