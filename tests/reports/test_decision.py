"""The four decisions (reports.decision): better, worse, equivalent within ±δ, inconclusive;
P(better); and the sentences that name them."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
from scipy import stats

from reports.decision import (
    decide_comparison,
    decision_sentence,
    prob_better,
    tost_p,
)
from reports.replicates import replicated


def _study(
    effect: float, *, replicates: int, seeds: int, search_sd: float, seed_sd: float, rng
) -> tuple[dict, dict]:
    """arm and baseline values keyed (replicate, seed): the arm is the baseline + effect +
    a search effect per replicate + seed noise."""
    arm, base = {}, {}
    for r in range(1, replicates + 1):
        shift = effect + rng.gauss(0, search_sd)
        for s in range(seeds):
            level = rng.gauss(80, 2)
            base[(r, s)] = level
            arm[(r, s)] = level + shift + rng.gauss(0, seed_sd)
    return arm, base


def _decide(arm, base, *, margin=None, higher=True):
    c = replicated("dynamic", "fixed", arm, base, higher_is_better=higher)
    return c, decide_comparison(c, higher_is_better=higher, margin=margin)


def test_tost_matches_the_90_percent_interval() -> None:
    """Equivalence at 5% (TOST) is the 90% interval inside ±δ, on both sides of the edge."""
    cases = [(0.1, 0.2, 4, 0.5), (0.3, 0.2, 4, 0.5), (-0.3, 0.2, 4, 0.5), (-0.2, 0.1, 9, 0.4)]
    for mean, se, dof, margin in cases:
        t90 = float(stats.t.ppf(0.95, dof))
        inside = -margin < mean - t90 * se and mean + t90 * se < margin
        assert (tost_p(mean, se, dof, margin) < 0.05) == inside
    assert tost_p(0.0, 0.0, 3, 1.0) == 0.0 and tost_p(2.0, 0.0, 3, 1.0) == 1.0


def test_a_clear_win_is_better_and_a_clear_loss_worse() -> None:
    rng = random.Random(1)
    arm, base = _study(3.0, replicates=5, seeds=8, search_sd=0.3, seed_sd=0.5, rng=rng)
    c, d = _decide(arm, base)
    assert d.decision == "better" and c.comparison.significant
    _, d = _decide(base, arm)  # the other way round
    assert d.decision == "worse"
    # lower is better (a test loss): the arm lower by 3 is better
    _, d = _decide(base, arm, higher=False)
    assert d.decision == "better"


def test_twin_arms_are_equivalent_with_a_margin_and_inconclusive_without() -> None:
    rng = random.Random(2)
    arm, base = _study(0.0, replicates=6, seeds=10, search_sd=0.05, seed_sd=0.2, rng=rng)
    c, d = _decide(arm, base, margin=0.5)
    assert d.decision == "equivalent" and d.tost_p is not None and d.tost_p < 0.05
    assert d.margin == 0.5
    _, d = _decide(arm, base)  # no margin: the data can only say what they rule out
    assert d.decision == "inconclusive" and d.tost_p is None
    diff = c.comparison.diff
    assert diff is not None and d.ruled_out == (diff.low, diff.high)
    text = decision_sentence(c, d, accuracy=True, digits=2, over="6 searches × 10 seeds")
    assert text.startswith("Inconclusive: no significant difference at 6 searches × 10 seeds")
    assert "are ruled out" in text and "no margin was set" in text
    assert "no difference" not in text.replace("no significant difference", "")


def test_a_noisy_comparison_is_inconclusive_even_with_a_margin() -> None:
    rng = random.Random(3)
    arm, base = _study(0.0, replicates=3, seeds=5, search_sd=2.0, seed_sd=2.0, rng=rng)
    c, d = _decide(arm, base, margin=0.5)
    assert d.decision == "inconclusive" and d.tost_p is not None and d.tost_p >= 0.05
    text = decision_sentence(c, d, accuracy=True, digits=2, over="3 searches × 5 seeds")
    assert "does not settle ±0.5 points either way" in text


def test_a_real_but_small_difference_is_equivalent_and_says_it_is_real() -> None:
    rng = random.Random(4)
    arm, base = _study(0.3, replicates=8, seeds=20, search_sd=0.02, seed_sd=0.1, rng=rng)
    c, d = _decide(arm, base, margin=1.0)
    assert c.comparison.significant
    assert d.decision == "equivalent" and d.significant_inside
    text = decision_sentence(c, d, accuracy=True, digits=2, over=None)
    assert text.startswith("Equivalent within ±1 points") and "smaller than the margin" in text


def test_equivalence_is_rarely_declared_on_the_margin_itself() -> None:
    """With the true difference exactly at +δ, TOST declares equivalence in at most 5% of
    studies (2000 simulated; the binomial standard error at 5% is 0.5 points)."""
    rng = random.Random(5)
    margin, hits, n = 1.0, 0, 2000
    for _ in range(n):
        arm, base = _study(margin, replicates=4, seeds=5, search_sd=0.5, seed_sd=1.0, rng=rng)
        hits += _decide(arm, base, margin=margin)[1].decision == "equivalent"
    assert hits / n <= 0.05 + 3 * math.sqrt(0.05 * 0.95 / n)


def test_prob_better_counts_wins_over_replicates() -> None:
    by_replicate = {1: [1.0, 2.0, -1.0, 0.0], 2: [1.0, 1.0, 1.0, 1.0], 3: [-1.0, 1.0, 1.0, 1.0]}
    shares = [(1 + 1 + 0 + 0.5) / 4, 1.0, 0.75]
    p = prob_better(by_replicate, higher_is_better=True)
    assert p is not None and p.over == "replicates"
    assert p.mean == pytest.approx(np.mean(shares))
    half = stats.t.ppf(0.975, 2) * np.std(shares, ddof=1) / math.sqrt(3)
    assert p.low == pytest.approx(max(0.0, np.mean(shares) - half))
    assert p.high == pytest.approx(min(1.0, np.mean(shares) + half))
    lower = prob_better(by_replicate, higher_is_better=False)  # a loss: lower wins
    assert lower is not None and lower.mean == pytest.approx(1 - p.mean)
    assert prob_better({}, higher_is_better=True) is None


def test_prob_better_of_one_search_is_a_wilson_interval_over_its_seeds() -> None:
    p = prob_better({1: [1.0] * 8 + [-1.0] * 2}, higher_is_better=True)
    assert p is not None and p.over == "seeds" and p.mean == pytest.approx(0.8)
    # Wilson 95% for 8/10: [0.490, 0.943]
    assert (p.low, p.high) == pytest.approx((0.4902, 0.9433), abs=1e-3)


def test_prob_better_covers_the_true_chance_over_replicates() -> None:
    """P(better)'s interval, a t over replicate shares, covers the true P(arm beats the
    baseline on a fresh search and seed) in about 95% of studies (R = 5, S = 10)."""
    rng = np.random.default_rng(6)
    effect, search_sd, seed_sd = 0.5, 0.5, 1.0
    truth = float(stats.norm.cdf(effect / math.hypot(search_sd, seed_sd)))
    covered, n = 0, 1000
    for _ in range(n):
        d = effect + rng.normal(0, search_sd, (5, 1)) + rng.normal(0, seed_sd, (5, 10))
        p = prob_better({r + 1: list(row) for r, row in enumerate(d)}, higher_is_better=True)
        assert p is not None
        covered += p.low <= truth <= p.high
    assert 0.91 <= covered / n <= 0.99
