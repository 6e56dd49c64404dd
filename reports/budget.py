"""Budget curves: the expected best validation score after n trials, n = 1 .. n_trials.

Comparisons of tuned methods flip with the budget (Dodge et al. 2019, "Show your work"), so
the report shows, for each arm, how good the best configuration of a search of n trials is
expected to be. It is computed from the trials each replicate already ran, without training
anything: the expected best of n trials drawn at random *without replacement* from the search's
N results, which is unbiased for the expected best of n such trials (Tang et al. 2020; the
with-replacement form of Dodge et al. is biased downwards for n near N). With the values sorted
from worst to best, ``v(1) <= ... <= v(N)``,

    E[best of n] = sum over i = n .. N of v(i) * C(i - 1, n - 1) / C(N, n),

the chance that ``v(i)`` is the best of the n drawn being the chance that it is drawn with
n − 1 of the i − 1 worse ones. Treating a search's trials as exchangeable is exact for random
search and an approximation for adaptive samplers (TPE's later trials depend on the earlier
ones): the curve then answers "a budget of n trials like these".

What counts, as in the verdict: every *result* counts toward n, because it spent budget — a
complete trial, a pruned one and a diverged one; a trial whose worker died and that was retried
does not (it is not a result). Only complete trials can be the best (dynl2 selects among them),
so a pruned or diverged trial takes the worst complete value of its replicate: a draw of n
trials that completed none is as good as the worst completed one. The curves of the R
replicates are averaged, with a 95% Student-t band over replicates (none with R = 1).

Pure functions; no store, no pandas.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import special, stats

from reports.stats import CONFIDENCE, MIN_UNITS, UNBOUNDED

__all__ = ["BudgetPoint", "budget_curve", "crossing", "expected_best", "points"]

MAX_POINTS = 200  # a curve over more trials than this is evaluated at this many budgets


@dataclass(frozen=True)
class BudgetPoint:
    n: int
    mean: float
    low: float | None  # None below MIN_UNITS replicates
    high: float | None


def points(n_max: int) -> list[int]:
    """The budgets a curve is evaluated at: every n up to :data:`MAX_POINTS`, else all of the
    first 50 and then geometric steps, always ending with ``n_max``."""
    if n_max <= MAX_POINTS:
        return list(range(1, n_max + 1))
    head = list(range(1, 51))
    tail = np.unique(np.geomspace(51, n_max, MAX_POINTS - 50).round().astype(int))
    return sorted({*head, *(int(n) for n in tail), n_max})


def expected_best(
    values: Sequence[float | None], budgets: Sequence[int], *, higher_is_better: bool
) -> list[float] | None:
    """The expected best of n of ``values`` drawn without replacement, for each n of
    ``budgets`` (each from 1 to ``len(values)``). ``None`` in ``values``: a result that cannot
    be the best (pruned, diverged). Returns None when no value can be the best."""
    complete = [v for v in values if v is not None]
    if not complete:
        return None
    sign = 1.0 if higher_is_better else -1.0
    floor = min(sign * v for v in complete)
    scores = np.sort(np.array([floor if v is None else sign * v for v in values], dtype=float))
    total = len(scores)
    ranks = np.arange(1, total + 1, dtype=float)  # i, 1-based, worst first
    out: list[float] = []
    for n in budgets:
        if not 1 <= n <= total:
            raise ValueError(f"`budgets` must lie in 1..{total}, but got {n}.")
        # log C(i-1, n-1) - log C(N, n), zero weight where i < n
        usable = ranks >= n
        i = ranks[usable]
        log_w = (special.gammaln(i) - special.gammaln(n) - special.gammaln(i - n + 1)) - (
            special.gammaln(total + 1) - special.gammaln(n + 1) - special.gammaln(total - n + 1)
        )
        out.append(sign * float(np.sum(np.exp(log_w) * scores[usable])))
    return out


def budget_curve(
    replicates: Mapping[int, Sequence[float | None]],
    *,
    higher_is_better: bool,
    bounds: tuple[float, float] = UNBOUNDED,
) -> list[BudgetPoint]:
    """The mean curve over replicates (each a list of its results' values, ``None`` for those
    that cannot be the best), up to the smallest replicate's number of results, with a 95%
    t-band over replicates when there are :data:`reports.stats.MIN_UNITS` or more, cut at
    ``bounds`` (what the metric can be)."""
    curves: list[list[float]] = []
    sizes = [len(v) for v in replicates.values() if any(x is not None for x in v)]
    if not sizes:
        return []
    budgets = points(min(sizes))
    for values in replicates.values():
        curve = expected_best(values, budgets, higher_is_better=higher_is_better)
        if curve is not None:
            curves.append(curve)
    table = np.array(curves)
    means = table.mean(axis=0)
    r = len(curves)
    out = []
    for j, n in enumerate(budgets):
        if r < MIN_UNITS:
            out.append(BudgetPoint(n, float(means[j]), None, None))
            continue
        half = float(
            stats.t.ppf(0.5 + CONFIDENCE / 2, r - 1) * table[:, j].std(ddof=1) / math.sqrt(r)
        )
        mean = float(means[j])
        out.append(BudgetPoint(n, mean, max(bounds[0], mean - half), min(bounds[1], mean + half)))
    return out


def crossing(first: Sequence[BudgetPoint], second: Sequence[BudgetPoint]) -> int | None:
    """The first budget n at which the sign of ``first − second`` differs from its sign at the
    smallest budget (equal means take no sign), or None when it never does."""
    second_at = {p.n: p.mean for p in second}
    signs = [
        (p.n, np.sign(p.mean - second_at[p.n]))
        for p in first
        if p.n in second_at and p.mean != second_at[p.n]
    ]
    if not signs:
        return None
    start = signs[0][1]
    return next((n for n, s in signs if s != start), None)
