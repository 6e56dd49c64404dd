"""Progress lines per arm, and the evaluation summary printed at the end of a run.

``dynl2 status NAME`` comes here with plain rows (:func:`counts_of`, :func:`rows_summary`):
this module imports neither pandas nor the store's classes at its top, and the report's
statistics only when a summary is computed.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from study.config.experiment import ExperimentConfig
from study.search.keys import (
    DIVERGED,
    RESULT_ATTR,
    ArmCounts,
    SearchKey,
    label,
    searched_arms,
    searches,
)

if TYPE_CHECKING:
    import pandas as pd

    from reports.model import ArmResult
    from storage import Store, Tally
    from storage.readonly_status import EvaluationRow


def arm_counts(store: Store, config: ExperimentConfig) -> dict[str, ArmCounts]:
    """Counts by state for every search, keyed by its label (the arm; ``ARM/R`` with more than
    one replicate; searches whose study does not exist yet: zeros), from one grouped query:
    the run's progress line polls it every second."""
    return counts_of(store.trial_tallies(config.name, RESULT_ATTR), config)


def counts_of(
    tallies: Mapping[SearchKey, Tally], config: ExperimentConfig
) -> dict[str, ArmCounts]:
    """:func:`arm_counts` from the tallies ``Store.trial_tallies`` (or
    :func:`storage.read_status`) gives."""
    out = {}
    for key in searches(config):
        tally = tallies.get(key)
        name = label(config, key)
        if tally is None:
            out[name] = ArmCounts(0, 0, 0, 0, 0, 0, None)
            continue
        states = tally.states
        diverged = tally.results.get(("FAIL", DIVERGED), 0)
        out[name] = ArmCounts(
            complete=states.get("COMPLETE", 0),
            pruned=states.get("PRUNED", 0),
            diverged=diverged,
            lost=states.get("FAIL", 0) - diverged,
            running=states.get("RUNNING", 0),
            waiting=states.get("WAITING", 0),
            best=tally.highest if config.direction == "maximize" else tally.lowest,
        )
    return out


@dataclass(frozen=True)
class Progress:
    """Where an experiment stands: its state, trials against the budget, evaluation runs."""

    state: str  # "searching", "evaluating" or "done"
    results: int  # trials counted toward the budget, over every search
    budget: int  # n_trials × searches
    evaluations: int  # evaluation runs stored
    planned: int  # evaluation runs the experiment asks for (arms × replicates × seeds)
    counts: dict[str, ArmCounts]  # per search label, as arm_counts gives them
    summary: tuple[ArmSummary, ...]  # each arm's evaluation over the seeds so far


def experiment_progress(store: Store, config: ExperimentConfig) -> Progress:
    """What ``dynl2 suite status`` and ``dynl2 serve`` show of one experiment."""
    counts = arm_counts(store, config)
    results = sum(c.results for c in counts.values())
    budget = config.search.n_trials * len(counts)
    evaluations = len(store.evaluations(config.name))
    planned = config.evaluate.seeds * config.search.replicates * len(config.arms)
    summary = tuple(evaluation_summary(store, config))
    if results < budget:
        state = "searching"
    elif evaluations < planned or not summary:
        state = "evaluating"
    else:
        state = "done"
    return Progress(state, results, budget, evaluations, planned, counts, summary)


class ProgressPrinter:
    """Prints one line per arm whenever its counts change (and on ``force``)."""

    def __init__(self, say: Callable[[str], None]) -> None:
        self._say = say
        self._last: dict[str, ArmCounts] = {}

    def update(
        self, counts: dict[str, ArmCounts], elapsed: float | None, force: bool = False
    ) -> None:
        for arm, c in counts.items():
            if not force and self._last.get(arm) == c:
                continue
            self._last[arm] = c
            when = "" if elapsed is None else f"[{elapsed:6.0f}s] "
            best = "-" if c.best is None else f"{c.best:.4f}"
            lost = f", {c.lost} lost (retried)" if c.lost else ""
            self._say(
                f"{when}{arm:<12} {c.results:4d} done ({c.complete} complete, {c.pruned} "
                f"pruned, {c.diverged} diverged{lost}), {c.running} running, "
                f"{c.waiting} queued, best {best}"
            )


def current_evaluations(store: Store, config: ExperimentConfig) -> tuple[pd.DataFrame, int]:
    """The evaluations of each arm's current best configuration, and how many stored rows
    evaluated an earlier best (stale: ignored, and redone by the next evaluation)."""
    from storage import split_evaluations

    searched = {arm.name for arm in searched_arms(config)}
    evals = store.evaluations(config.name)
    trials = store.trials(config.name) if searched and not evals.empty else None
    if trials is None:
        return evals, 0
    current, stale = split_evaluations(evals, trials, config.direction, searched)
    return current, len(stale)


def unfinished_arms(store: Store, config: ExperimentConfig) -> dict[str, int]:
    """``{search: results}`` of the searches (labelled as by :func:`arm_counts`) short of
    their ``n_trials`` results."""
    return {
        arm: counts.results
        for arm, counts in arm_counts(store, config).items()
        if counts.results < config.search.n_trials
    }


@dataclass(frozen=True)
class ArmSummary:
    """One arm's test result as the report's verdict computes it (:mod:`reports.verdict`): in
    its unit (accuracy points, or test loss), with its interval over the replicates' means
    (over the runs of one search without replicates), cut at what the metric can be."""

    arm: str
    seeds: int  # evaluation runs stored: seeds × replicates, diverged ones included
    diverged: int
    mean: float | None  # None before any finite evaluation
    half_width: float | None  # the Student-t half width; None without an interval
    metric: str  # "test_acc" or "test_loss"
    low: float | None = None  # the interval, cut at the metric's bounds; None without one
    high: float | None = None
    n: int = 0  # what the interval is over: replicate means, or runs of one search
    truncated: bool = False  # the t interval reached past a bound and is cut there
    text: str = "–"  # as the report shows it (reports.model.ArmResult.text)
    unit: str = ""  # "points" (accuracy) or "" (test loss)
    means: tuple[float, ...] = ()  # each replicate's mean, with 2 or more replicates


def evaluation_summary(store: Store, config: ExperimentConfig) -> list[ArmSummary]:
    """Per arm of ``config``, its test result exactly as the report's verdict gives it (the
    evaluations of its current best configuration: see :func:`current_evaluations`)."""
    from reports import build_report_verdict

    verdict = build_report_verdict(store, config)
    by_arm = {a.arm: a for a in verdict.arms}
    return [_summary(arm.name, by_arm.get(arm.name), verdict.metric) for arm in config.arms]


def rows_summary(
    config: ExperimentConfig,
    evaluations: Sequence[EvaluationRow],
    best: Mapping[SearchKey, Mapping[str, Any]],
) -> list[ArmSummary]:
    """:func:`evaluation_summary` from plain rows: the stored evaluations (by arm, replicate
    and seed) and each search's best parameters (:func:`storage.best_params`). The same rule
    keeps the current evaluations (:func:`storage.is_current`) and the same code gives each
    arm's result (:func:`reports.arms.arm_result`), without pandas or SciPy."""
    from reports.arms import arm_result, metric_of
    from storage import is_current

    metric = metric_of(config.accuracy)
    searched = {arm.name for arm in searched_arms(config)}
    current = [e for e in evaluations if is_current(best, searched, e.arm, e.replicate, e.params)]
    out = []
    for arm in config.arms:
        rows = [(e.replicate, e.seed, getattr(e, metric)) for e in current if e.arm == arm.name]
        result, _ = arm_result(
            arm.name,
            arm.scheme,
            rows,
            accuracy=config.accuracy,
            searched=arm.name in searched,
            replicates=config.search.replicates,
        )
        out.append(_summary(arm.name, result, metric))
    return out


def _summary(arm: str, a: ArmResult | None, metric: str) -> ArmSummary:
    """One arm's :class:`ArmSummary` from the verdict's result (None: an arm it lacks)."""
    unit = "points" if metric == "test_acc" else ""  # as reports.model.Verdict gives them
    digits = 2 if metric == "test_acc" else 4
    if a is None:
        return ArmSummary(arm, 0, 0, None, None, metric, unit=unit)
    ci = a.ci
    return ArmSummary(
        arm=a.arm,
        seeds=len(a.runs) + a.n_failed,
        diverged=a.n_failed,
        mean=None if ci is None else ci.mean,
        half_width=None if ci is None else ci.half_width,
        metric=metric,
        low=None if ci is None else ci.low,
        high=None if ci is None else ci.high,
        n=0 if ci is None else ci.n,
        truncated=ci is not None and ci.truncated,
        text=a.text(digits),
        unit=unit,
        means=a.means,
    )


def format_verdict(summary: Mapping[str, Any]) -> str:
    """The end of ``run``, ``demo`` and ``evaluate``: each arm's test metric with the interval
    the report gives it (over the replicates' means when there are replicates, over the seeds
    of one search otherwise), in the report's words (``text``), then the report's headline,
    which opens with its decision. ``summary`` is the report's JSON
    (:func:`reports.summary_json`)."""
    replicates = int(summary.get("replicates") or 1)
    over = f"over the means of {replicates} replicates" if replicates > 1 else "over the seeds"
    metric = str(summary.get("metric", ""))
    unit = " in accuracy points" if summary.get("unit") == "points" else ""
    lines = [
        f"verdict (test split, {metric}{unit}: mean ± 95% CI {over}, as the report gives it):"
    ]
    arms = summary.get("arms") or {}
    width = max([12, *(len(str(arm)) for arm in arms)])
    for arm, body in arms.items():
        test = body.get("test") if isinstance(body, Mapping) else None
        if not isinstance(test, Mapping) or test.get("mean") is None:
            lines.append(f"  {arm:<{width}} not evaluated yet")
            continue
        n = int(test.get("n") or 0)
        what = f"{n} replicates" if 1 < replicates == n else f"{n} runs"
        lines.append(f"  {arm:<{width}} {body.get('text', '')}  ({what})")
    if any(isinstance(b, Mapping) and (b.get("test") or {}).get("truncated")
           for b in arms.values()):  # fmt: skip
        lines.append("  † the interval is cut at what the metric can be")
    lines.append(str(summary.get("sentence", "")))
    return "\n".join(lines)


def format_summary(summaries: list[ArmSummary]) -> str:
    """Each arm's result as the report gives it (``dynl2 status NAME``)."""
    metric = summaries[0].metric if summaries else ""
    unit = " in accuracy points" if summaries and summaries[0].unit == "points" else ""
    lines = [
        f"final evaluation (test split, {metric}{unit}: mean ± 95% CI, as the report gives it; "
        "the report compares arms):"
    ]
    width = max([12, *(len(s.arm) for s in summaries)])
    for s in summaries:
        if s.mean is None:
            lines.append(f"  {s.arm:<{width}} not evaluated yet")
            continue
        extra = f", {s.diverged} diverged" if s.diverged else ""
        lines.append(f"  {s.arm:<{width}} {s.text}  ({s.seeds} runs{extra})")
    return "\n".join(lines)
