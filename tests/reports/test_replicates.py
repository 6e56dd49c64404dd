"""Issue 11: the verdict over search replicates, calibrated by simulation (no training).

Each arm's score on (replicate r, seed s) is simulated as ``μ_arm + a[arm, r] + c[s] +
e[arm, r, s]``: ``a`` the search effect of one arm's search (sd 1.0 point), ``c`` a seed effect
shared by every arm (common random numbers: it cancels in the paired difference), ``e`` the seed
noise of one training run (sd 1.5 points). With no true difference the verdict must call a
difference significant about 5% of the time; the seed-only interval of one search, read as a
statement about the schemes, does so far more often: that is why replicates exist."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from reports.replicates import components, replicated
from reports.stats import paired as seed_only  # one search's verdict: the paired t over seeds

SEARCH_SD, SEED_SD, SEEDS = 1.0, 1.5, 10
DRAWS = 2000


def _simulate(rng: np.random.Generator, replicates: int, effect: float):
    """Two arms' scores keyed (replicate, seed): ``dynamic`` better by ``effect`` points."""
    shared = rng.normal(0, 2.0, SEEDS)  # a seed that is easy for every arm
    out = []
    for mu in (effect, 0.0):
        a = rng.normal(0, SEARCH_SD, replicates)
        e = rng.normal(0, SEED_SD, (replicates, SEEDS))
        scores = 80.0 + mu + a[:, None] + shared[None, :] + e
        out.append({(r, s): float(scores[r, s]) for r in range(replicates) for s in range(SEEDS)})
    return out


def _rates(replicates: int, effect: float, seed: int) -> tuple[float, float]:
    """(share significant with replicates, share significant seed-only on replicate 0)."""
    rng = np.random.default_rng(seed)
    hits = seed_hits = 0
    for _ in range(DRAWS):
        dynamic, fixed = _simulate(rng, replicates, effect)
        verdict = replicated("dynamic", "fixed", dynamic, fixed, higher_is_better=True)
        assert verdict.method == "replicate means" and verdict.comparison.diff is not None
        assert verdict.comparison.diff.n == replicates
        hits += verdict.comparison.significant
        first = {s: v for (r, s), v in dynamic.items() if r == 0}
        base = {s: v for (r, s), v in fixed.items() if r == 0}
        seed_hits += seed_only("dynamic", "fixed", first, base, higher_is_better=True).significant
    return hits / DRAWS, seed_hits / DRAWS


@pytest.mark.parametrize("replicates", [3, 4, 5])
def test_false_positive_rate_is_calibrated_and_seed_only_is_not(replicates, record_property):
    """No true difference: the replicate verdict's false-positive rate lies in [3%, 7%] (its
    sampling error over 2000 draws is 0.5 points); the seed-only verdict of one search exceeds
    20% (the search spread it ignores is as large as the seed spread it measures)."""
    rate, seed_rate = _rates(replicates, 0.0, seed=replicates)
    record_property("false_positive_rate", rate)
    record_property("seed_only_false_positive_rate", seed_rate)
    print(f"R={replicates}: false positives {rate:.3f}, seed-only {seed_rate:.3f}")
    assert 0.03 <= rate <= 0.07
    assert seed_rate > 0.20


@pytest.mark.parametrize("replicates", [3, 5])
def test_power_at_two_points_matches_the_noncentral_t(replicates, record_property):
    """A true effect of +2 points: the share of draws called significant (with the winner
    right) is the power the t on replicate means should have, from the noncentral t with
    R − 1 degrees of freedom, within 4 points."""
    rate, _ = _rates(replicates, 2.0, seed=100 + replicates)
    # Var of one replicate's mean difference: two searches and 2 × S seed noises
    sd = math.sqrt(2 * SEARCH_SD**2 + 2 * SEED_SD**2 / SEEDS)
    dof = replicates - 1
    crit = stats.t.ppf(0.975, dof)
    nc = 2.0 / (sd / math.sqrt(replicates))
    expected = stats.nct.sf(crit, dof, nc) + stats.nct.cdf(-crit, dof, nc)
    record_property("power", rate)
    print(f"R={replicates}: power {rate:.3f} (noncentral t: {expected:.3f})")
    assert abs(rate - expected) < 0.04


def test_the_winner_and_the_direction():
    rng = np.random.default_rng(7)
    dynamic, fixed = _simulate(rng, 5, 10.0)
    up = replicated("dynamic", "fixed", dynamic, fixed, higher_is_better=True)
    assert up.comparison.significant and up.comparison.winner == "dynamic"
    down = replicated("dynamic", "fixed", dynamic, fixed, higher_is_better=False)
    assert down.comparison.significant and down.comparison.winner == "fixed"  # a loss: lower wins
    assert up.replicates == 5 and up.seeds == SEEDS and up.comparison.n_pairs == 5 * SEEDS


def test_components_recover_the_simulated_spreads():
    """Many replicates and seeds: the ANOVA estimates of the difference's components are near
    the truth (search sd √2 × 1.0: two searches; seed sd √2 × 1.5: two runs)."""
    rng = np.random.default_rng(3)
    r, s = 400, 40
    d = rng.normal(0, SEARCH_SD * math.sqrt(2), r)[:, None] + rng.normal(
        0, SEED_SD * math.sqrt(2), (r, s)
    )
    parts = components({i: list(row) for i, row in enumerate(d)})
    assert parts.search_sd == pytest.approx(SEARCH_SD * math.sqrt(2), rel=0.1)
    assert parts.seed_sd == pytest.approx(SEED_SD * math.sqrt(2), rel=0.05)


def test_components_of_unbalanced_data_and_edge_cases():
    assert components({0: [1.0, 2.0, 3.0]}).search_sd is None  # one replicate
    assert components({0: [1.0, 3.0]}).seed_sd == pytest.approx(math.sqrt(2))
    assert components({0: [1.0], 1: [3.0]}).seed_sd is None  # no replicate has 2 seeds
    no_search = components({0: [0.0, 2.0], 1: [1.0, 1.0, 1.0]})
    assert no_search.search_sd == 0.0  # between-spread below the within-spread: clipped at 0


def test_one_replicate_is_the_seed_only_comparison():
    dynamic = {(0, s): 80.0 + s % 3 for s in range(10)}
    fixed = {(0, s): 79.0 + (s * 7) % 4 for s in range(10)}
    one = replicated("dynamic", "fixed", dynamic, fixed, higher_is_better=True)
    assert one.method == "seeds only" and one.replicates == 1
    flat = seed_only(
        "dynamic",
        "fixed",
        {s: v for (_, s), v in dynamic.items()},
        {s: v for (_, s), v in fixed.items()},
        higher_is_better=True,
    )
    assert one.comparison == flat
    assert one.components.search_sd is None and one.components.seed_sd is not None


def test_only_shared_keys_count():
    dynamic = {(r, s): 1.0 + r for r in range(3) for s in range(4)}
    fixed = {(r, s): 0.0 for r in range(3) for s in range(2)}  # seeds 2, 3 not evaluated
    fixed[(3, 0)] = 0.0  # a replicate the other arm lacks
    v = replicated("a", "b", dynamic, fixed, higher_is_better=True)
    assert v.comparison.n_pairs == 6 and v.replicates == 3 and v.seeds == 2
    assert v.comparison.diff is not None and v.comparison.diff.mean == pytest.approx(2.0)


def test_identical_replicate_means_have_no_spread():
    dynamic = {(r, s): 2.0 for r in range(3) for s in range(3)}
    fixed = {(r, s): 1.0 for r in range(3) for s in range(3)}
    v = replicated("a", "b", dynamic, fixed, higher_is_better=True)
    assert v.comparison.p_value == 0.0 and v.comparison.cohen_dz is None
    same = replicated("a", "b", fixed, fixed, higher_is_better=True)
    assert same.comparison.p_value == 1.0 and not same.comparison.significant
