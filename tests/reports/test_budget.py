"""Issue 11: budget curves, the expected best of n trials, checked against brute force."""

from __future__ import annotations

import itertools
import statistics

import numpy as np
import pytest

from reports.budget import BudgetPoint, budget_curve, crossing, expected_best, points


def _brute(values, n, higher_is_better):
    """The mean over every n-subset of its best value (``None`` never best; a subset of only
    ``None`` scores the worst complete value)."""
    complete = [v for v in values if v is not None]
    worst = min(complete) if higher_is_better else max(complete)
    pick = max if higher_is_better else min
    bests = []
    for subset in itertools.combinations(values, n):
        chosen = [v for v in subset if v is not None]
        bests.append(pick(chosen) if chosen else worst)
    return statistics.fmean(bests)


@pytest.mark.parametrize("higher_is_better", [True, False])
@pytest.mark.parametrize("seed", range(4))
def test_equals_the_mean_over_every_subset(seed, higher_is_better):
    rng = np.random.default_rng(seed)
    values = [float(x) for x in rng.normal(0.8, 0.05, 9)]
    for i in rng.choice(9, size=seed, replace=False):  # some pruned or diverged
        values[i] = None
    got = expected_best(values, range(1, 10), higher_is_better=higher_is_better)
    assert got is not None
    for n, value in enumerate(got, start=1):
        assert value == pytest.approx(_brute(values, n, higher_is_better), rel=1e-12, abs=1e-12)


def test_ends_and_order():
    values = [0.5, 0.9, 0.7, 0.6]
    up = expected_best(values, [1, 2, 3, 4], higher_is_better=True)
    assert up[0] == pytest.approx(statistics.fmean(values)) and up[-1] == pytest.approx(0.9)
    assert all(a <= b for a, b in itertools.pairwise(up))  # more budget never hurts
    down = expected_best(values, [1, 4], higher_is_better=False)
    assert down == pytest.approx([statistics.fmean(values), 0.5])
    assert expected_best([None, None], [1], higher_is_better=True) is None
    with pytest.raises(ValueError, match="budgets"):
        expected_best(values, [5], higher_is_better=True)


def test_unbiased_where_with_replacement_is_not():
    """Uniform(0, 1) trials: the expected best of n is n / (n + 1). Averaged over many searches
    of N = 10 trials, the estimate at n = N is right (10/11); the with-replacement estimate
    (the empirical CDF to the power n) falls short."""
    rng = np.random.default_rng(11)
    n = total = 10
    ours, with_replacement = [], []
    for _ in range(4000):
        sample = np.sort(rng.uniform(0, 1, total))
        ours.append(expected_best(list(sample), [n], higher_is_better=True)[0])
        cdf = np.arange(1, total + 1) / total
        with_replacement.append(float(np.sum(sample * (cdf**n - (cdf - 1 / total) ** n))))
    truth = n / (n + 1)
    assert statistics.fmean(ours) == pytest.approx(truth, abs=0.004)
    assert truth - statistics.fmean(with_replacement) > 0.02


def test_curve_over_replicates_has_a_band():
    reps = {0: [0.5, 0.7, 0.6], 1: [0.55, 0.65, None, 0.8], 2: [0.6, 0.6, 0.62]}
    curve = budget_curve(reps, higher_is_better=True)
    assert [p.n for p in curve] == [1, 2, 3]  # the smallest replicate's size
    first = [expected_best(v, [1, 2, 3], higher_is_better=True) for v in reps.values()]
    for j, p in enumerate(curve):
        column = [c[j] for c in first]
        assert p.mean == pytest.approx(statistics.fmean(column))
        assert p.low < p.mean < p.high
    single = budget_curve({0: [0.5, 0.7]}, higher_is_better=True)
    assert [(p.low, p.high) for p in single] == [(None, None)] * 2
    assert budget_curve({0: [None]}, higher_is_better=True) == []


def test_long_searches_are_evaluated_at_a_bounded_number_of_budgets():
    grid = points(100_000)
    assert grid[:50] == list(range(1, 51)) and grid[-1] == 100_000
    assert len(grid) <= 200 and grid == sorted(set(grid))
    assert points(30) == list(range(1, 31))


def test_crossing():
    def curve(means):
        return [BudgetPoint(n, m, None, None) for n, m in enumerate(means, start=1)]

    dynamic, fixed = curve([0.5, 0.6, 0.7, 0.8]), curve([0.55, 0.62, 0.68, 0.7])
    assert crossing(dynamic, fixed) == 3
    assert crossing(fixed, fixed) is None
    assert crossing(curve([0.9, 0.9]), curve([0.1, 0.2])) is None
