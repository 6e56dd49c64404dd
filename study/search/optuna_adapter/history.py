"""A study as trial k sees it under a lag (``[search] reproducible``): the view Optuna's samplers
and pruners read instead of the study. It answers Optuna's private ``Study._get_trials`` (listed
in :data:`study.search.optuna_adapter.PRIVATE_NAMES`), so it lives in this package."""

from __future__ import annotations

import copy
from collections.abc import Container, Sequence
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from storage import draws_of, trial_draws

__all__ = ["History", "lagged"]


class History:
    """``study`` as trial ``number`` sees it under ``lag``, in draws (:mod:`storage.draws`):
    if its draw is d, the trials of draws d - lag or lower as stored (the claim has waited for
    them to end), those of the draws after them as RUNNING with their parameters and nothing
    else, the trial itself, and no later draw; each draw once, by its latest trial (a retry, not
    the trial it retries), numbered with its draw. So a stop that hands trials back changes
    nothing trial k sees. Read once, at the first read; every other attribute is the study's.

    Optuna's samplers read the study through ``_get_trials`` (a private method, listed in
    ``optuna_adapter.PRIVATE_NAMES`` and checked there against the installed Optuna), so this
    view answers it too; ``tests/study/test_reproducible.py`` fails if TPE reads past it."""

    def __init__(self, study: optuna.Study, number: int, lag: int) -> None:
        self.seen_study = study
        self.number = number
        self.lag = lag
        self.seen: list[FrozenTrial] | None = None

    def get_trials(
        self, deepcopy: bool = True, states: Container[TrialState] | None = None
    ) -> list[FrozenTrial]:
        if self.seen is None:
            self.seen = lagged(self.seen_study.get_trials(deepcopy=False), self.number, self.lag)
        trials = [t for t in self.seen if states is None or t.state in states]
        return copy.deepcopy(trials) if deepcopy else trials

    def _get_trials(
        self,
        deepcopy: bool = True,
        states: Container[TrialState] | None = None,
        use_cache: bool = False,
    ) -> list[FrozenTrial]:
        return self.get_trials(deepcopy=deepcopy, states=states)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.seen_study, name)


def lagged(trials: Sequence[FrozenTrial], number: int, lag: int) -> list[FrozenTrial]:
    """``trials`` as trial ``number`` sees them under ``lag`` (see :class:`History`)."""
    table = trial_draws(trials)
    mine = draws_of(trials, [number])[0]
    latest: dict[int, FrozenTrial] = {}
    asking: FrozenTrial | None = None
    for trial in trials:
        draw = table[trial.number]
        if trial.number == number:
            asking = trial
        elif draw < mine and (draw not in latest or trial.number > latest[draw].number):
            latest[draw] = trial
    out = []
    for draw in sorted(latest):
        seen = copy.copy(latest[draw])
        seen.number = draw  # where it stands in a run without retries
        if draw > mine - lag:  # its ending, if it has one, is not seen
            seen.state = TrialState.RUNNING
            seen.values = None
            seen.intermediate_values = {}
            seen.datetime_complete = None
        out.append(seen)
    if asking is not None:
        out.append(asking)  # under its own number: samplers leave the asking trial out by it
    return out
