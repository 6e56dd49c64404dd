"""Step one of a report: read the store and compute a frozen :class:`ReportData`.

Nothing here draws or writes HTML. The store is read through its public surface only
(``trials``, ``epochs``, ``evaluations``, ``trial_tallies`` and Optuna's storage). The
experiment's config comes from the caller, parsed and validated once by the study layer, as an
:class:`reports.spec.ExperimentSpec`: this layer needs neither ``study`` nor torch, and reads
no setting of the config on its own. Each section is built by its own module.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

import optuna
import pandas as pd  # type: ignore[import-untyped, unused-ignore]

from reports.common import RESULT_ATTR, label
from reports.dynamics import build_dynamics
from reports.experiment_setup import build_setup
from reports.model import ReportData, Verdict
from reports.search import build_search
from reports.sensitivity import build_sensitivity
from reports.spec import ExperimentSpec, RangeSpec
from reports.tables import build_tables
from reports.verdict import build_verdict
from storage import Store, best_trials, split_evaluations, study_name

__all__ = ["build_report_data"]


def build_report_data(store: Store, config: ExperimentSpec) -> ReportData:
    """Everything the report says about the experiment ``config`` describes, computed from
    ``store``.

    Raises :class:`storage.ExperimentNotFound` when the store has no experiment of that name.
    An experiment without trials or evaluations still gives a report whose sections say so.
    """
    experiment = config.name
    direction = config.direction
    replicates = config.search.replicates
    read = _read(store, config)
    trials, arms, spaces, evals = read.trials, read.arms, read.spaces, read.evals
    searches = _load_studies(store, experiment, trials)
    studies = {arm: study for (arm, r), study in searches.items() if r == 1}  # importances
    accuracy = config.accuracy
    complete = trials[(trials["state"] == "COMPLETE") & trials["value"].notna()]
    best = best_trials(complete, direction)
    return ReportData(
        experiment=experiment,
        generated=datetime.now(UTC).isoformat(timespec="seconds"),
        accuracy=accuracy,
        verdict=_verdict(config, read),
        setup=build_setup(config, arms, spaces, trials, evals, studies),
        search=build_search(arms, trials, config.search.metric, direction, searches, replicates),
        sensitivity=build_sensitivity(arms, spaces, complete, studies, accuracy, direction),
        dynamics=build_dynamics(store, experiment, arms, best),
        tables=build_tables(arms, complete, evals, direction, accuracy),
    )


def build_report_verdict(store: Store, config: ExperimentSpec) -> Verdict:
    """The report's verdict alone, as :func:`build_report_data` computes it, without the
    studies, figures and tables (what a suite report reads of each of its experiments)."""
    return _verdict(config, _read(store, config))


@dataclass(frozen=True)
class _Read:
    """What the verdict and the other sections share, read from the store once."""

    trials: pd.DataFrame
    arms: dict[str, str]
    spaces: dict[str, Mapping[str, RangeSpec]]
    searched: set[str]
    evals: pd.DataFrame
    stale: pd.DataFrame
    unfinished: tuple[str, ...]


def _read(store: Store, config: ExperimentSpec) -> _Read:
    trials = store.trials(config.name)
    stored = store.evaluations(config.name)
    arms = _arm_schemes(config, trials, stored)
    spaces = _spaces(config, arms)
    # Only the evaluations of each arm's best configuration as the search stands now: rows
    # of an earlier best (evaluated before the search ended) are left out, and said so.
    searched = {arm for arm in arms if spaces[arm]}
    evals, stale = split_evaluations(stored, trials, config.direction, searched)
    unfinished = _unfinished(
        store, config.name, config.search.n_trials, config.search.replicates, searched
    )
    return _Read(trials, arms, spaces, searched, evals, stale, unfinished)


def _verdict(config: ExperimentSpec, read: _Read) -> Verdict:
    return build_verdict(
        read.arms, read.trials, read.evals, config.accuracy, read.unfinished, read.stale,
        config.search.replicates, read.searched, margin=config.evaluate.margin,
        sequential=config.search.sequential, n_trials=config.search.n_trials,
    )  # fmt: skip


def _arm_schemes(
    config: ExperimentSpec, trials: pd.DataFrame, evals: pd.DataFrame
) -> dict[str, str]:
    """Arm name -> scheme, in the config's order, then any arm only the store knows (scheme
    "?": a store edited by hand), so that its trials and evaluations are still shown."""
    out = {arm.name: arm.scheme for arm in config.arms}
    for frame in (trials, evals):
        for arm in frame["arm"].unique() if not frame.empty else ():
            out.setdefault(str(arm), "?")
    return out


def _spaces(config: ExperimentSpec, arms: Mapping[str, str]) -> dict[str, Mapping[str, RangeSpec]]:
    """Arm name -> its searched ranges. An arm only the store knows has no ranges of its own
    in the config: the train ranges, searched in every arm, are all the report knows of it."""
    listed = {arm.name for arm in config.arms}
    return {
        arm: config.searched(arm) if arm in listed else dict(config.train_ranges) for arm in arms
    }


def _load_studies(
    store: Store, experiment: str, trials: pd.DataFrame
) -> dict[tuple[str, int], optuna.Study]:
    """The Optuna study of every search (arm, replicate) that has trials, each loaded once."""
    if trials.empty:
        return {}
    storage = store.optuna_storage()
    out = {}
    for arm, replicate in sorted({(str(a), int(r)) for a, r in zip(
        trials["arm"], trials["replicate"], strict=True
    )}):  # fmt: skip
        name = study_name(experiment, arm, replicate)
        try:
            out[(arm, replicate)] = optuna.load_study(study_name=name, storage=storage)
        except KeyError:  # a study the store lists but Optuna cannot load: skip it
            continue
    return out


def _unfinished(
    store: Store, experiment: str, budget: int, replicates: int, searched: set[str]
) -> tuple[str, ...]:
    """``"arm k/n"`` (``"arm/R k/n"`` with replicates) for each search short of ``budget``
    (``[search] n_trials``) results: COMPLETE, PRUNED, or FAIL because the run diverged, what
    dynl2 counts toward the budget."""
    tallies = store.trial_tallies(experiment, RESULT_ATTR)
    out = []
    for arm in sorted(searched):
        for replicate in range(1, replicates + 1):
            tally = tallies.get((arm, replicate))
            done = 0
            if tally is not None:
                done = tally.states.get("COMPLETE", 0) + tally.states.get("PRUNED", 0)
                done += tally.results.get(("FAIL", "diverged"), 0)
            if done < budget:
                out.append(f"{label(arm, replicate, replicates)} {done}/{budget}")
    return tuple(out)
