"""Which trial is an arm's best, and which stored evaluations belong to it.

One rule for every reader: the final evaluation chooses what to retrain with it, and the report,
``dynl2 status`` and ``dynl2 trials`` use it to keep only the evaluations of that configuration.
An evaluation row records the configuration it retrained (its ``params``); when the search has
moved on since (``dynl2 evaluate --provisional`` on an unfinished search, then more trials),
its rows are *stale*: never mixed into a verdict, redone by the next evaluation.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable, Mapping
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:  # the frames' functions import it when called: best_params reads no frame
    import pandas as pd  # type: ignore[import-untyped, unused-ignore]

__all__ = ["best_by_search", "best_params", "best_trials", "is_current", "split_evaluations"]


class Trial(Protocol):
    """A trial as :func:`best_params` reads it (a row of ``Store.trials``, as a record)."""

    @property
    def arm(self) -> str: ...
    @property
    def replicate(self) -> int: ...
    @property
    def number(self) -> int: ...
    @property
    def draw(self) -> int: ...
    @property
    def state(self) -> str: ...
    @property
    def value(self) -> float: ...
    @property
    def params(self) -> Mapping[str, Any]: ...


def best_trials(trials: pd.DataFrame, direction: str) -> dict[str, pd.Series]:
    """``{arm: row}`` of each arm's best COMPLETE trial with a finite value (a frame of
    ``Store.trials``). Ties go to the lowest draw (``storage.draws``), then the lowest number, so
    every reader picks the same one, and a run that handed trials back at a stop picks what a
    run left alone picks."""
    if direction not in ("maximize", "minimize"):
        raise ValueError(f"`direction` must be 'maximize' or 'minimize', but got {direction!r}.")
    if trials.empty:
        return {}
    finite = trials["value"].map(lambda v: v is not None and math.isfinite(float(v)))
    complete = trials[(trials["state"] == "COMPLETE") & finite]
    out = {}
    for arm, rows in complete.groupby("arm", sort=False):
        ordered = rows.sort_values(
            ["value", "draw", "number"],
            ascending=[direction == "minimize", True, True],
            kind="stable",
        )
        out[str(arm)] = ordered.iloc[0]
    return out


def best_by_search(trials: pd.DataFrame, direction: str) -> dict[tuple[str, int], pd.Series]:
    """``{(arm, replicate): row}`` of each search's best COMPLETE trial with a finite value:
    what the final evaluation retrains for that replicate of the arm (same ties rule as
    :func:`best_trials`)."""
    if trials.empty:
        return {}
    out = {}
    for replicate, rows in trials.groupby("replicate", sort=True):
        for arm, row in best_trials(rows, direction).items():
            out[(arm, int(replicate))] = row
    return out


def best_params(trials: Iterable[Trial], direction: str) -> dict[tuple[str, int], dict[str, Any]]:
    """``{(arm, replicate): params}`` of each search's best trial: :func:`best_by_search`'s
    choice (COMPLETE, a finite value, the best value, then the lowest draw and number), from
    records in the order of ``Store.trials``, without pandas (``dynl2 status``)."""
    if direction not in ("maximize", "minimize"):
        raise ValueError(f"`direction` must be 'maximize' or 'minimize', but got {direction!r}.")
    sign = 1.0 if direction == "minimize" else -1.0
    best: dict[tuple[str, int], tuple[tuple[float, int, int], Trial]] = {}
    for trial in trials:
        if trial.state != "COMPLETE" or not math.isfinite(trial.value):
            continue
        key = (sign * trial.value, trial.draw, trial.number)
        search = (trial.arm, trial.replicate)
        if search not in best or key < best[search][0]:  # the first of equals, as a stable sort
            best[search] = (key, trial)
    return {search: dict(trial.params) for search, (_, trial) in best.items()}


def is_current(
    best: Mapping[tuple[str, int], Mapping[str, Any]],
    searched: Collection[str],
    arm: str,
    replicate: int,
    params: Mapping[str, Any],
) -> bool:
    """Whether an evaluation of search ``(arm, replicate)`` that retrained ``params`` is
    current: ``best`` holds each search's best parameters (:func:`best_params`); an arm not in
    ``searched`` trains its one configuration, without parameters."""
    wanted = best.get((arm, replicate)) if arm in searched else {}
    return wanted is not None and dict(params) == wanted


def split_evaluations(
    evaluations: pd.DataFrame,
    trials: pd.DataFrame,
    direction: str,
    searched: Collection[str],
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(current, stale)`` rows of ``Store.evaluations``.

    A row is current when it retrained its search's best configuration as it stands now: the
    parameters of the best trial of its arm's replicate for an arm in ``searched``, no
    parameters for an arm with nothing to search (every replicate of such an arm trains the
    same configuration). A search without a complete trial has no current rows.
    """
    if evaluations.empty:
        return evaluations, evaluations
    import pandas as pd  # type: ignore[import-untyped, unused-ignore]

    best = {key: dict(row["params"]) for key, row in best_by_search(trials, direction).items()}
    mask = [
        is_current(best, searched, str(arm), int(replicate), params)
        for arm, replicate, params in zip(
            evaluations["arm"], evaluations["replicate"], evaluations["params"], strict=True
        )
    ]
    keep = pd.Series(mask, index=evaluations.index, dtype=bool)
    return evaluations[keep], evaluations[~keep]
