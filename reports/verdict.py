"""The verdict section: each arm's test metric and every arm against the fixed one, in
numbers and in plain sentences, with what they rest on and what to be wary of."""

from __future__ import annotations

import statistics
from collections.abc import Collection, Mapping

import pandas as pd  # type: ignore[import-untyped, unused-ignore]

from reports.arms import arm_result, metric_of
from reports.common import duration_text, label, mean_seconds, plural
from reports.decision import Decision, decide_comparison, decision_sentence
from reports.model import Verdict
from reports.plan import REPLICATES, SEEDS, Costs, advice
from reports.replicates import Replicated, replicated
from reports.stats import FEW_SEEDS, difference_bounds

__all__ = ["build_verdict"]


def build_verdict(
    arms: Mapping[str, str],
    trials: pd.DataFrame,
    evals: pd.DataFrame,
    accuracy: bool,
    unfinished: tuple[str, ...],
    stale: pd.DataFrame,
    replicates: int,
    searched: Collection[str],
    *,
    margin: float | None = None,
    sequential: tuple[int, int, int] | None = None,
    n_trials: int | None = None,
) -> Verdict:
    """The verdict: each arm's test metric, and every arm against the fixed one paired by
    (replicate, seed) (:func:`reports.replicates.replicated`). An arm with nothing to search
    trains one configuration, the same in every replicate: its evaluations (of replicate 1)
    pair with every replicate's. Each comparison gets a decision (:mod:`reports.decision`)
    against ``margin``, with the stages' boundaries when ``sequential`` is the experiment's
    ``(min, max, step)``. With too few replicates for an interval, the headline says what
    ``dynl2 plan`` would ask for, costed at ``n_trials`` per search (when given)."""
    metric = metric_of(accuracy)
    digits = 2 if accuracy else 4
    higher = accuracy
    diff_bounds = difference_bounds(accuracy)  # what a difference can be: its interval's cut
    results = []
    keyed: dict[str, dict[tuple[int, int], float]] = {}
    for arm, scheme in arms.items():
        rows = evals[evals["arm"] == arm] if not evals.empty else evals
        result, keyed[arm] = arm_result(
            arm,
            scheme,
            zip(rows["replicate"], rows["seed"], rows[metric], strict=True),
            accuracy=accuracy,
            searched=arm in searched,
            replicates=replicates,
        )
        results.append(result)
    dynamic = next((a for a, s in arms.items() if s == "dynamic"), None)
    fixed = next((a for a, s in arms.items() if s == "fixed"), None)

    compared: list[Replicated] = []
    if fixed is not None:
        others = [a for a in arms if a != fixed]
        others.sort(key=lambda a: a != dynamic)  # the dynamic arm's row first
        for arm in others:
            compared.append(
                replicated(
                    arm,
                    fixed,
                    keyed[arm],
                    keyed[fixed],
                    higher_is_better=higher,
                    bounds=diff_bounds,
                )
            )
    comparisons = [c.comparison for c in compared]
    decisions = [
        decide_comparison(c, higher_is_better=higher, margin=margin, sequential=sequential)
        for c in compared
    ]
    main_r = next((c for c in compared if c.comparison.arm == dynamic), None)
    main = None if main_r is None else main_r.comparison
    main_d = None if main_r is None else decisions[compared.index(main_r)]
    sentences = tuple(
        _compared_sentence(c, d, accuracy=accuracy, digits=digits)
        for c, d in zip(compared, decisions, strict=True)
    )
    if main_r is not None and main_d is not None and main_d.too_few:
        costs = _costs(trials, evals, len(arms), len(searched), n_trials)
        told = _plan_sentence(main_r, margin, costs, accuracy=accuracy, digits=digits)
        at = compared.index(main_r)
        sentences = (*sentences[:at], f"{sentences[at]} {told}", *sentences[at + 1 :])

    warnings_: list[str] = []
    if evals.empty:
        text = (
            "No evaluations yet: nothing can be said about the test split until each arm's "
            "best configuration is evaluated (dynl2 evaluate EXPERIMENT)."
        )
        warnings_.append("No evaluations exist yet.")
    elif dynamic is None or fixed is None:
        missing = " and ".join(
            f'no "{s}" arm' for s, a in (("dynamic", dynamic), ("fixed", fixed)) if a is None
        )
        text = f"The experiment has {missing}, so there is no dynamic-vs-fixed comparison."
    else:
        assert main is not None
        text = sentences[comparisons.index(main)]
    if main_r is not None and 0 < main_r.seeds < FEW_SEEDS:
        warnings_.append(
            f"Only {plural(main_r.seeds, 'paired seed')}: too few seeds to say anything "
            f"reliable (at least {FEW_SEEDS} are needed)."
        )
    if replicates > 1 and not evals.empty:
        unevaluated = [
            label(arm, r, replicates)
            for arm in arms
            if arm in searched
            for r in range(1, replicates + 1)
            if not any(key[0] == r for key in keyed[arm])
        ]
        if unevaluated:
            warnings_.append(
                f"Not evaluated yet: {', '.join(unevaluated)} (of {replicates} replicates); the "
                "comparisons rest on the replicates both arms have. dynl2 evaluate adds them."
            )
    if main_r is not None and main_r.replicates == 1 and main is not None and main.diff:
        warnings_.append(
            "One search per arm: the interval covers the evaluation seeds of the two "
            "configurations this search chose, not the search's own randomness, and a rerun "
            "of the search may disagree. Repeat the search (an experiment with another "
            "[experiment] seed) before reading this as a verdict about the schemes."
        )
    if unfinished and not evals.empty:
        text = f"Provisional, the search is unfinished ({', '.join(unfinished)} trials). {text}"
        warnings_.append(
            "The search is unfinished, so each arm's best configuration may still change; "
            "finish it (dynl2 run) and evaluate again for a final verdict."
        )
    n_stale = len(stale)
    if n_stale:
        arms_stale = ", ".join(sorted({str(a) for a in stale["arm"]}))
        warnings_.append(
            f"{plural(n_stale, 'stored evaluation')} of an earlier best configuration "
            f"({arms_stale}) left out: the search found a better one since; dynl2 evaluate "
            "redoes those seeds."
        )
    for r in results:
        if r.n_failed:
            warnings_.append(
                f"{r.arm}: {plural(r.n_failed, 'evaluation')} without a finite test metric "
                "(diverged), left out of the statistics."
            )

    def complete(arm: str | None) -> int:
        if arm is None or trials.empty:
            return 0
        return int(((trials["arm"] == arm) & (trials["state"] == "COMPLETE")).sum())

    if dynamic is not None and fixed is not None:
        basis = _basis(main_r, dynamic, fixed, complete(dynamic), complete(fixed), digits)
    else:
        basis = f"{plural(len(evals), 'evaluation')} and {plural(len(trials), 'trial')} stored."
    return Verdict(
        metric=metric,
        unit="points" if accuracy else "",
        higher_is_better=higher,
        arms=tuple(results),
        dynamic_arm=dynamic,
        fixed_arm=fixed,
        main=main,
        comparisons=tuple(comparisons),
        comparison_sentences=sentences,
        sentence=text[0].upper() + text[1:],
        basis=basis,
        warnings=tuple(warnings_),
        unfinished=unfinished,
        stale=n_stale,
        replicates=main_r.replicates if main_r is not None else 1,
        seeds=main_r.seeds if main_r is not None else 0,
        components=None if main_r is None else main_r.components,
        method=main_r.method if main_r is not None else "seeds only",
        decisions=tuple(decisions),
        decision=main_d,
        margin=margin,
        differences={} if main_r is None else dict(main_r.by_replicate),
        replicate_differences=tuple(_replicate_means(c) for c in compared),
    )


def _compared_sentence(c: Replicated, d: Decision, *, accuracy: bool, digits: int) -> str:
    """The comparison's sentence, opening with its decision: over seeds (one search; about
    these two configurations) or over replicates × seeds."""
    if c.method == "replicate means":
        over = f"{c.replicates} searches × {plural(c.seeds, 'seed')}"
        return decision_sentence(c, d, accuracy=accuracy, digits=digits, over=over)
    text = decision_sentence(c, d, accuracy=accuracy, digits=digits, over=None)
    if c.comparison.diff is None or c.comparison.diff.half_width is None:
        return text
    return text + " This is about the two configurations one search chose; a rerun may disagree."


def _replicate_means(c: Replicated) -> tuple[float, ...]:
    """The comparison's difference averaged within each replicate; empty with one search."""
    if c.method != "replicate means":
        return ()
    return tuple(statistics.fmean(v) for _, v in sorted(c.by_replicate.items()) if v)


def _costs(
    trials: pd.DataFrame, evals: pd.DataFrame, arms: int, searched: int, n_trials: int | None
) -> Costs | None:
    """What a run costs, timed at the stored trials and evaluations; None without a budget."""
    if n_trials is None:
        return None
    ended = trials[trials["state"].isin(("COMPLETE", "PRUNED", "FAIL"))] if len(trials) else trials
    trial_s = mean_seconds(ended["duration_s"]) if "duration_s" in ended and len(ended) else None
    eval_s = mean_seconds(evals["seconds"]) if "seconds" in evals and len(evals) else None
    return Costs(arms, searched, n_trials, trial_s, eval_s)


def _plan_sentence(
    c: Replicated, margin: float | None, costs: Costs | None, *, accuracy: bool, digits: int
) -> str:
    """What ``dynl2 plan`` would ask for, from the replicates there are: to detect the margin
    when one is set, else a difference the size of the one seen."""
    unit = " points" if accuracy else " in test loss"
    if c.replicates < 2:
        return "dynl2 plan needs 2 replicates to size the next run from their spread."
    diff = c.comparison.diff
    effect = margin if margin is not None else abs(diff.mean) if diff is not None else 0.0
    what = "the margin" if margin is not None else "the size seen here"
    plan = None if costs is None else advice(c.by_replicate, costs, effect)
    if plan is None:
        return "dynl2 plan EXPERIMENT --effect DELTA sizes the next run."
    size = f"{effect:.{digits}f}{unit} ({what})"
    best = plan.recommended
    if best is None:
        return (
            f"dynl2 plan finds no run up to {REPLICATES[-1]} searches × {SEEDS[-1]} seeds that "
            f"would detect a difference of {size} with 80% power: the spread of {c.replicates} "
            "replicates bounds it only loosely, or the difference is small against it."
        )
    cost = "" if best.seconds is None else f", about {duration_text(best.seconds)} of compute"
    return (
        f"dynl2 plan would ask for {best.replicates} searches × {best.seeds} seeds to detect a "
        f"difference of {size} with 80% power{cost}."
    )


def _basis(
    main: Replicated | None,
    dynamic: str,
    fixed: str,
    dynamic_trials: int,
    fixed_trials: int,
    digits: int,
) -> str:
    """What the verdict rests on: searches, seeds, trials, and the two spreads."""
    trials = (
        f"{plural(dynamic_trials, 'complete trial')} for {dynamic}, "
        f"{plural(fixed_trials, 'complete trial')} for {fixed}"
    )
    if main is None:
        return f"Rests on no paired evaluation yet; the search: {trials}."
    parts = main.components
    spreads = []
    if parts.search_sd is not None:
        spreads.append(f"search sd {parts.search_sd:.{digits}f}")
    if parts.seed_sd is not None:
        spreads.append(f"seed sd {parts.seed_sd:.{digits}f}")
    spread = f" Spread of the difference: {', '.join(spreads)}." if spreads else ""
    return (
        f"Rests on {main.replicates} search{'' if main.replicates == 1 else 'es'} per arm "
        f"(R = {main.replicates}) × "
        f"{plural(main.seeds, 'paired evaluation seed')} (S = {main.seeds}), "
        f"{main.comparison.n_pairs} paired runs in all; the searches: {trials} "
        f"({main.method}).{spread}"
    )
