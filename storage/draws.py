"""Draws: the place of each trial in its search's sequence, retries not counted.

A search's trials are numbered by Optuna in the order they are created, and a retry (a trial
handed back at a stop, or whose worker died) is created anew under the next free number, with
its parameters. If trial k's parameters, trainer seed and history were functions of its
*number*, every retry would shift the trials after it: a run stopped in the middle of a trial
and resumed would train other configurations than a run left alone. So they are functions of
its *draw* instead: the count of trials before it that are not retries; a retry has the draw of
the trial it retries. Without retries, a trial's draw is its number.

Optuna's retry callback marks a retry with the system attribute ``failed_trial``: the number of
the first trial of the chain (``RetryFailedTrialCallback.retried_trial_number``); no other
attribute is read. Optuna-free: any objects with ``number`` and ``system_attrs`` will do (the
store's readers pass their rows). The samplers and the worker's claim use these draws, and the
readers break ties for a search's best by draw, so that a resumed run picks what a run left
alone picks.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Protocol

RETRY_OF = "failed_trial"  # Optuna's retry callback: the number of the trial first retried


class Numbered(Protocol):
    @property
    def number(self) -> int: ...

    @property
    def system_attrs(self) -> Mapping[str, Any]: ...


def retry_of(system_attrs: Mapping[str, Any]) -> int | None:
    """The number of the trial that a trial with ``system_attrs`` retries (the chain's first),
    None if it is no retry."""
    origin = system_attrs.get(RETRY_OF)
    return origin if isinstance(origin, int) and not isinstance(origin, bool) else None


def trial_draws(trials: Iterable[Numbered]) -> dict[int, int]:
    """Each trial's draw, by trial number (see :func:`numbered_draws`)."""
    numbers: list[int] = []
    retries: dict[int, int] = {}
    for trial in trials:
        numbers.append(trial.number)
        if RETRY_OF in trial.system_attrs:  # a lookup first: the asks read this per trial
            origin = retry_of(trial.system_attrs)
            if origin is not None:
                retries[trial.number] = origin
    return _draws(numbers, retries)


def numbered_draws(trials: Iterable[tuple[int, int | None]]) -> dict[int, int]:
    """Each trial's draw, by trial number, from ``(number, retry_of)`` pairs: the trials that
    are no retries count 0, 1, 2, ... in the order of their numbers; a retry has the draw of
    the trial it retries (when that one is not among ``trials``, the draw of a new trial, as a
    store that lost it would give)."""
    numbers: list[int] = []
    retries: dict[int, int] = {}
    for number, origin in trials:
        numbers.append(number)
        if origin is not None:
            retries[number] = origin
    return _draws(numbers, retries)


def study_draws(trials: Iterable[tuple[int, int, int | None]]) -> dict[int, dict[int, int]]:
    """``{study_id: {number: draw}}`` from ``(study_id, number, retry_of)`` rows of several
    studies' trials, as the store's readers read them (see :func:`numbered_draws`)."""
    by_study: dict[int, list[tuple[int, int | None]]] = {}
    for study_id, number, origin in trials:
        by_study.setdefault(study_id, []).append((number, origin))
    return {study_id: numbered_draws(pairs) for study_id, pairs in by_study.items()}


def draw_count(table: Mapping[int, int]) -> int:
    """How many draws a :func:`trial_draws` table holds: the draw of the next new trial."""
    return max(table.values()) + 1 if table else 0


def _draws(numbers: list[int], retries: Mapping[int, int]) -> dict[int, int]:
    numbers.sort()
    if not retries:  # the common case, quick
        return dict(zip(numbers, range(len(numbers)), strict=True))
    out: dict[int, int] = {}
    new = 0
    for number in numbers:
        origin = retries.get(number)
        if origin is not None and origin in out:
            out[number] = out[origin]
            continue
        out[number] = new
        new += 1
    return out


def draws_of(seen: Sequence[Numbered], numbers: Sequence[int]) -> list[int]:
    """The draws of the trials numbered ``numbers``, ``seen`` holding every trial before the
    first new one among them: a number in ``seen`` (a retry popped from it) has its draw there,
    the others are new trials, drawn in the order of their numbers after ``seen``'s."""
    table = trial_draws(seen)
    after = draw_count(table)
    new = sorted(n for n in numbers if n not in table)
    table.update({n: after + i for i, n in enumerate(new)})
    return [table[n] for n in numbers]
