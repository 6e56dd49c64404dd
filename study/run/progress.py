"""Progress lines per arm, and the evaluation summary printed at the end of a run."""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd

from storage import Store, split_evaluations
from study.config.experiment import ExperimentConfig
from study.search.studies import DIVERGED, RESULT_ATTR, ArmCounts, label, searched_arms, searches


def arm_counts(store: Store, config: ExperimentConfig) -> dict[str, ArmCounts]:
    """Counts by state for every search, keyed by its label (the arm; ``ARM/R`` with more than
    one replicate; searches whose study does not exist yet: zeros), from one grouped query:
    the run's progress line polls it every second."""
    tallies = store.trial_tallies(config.name, RESULT_ATTR)
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
    arm: str
    seeds: int  # evaluation runs: seeds × replicates evaluated
    diverged: int
    mean: float | None  # test metric mean over the seeds (accuracy, or loss for regression)
    half_width: float | None  # 95% CI half width (Student t), None with < 2 seeds
    metric: str


def mean_ci(values: list[float]) -> tuple[float, float | None]:
    """Mean and the half width of its 95% confidence interval (Student t)."""
    mean = statistics.fmean(values)
    if len(values) < 2:
        return mean, None
    from scipy import stats

    sem = statistics.stdev(values) / math.sqrt(len(values))
    return mean, float(stats.t.ppf(0.975, len(values) - 1)) * sem


def evaluation_summary(store: Store, config: ExperimentConfig) -> list[ArmSummary]:
    """Per arm, the evaluations of its current best configuration (see
    :func:`current_evaluations`)."""
    evals, _ = current_evaluations(store, config)
    out = []
    for arm in config.arms:
        rows = evals[evals["arm"] == arm.name] if not evals.empty else evals
        use_acc = not rows.empty and rows["test_acc"].notna().any()
        column = "test_acc" if use_acc else "test_loss"
        values = [float(v) for v in rows[column].dropna()] if not rows.empty else []
        diverged = len(rows) - len(values)
        mean, half = mean_ci(values) if values else (None, None)
        out.append(ArmSummary(arm.name, len(rows), diverged, mean, half, column))
    return out


def format_verdict(summary: Mapping[str, Any]) -> str:
    """The end of ``run``, ``demo`` and ``evaluate``: each arm's test metric with the interval
    the report gives it (over the replicates' means when there are replicates, over the seeds
    of one search otherwise), then the report's headline, which opens with its decision.
    ``summary`` is the report's JSON (:func:`reports.summary_json`), in its display units."""
    accuracy = summary.get("metric") == "test_acc"
    unit, digits = ("%", 2) if accuracy else ("", 4)
    replicates = int(summary.get("replicates") or 1)
    over = f"over the means of {replicates} replicates" if replicates > 1 else "over the seeds"
    lines = [f"verdict (test split, mean ± 95% CI {over}, as the report computes them):"]
    metric = str(summary.get("metric", ""))
    for arm, body in (summary.get("arms") or {}).items():
        test = body.get("test") if isinstance(body, Mapping) else None
        if not isinstance(test, Mapping) or test.get("mean") is None:
            lines.append(f"  {arm:<12} not evaluated yet")
            continue
        half = test.get("half_width")
        ci = "" if half is None else f" ± {half:.{digits}f}"
        n = int(test.get("n") or 0)
        what = f"{n} replicates" if 1 < replicates == n else f"{n} runs"
        lines.append(f"  {arm:<12} {metric} {test['mean']:.{digits}f}{ci}{unit}  ({what})")
    lines.append(str(summary.get("sentence", "")))
    return "\n".join(lines)


def format_summary(summaries: list[ArmSummary]) -> str:
    lines = [
        "final evaluation (test split, mean ± 95% CI over the runs of every seed and "
        "replicate; the report compares arms):"
    ]
    for s in summaries:
        if s.mean is None:
            lines.append(f"  {s.arm:<12} not evaluated yet")
            continue
        scale, unit = (100.0, "%") if s.metric == "test_acc" else (1.0, "")
        ci = "" if s.half_width is None else f" ± {scale * s.half_width:.2f}"
        extra = f", {s.diverged} diverged" if s.diverged else ""
        lines.append(
            f"  {s.arm:<12} {s.metric} {scale * s.mean:.2f}{ci}{unit}  ({s.seeds} runs{extra})"
        )
    return "\n".join(lines)
