"""What ``dynl2 serve`` shows, as JSON-ready data read from one store: the experiments, one
experiment's progress per arm and replicate, its trials a page at a time, its stored reports.

Each function takes an open :class:`storage.Store` (the server's read-only one) and returns
plain dicts, lists, strings, numbers and None; nothing here writes, renders or speaks HTTP.
The numbers are those of the CLI's reading verbs (``dynl2 status``, ``dynl2 trials``,
``dynl2 reports``), computed by the same functions.

An experiment whose stored rows cannot be read (a damaged config, one this dynl2 no longer
accepts) is :class:`UnreadableExperiment`, a :class:`storage.StorageError` naming it: the
overview lists it as unreadable with the reason and goes on with the others.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pandas as pd

from reports.common import param_lines
from storage import (
    ExperimentNotFound,
    StorageError,
    Store,
    best_by_search,
)
from study.config.experiment import ExperimentConfig
from study.errors import UsageError
from study.run.progress import Progress, experiment_progress
from study.run.queries import trials_with_tests
from study.run.runs import stored_experiment
from study.run.unreadable import UnreadableExperiment, about_the_rows, quoted, reading
from study.search.keys import label, searches

__all__ = [
    "MAX_PAGE",
    "ExperimentTrials",
    "TrialsPage",
    "UnreadableExperiment",
    "experiment_detail",
    "experiment_trials",
    "experiments_overview",
    "quoted",
    "reading",
    "report_entry",
    "trials_page_of",
]

MAX_PAGE = 1000  # rows one trials request may ask for
DEFAULT_PAGE = 100
ORDERS = ("asc", "desc")


def _when(value: datetime) -> str:
    return value.isoformat(timespec="seconds")


def _number(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def _reports(store: Store, name: str | None = None) -> list[dict[str, Any]]:
    frame = store.reports(name)
    return [
        {
            "id": int(row.id),
            "experiment": str(row.experiment),
            "created": _when(row.created),
            "verdict": _sentence(row.summary),
            "provisional": bool(row.summary.get("provisional"))
            if isinstance(row.summary, Mapping)
            else None,
        }
        for row in frame.itertuples(index=False)
    ]


def _sentence(summary: object) -> str | None:
    if isinstance(summary, Mapping) and isinstance(summary.get("sentence"), str):
        return str(summary["sentence"])
    return None


def _arm_progress(config: ExperimentConfig, counts: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Per arm: trials counted toward its budget over its replicates, and the budget."""
    out: dict[str, dict[str, Any]] = {
        a.name: {"arm": a.name, "scheme": a.scheme, "results": 0, "budget": 0} for a in config.arms
    }
    for key in searches(config):
        c = counts[label(config, key)]
        out[key[0]]["results"] += c.results
        out[key[0]]["budget"] += config.search.n_trials
    return list(out.values())


def _standing(config: ExperimentConfig, progress: Progress) -> dict[str, Any]:
    """What the list and the detail both show of an experiment's progress."""
    return {
        "metric": config.search.metric,
        "replicates": config.search.replicates,
        "state": progress.state,
        "results": progress.results,
        "budget": progress.budget,
        "evaluations": progress.evaluations,
        "planned": progress.planned,
        "arms": _arm_progress(config, progress.counts),
    }


def experiments_overview(store: Store) -> list[dict[str, Any]]:
    """Every experiment, oldest first: name, created, arms with their progress, replicates,
    state, evaluation runs, and the verdict sentence of its newest stored report. One that
    cannot be read (:class:`UnreadableExperiment`) is listed with state ``unreadable`` and
    the reason (``unreadable``, None for the others), and the rest are listed as ever."""
    latest: dict[str, dict[str, Any]] | None
    try:
        latest = _latest_reports(store)
    except StorageError as exc:
        if not about_the_rows(exc):
            raise
        latest = None  # a report is damaged: each experiment's are read on their own
    out = []
    for row in store.experiment_list().itertuples(index=False):
        name = str(row.name)
        try:
            with reading(name):
                out.append(_overview_entry(store, name, _when(row.created), latest))
        except ExperimentNotFound:
            continue  # deleted since the listing
        except UnreadableExperiment as exc:
            out.append(_unreadable_entry(name, _when(row.created), exc.reason))
    return out


def _latest_reports(store: Store) -> dict[str, dict[str, Any]]:
    """The newest stored report of each experiment that has one."""
    latest: dict[str, dict[str, Any]] = {}
    for entry in _reports(store):  # newest first: the first of each experiment is its latest
        latest.setdefault(entry["experiment"], entry)
    return latest


def _overview_entry(
    store: Store, name: str, created: str, latest: dict[str, dict[str, Any]] | None
) -> dict[str, Any]:
    config = stored_experiment(store, name)
    progress = experiment_progress(store, config)
    if latest is None:
        reports = _reports(store, name)
        report = reports[0] if reports else None
    else:
        report = latest.get(name)
    return {
        "name": config.name,
        "created": created,
        **_standing(config, progress),
        "verdict": None if report is None else report["verdict"],
        "report": None if report is None else report["id"],
        "unreadable": None,
    }


def _unreadable_entry(name: str, created: str, reason: str) -> dict[str, Any]:
    """An overview entry with the keys of the others, and nothing known but the name, the
    date and why nothing more can be read."""
    return {
        "name": name,
        "created": created,
        "metric": None,
        "replicates": None,
        "state": "unreadable",
        "results": None,
        "budget": None,
        "evaluations": None,
        "planned": None,
        "arms": [],
        "verdict": None,
        "report": None,
        "unreadable": reason,
    }


def experiment_detail(store: Store, name: str) -> dict[str, Any]:
    """What ``dynl2 status NAME`` shows: each search's counts and best parameters, each arm's
    evaluation so far, the state, the stored reports (newest first) and the newest verdict.
    Raises :class:`UnreadableExperiment` when its rows cannot be read."""
    with reading(name):
        return _detail(store, name)


def _detail(store: Store, name: str) -> dict[str, Any]:
    config = stored_experiment(store, name)
    info = store.get_experiment(name)
    progress = experiment_progress(store, config)
    best = best_by_search(store.trials(config.name), config.direction)
    rows = []
    for key in searches(config):
        c = progress.counts[label(config, key)]
        rows.append(
            {
                "search": label(config, key),
                "arm": key[0],
                "replicate": key[1],
                "budget": config.search.n_trials,
                "results": c.results,
                "complete": c.complete,
                "pruned": c.pruned,
                "diverged": c.diverged,
                "lost": c.lost,
                "running": c.running,
                "waiting": c.waiting,
                "best": _number(c.best),
                "best_params": dict(best[key]["params"]) if key in best else None,
                # one parameter a line, rounded as the report rounds them
                "best_params_text": param_lines(best[key]["params"]) if key in best else None,
            }
        )
    reports = _reports(store, name)
    return {
        "name": config.name,
        "created": _when(info.created),
        "direction": config.direction,
        "n_trials": config.search.n_trials,
        "seeds": config.evaluate.seeds,
        **_standing(config, progress),
        "searches": rows,
        # Each arm's result as the report's verdict gives it (study.run.progress.ArmSummary):
        # in its unit (accuracy points, or test loss), the interval over the replicates'
        # means, cut at what the metric can be; ``text`` is the report's own wording.
        "evaluation": [
            {
                "arm": s.arm,
                "metric": s.metric,
                "unit": s.unit,
                "runs": s.seeds,
                "diverged": s.diverged,
                "mean": _number(s.mean),
                "half_width": _number(s.half_width),
                "low": _number(s.low),
                "high": _number(s.high),
                "n": s.n,
                "truncated": s.truncated,
                "replicate_means": [_number(x) for x in s.means],
                "text": s.text,
            }
            for s in progress.summary
        ],
        "verdict": reports[0]["verdict"] if reports else None,
        "reports": reports,
    }


@dataclass(frozen=True)
class ExperimentTrials:
    """Every trial of an experiment (all arms) with its test metrics: what each page, sort
    and arm of its trials is cut from. Shared between requests, so never changed."""

    name: str
    arms: tuple[str, ...]
    frame: pd.DataFrame


@dataclass(frozen=True)
class TrialsPage:
    total: int  # rows before paging
    offset: int
    limit: int | None
    sort: str | None
    order: str
    frame: pd.DataFrame  # the page


def experiment_trials(store: Store, name: str) -> ExperimentTrials:
    """The trials of ``dynl2 trials NAME``, of every arm. Raises
    :class:`UnreadableExperiment` when its rows cannot be read."""
    with reading(name):
        config = stored_experiment(store, name)
        frame = trials_with_tests(store, config, None)
    return ExperimentTrials(config.name, tuple(a.name for a in config.arms), frame)


def trials_page_of(
    trials: ExperimentTrials,
    *,
    arm: str | None = None,
    offset: int = 0,
    limit: int | None = DEFAULT_PAGE,
    sort: str | None = None,
    order: str = "asc",
) -> TrialsPage:
    """One page of ``trials``: rows ``offset`` … ``offset + limit`` (all from ``offset`` when
    ``limit`` is None) of arm ``arm`` (every arm when None), sorted by the column ``sort``
    (missing values last). Raises :class:`UsageError` naming what is allowed for an unknown
    arm, column or order."""
    if arm is not None and arm not in trials.arms:
        raise UsageError(
            f"arm: no arm {quoted(arm)} in {trials.name!r}; arms: {', '.join(trials.arms)}"
        )
    if order not in ORDERS:
        raise UsageError(f"order: expected one of {', '.join(ORDERS)}, got {quoted(order)}")
    frame = trials.frame  # new frames below: the shared one stays as it is
    if arm is not None:
        frame = frame[frame["arm"] == arm]
    if sort is not None:
        sortable = [c for c in frame.columns if c not in ("params",)]
        if sort not in sortable:
            raise UsageError(f"sort: no column {quoted(sort)}; columns: {', '.join(sortable)}")
        frame = frame.sort_values(
            sort, ascending=order == "asc", na_position="last", kind="stable"
        )
    end = None if limit is None else offset + limit
    return TrialsPage(len(frame), offset, limit, sort, order, frame.iloc[offset:end])


def report_entry(store: Store, report_id: int) -> dict[str, Any]:
    """A stored report's id, experiment, created, path and verdict numbers (not its HTML)."""
    report = store.report(report_id)
    return {
        "id": report.id,
        "experiment": report.experiment,
        "created": _when(report.created),
        "path": report.path,
        "summary": report.summary,
    }
