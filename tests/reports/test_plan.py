"""``reports.plan``: the power functions against scipy's noncentral t, an adaptive quadrature
and Monte Carlo; the upper bounds of the components by their coverage; and the recommended
(R, S) against 2,000 simulated studies of the verdict's own test (no training)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import integrate, stats

from reports.plan import (
    PLAN_CONFIDENCE,
    REPLICATES,
    SEEDS,
    Costs,
    Goal,
    PlanComponents,
    SuiteMember,
    build_plan,
    build_suite_plan,
    estimate_components,
    known_components,
    power_equivalence,
    power_test,
    tau2_upper,
)
from reports.replicates import components, replicated

COSTS = Costs(arms=3, searched=2, n_trials=20, trial_seconds=30.0, eval_seconds=60.0)
SIMULATED = 2000


# ------------------------------------------------------------------------------ power


def test_power_of_the_t_test_at_a_textbook_value() -> None:
    """One-sample t, n = 10, effect size 1, two-sided 5%: power 0.8031 (Cohen's tables)."""
    assert power_test(1.0, 1 / math.sqrt(10), 9) == pytest.approx(0.80310, abs=1e-4)


@pytest.mark.parametrize("dof", [1, 2, 4, 9, 19, 39])
def test_power_of_the_t_test_is_scipys_noncentral_t(dof: int) -> None:
    crit = stats.t.ppf(0.975, dof)
    for shift in (0.0, 0.3, 1.0, 2.0, 3.5, 6.0):
        expected = stats.nct.sf(crit, dof, shift) + stats.nct.cdf(-crit, dof, shift)
        assert power_test(shift, 1.0, dof) == pytest.approx(expected, abs=1e-8)
        assert power_test(-2 * shift, 2.0, dof) == pytest.approx(expected, abs=1e-8)
    assert power_test(0.0, 1.0, dof) == pytest.approx(0.05, abs=1e-8)  # the level
    assert power_test(40.0, 1.0, dof) > 0.99  # where scipy's noncentral t gives NaN


@pytest.mark.parametrize("dof", [1, 3, 9, 30])
def test_power_of_equivalence_is_the_integral_over_the_chi_distribution(dof: int) -> None:
    crit, root = stats.t.ppf(0.95, dof), math.sqrt(dof)
    for k in (0.5, 1.5, 3.0, 6.0, 20.0):

        def f(u: float, k: float = k) -> float:
            return (2 * stats.norm.cdf(k - crit * u) - 1) * root * stats.chi.pdf(u * root, dof)

        expected = integrate.quad(f, 0, k / crit, limit=200)[0]
        assert power_equivalence(k, 1.0, dof) == pytest.approx(expected, abs=1e-8)
    # many degrees of freedom: the normal approximation P(|Z| < k − z) holds
    assert power_equivalence(3.0, 1.0, 10_000) == pytest.approx(
        2 * stats.norm.cdf(3.0 - stats.norm.ppf(0.95)) - 1, abs=1e-3
    )


def test_both_powers_agree_with_monte_carlo() -> None:
    rng = np.random.default_rng(11)
    n, dof, se = 400_000, 4, 0.5
    z = rng.standard_normal(n)
    u = np.sqrt(rng.chisquare(dof, n) / dof)
    estimate, estimated_se = 1.2 + se * z, se * u
    rejects = np.abs(estimate / estimated_se) > stats.t.ppf(0.975, dof)
    assert rejects.mean() == pytest.approx(power_test(1.2, se, dof), abs=0.004)
    null = se * z  # true difference 0; margin 1.5
    inside = np.abs(null) + stats.t.ppf(0.95, dof) * estimated_se < 1.5
    assert inside.mean() == pytest.approx(power_equivalence(1.5, se, dof), abs=0.004)


# ------------------------------------------------------------------------------ components


def _groups(d: np.ndarray) -> dict[int, list[float]]:
    return {r: [float(x) for x in row] for r, row in enumerate(d)}


def test_components_point_estimates_are_the_verdicts_and_the_bounds_the_formulas() -> None:
    rng = np.random.default_rng(5)
    d = rng.normal(0, 0.8, (4, 1)) + rng.normal(0, 1.5, (4, 6)) + 0.3
    parts = estimate_components(_groups(d))
    point = components(_groups(d))
    assert parts.search_sd == pytest.approx(point.search_sd)
    assert parts.seed_sd == pytest.approx(point.seed_sd)
    assert (parts.replicates, parts.seeds) == (4, 6)
    assert parts.mean == pytest.approx(d.mean())
    ms_w = float(((d - d.mean(axis=1, keepdims=True)) ** 2).sum() / (24 - 4))
    var_m = float(d.mean(axis=1).var(ddof=1))
    seed_up = 20 * ms_w / stats.chi2.ppf(0.2, 20)
    seed_low = 20 * ms_w / stats.chi2.ppf(0.8, 20)
    v_up = 3 * var_m / stats.chi2.ppf(0.2, 3)
    assert parts.seed_sd_upper == pytest.approx(math.sqrt(seed_up))
    assert parts.search_sd_upper == pytest.approx(math.sqrt(max(0.0, v_up - seed_low / 6)))
    assert parts.variance(10) == pytest.approx(max(0.0, v_up - seed_low / 6) + seed_up / 10)
    assert parts.level == PLAN_CONFIDENCE


def test_one_seed_per_replicate_counts_all_spread_as_search() -> None:
    parts = estimate_components({1: [1.0], 2: [2.0], 3: [4.0]})
    assert parts.seed_sd is None and parts.seed_sd_upper is None
    v_up = 2 * np.var([1.0, 2.0, 4.0], ddof=1) / stats.chi2.ppf(0.2, 2)
    assert parts.search_sd_upper == pytest.approx(math.sqrt(v_up))
    assert parts.variance(3) == parts.variance(40) == pytest.approx(v_up)  # seeds earn nothing


def test_unbalanced_replicates_use_the_harmonic_mean_of_their_seeds() -> None:
    parts = estimate_components({1: [1.0, 2.0], 2: [0.0, 1.0, 2.0, 3.0], 3: [2.5]})
    assert parts.seeds == pytest.approx(3 / (1 / 2 + 1 / 4 + 1))
    with pytest.raises(ValueError, match="at least 2 replicates"):
        estimate_components({1: [1.0, 2.0]})


@pytest.mark.parametrize(("search_sd", "seed_sd"), [(0.3, 1.0), (2.0, 1.0)])
def test_the_planning_variance_covers_the_true_one_at_every_seed_count(
    search_sd: float, seed_sd: float
) -> None:
    """At least 80% of stored experiments (3 replicates × 5 seeds) plan with a variance no
    smaller than the true one, for every S of the grid: the bounds are what they say."""
    rng = np.random.default_rng(21)
    draws = 1000
    covered = np.zeros(len(SEEDS))
    for _ in range(draws):
        d = rng.normal(0, search_sd, (3, 1)) + rng.normal(0, seed_sd, (3, 5))
        parts = estimate_components(_groups(d))
        covered += [parts.variance(s) >= search_sd**2 + seed_sd**2 / s for s in SEEDS]
    assert (covered / draws >= PLAN_CONFIDENCE - 0.04).all(), covered / draws


# ------------------------------------------------------------------------------ the grid


def test_costs_count_trials_evaluations_and_time() -> None:
    assert COSTS.trials(4) == 2 * 4 * 20
    assert COSTS.evaluations(4, 10) == 10 * (2 * 4 + 1)  # the unsearched arm: once
    assert COSTS.runs(4, 10) == 160 + 90
    assert COSTS.seconds(4, 10) == pytest.approx(160 * 30 + 90 * 60)
    assert Costs(2, 2, 5, None, 1.0).seconds(3, 3) is None


def test_the_recommendation_is_the_cheapest_cell_that_reaches_the_power() -> None:
    plan = build_plan("x", "points", Goal("effect", 1.0, 0.8), known_components(0.4, 1.5), COSTS)
    assert len(plan.cells) == len(REPLICATES) * len(SEEDS)
    best = plan.recommended
    assert best is not None and best.power >= 0.8
    reaching = [c for c in plan.cells if c.power >= 0.8]
    assert best.seconds == min(c.seconds for c in reaching if c.seconds is not None)
    assert best == min(reaching, key=lambda c: (c.seconds, c.runs))
    # without timings: the fewest training runs
    untimed = Costs(3, 2, 20, None, None)
    plan = build_plan("x", "points", Goal("effect", 1.0, 0.8), known_components(0.4, 1.5), untimed)
    assert plan.recommended is not None
    assert plan.recommended.runs == min(c.runs for c in plan.cells if c.power >= 0.8)


def test_no_cell_reaching_the_power_recommends_nothing() -> None:
    plan = build_plan("x", "points", Goal("effect", 0.1, 0.9), known_components(3.0, 3.0), COSTS)
    assert plan.recommended is None
    assert max(c.power for c in plan.cells) < 0.9


def test_a_goal_is_checked() -> None:
    for mode, delta, power in (("x", 1.0, 0.8), ("effect", 0.0, 0.8), ("effect", math.nan, 0.8),
                               ("effect", 1.0, 1.0), ("equivalence", math.inf, 0.5)):  # fmt: skip
        with pytest.raises(ValueError):
            Goal(mode, delta, power)


# ------------------------------------------------------------------------------ simulation


def _simulate(rng: np.random.Generator, mu: float, search_sd: float, seed_sd: float,
              r: int, s: int) -> np.ndarray:  # fmt: skip
    """``SIMULATED`` studies' paired differences ``d[study, r, s] = μ + a[r] + e[r, s]``."""
    a = rng.normal(0, search_sd, (SIMULATED, r, 1))
    return mu + a + rng.normal(0, seed_sd, (SIMULATED, r, s))


def test_the_recommended_cell_reaches_its_power_in_simulated_studies(record_property) -> None:
    """2,000 studies at the recommended (R, S), each decided by the verdict's test (t on the
    replicate means, two-sided 5%): the share that detect δ is the plan's power ± 3 points.
    The first 200 go through :func:`reports.replicates.replicated` itself."""
    search_sd, seed_sd, delta = 0.6, 2.0, 1.0
    plan = build_plan(
        "x", "points", Goal("effect", delta, 0.8), known_components(search_sd, seed_sd), COSTS
    )
    best = plan.recommended
    assert best is not None
    r, s = best.replicates, best.seeds
    d = _simulate(np.random.default_rng(2024), delta, search_sd, seed_sd, r, s)
    means = d.mean(axis=2)
    t = means.mean(axis=1) / (means.std(axis=1, ddof=1) / math.sqrt(r))
    significant = np.abs(t) > stats.t.ppf(0.975, r - 1)
    record_property("plan", f"R={r} S={s} power={best.power:.3f} simulated={significant.mean()}")
    assert significant.mean() == pytest.approx(best.power, abs=0.03)
    for i in range(200):
        arm = {(rr, ss): float(d[i, rr, ss]) for rr in range(r) for ss in range(s)}
        zero = dict.fromkeys(arm, 0.0)
        verdict = replicated("dynamic", "fixed", arm, zero, higher_is_better=True)
        assert verdict.comparison.significant == bool(significant[i])


def test_the_recommended_cell_shows_equivalence_as_often_as_planned(record_property) -> None:
    """With no true difference: the 90% interval over the replicate means lies inside ±δ in
    the plan's share of 2,000 simulated studies, ± 3 points."""
    search_sd, seed_sd, margin = 0.4, 1.5, 1.0
    plan = build_plan(
        "x", "points", Goal("equivalence", margin, 0.8), known_components(search_sd, seed_sd),
        COSTS,
    )  # fmt: skip
    best = plan.recommended
    assert best is not None
    r, s = best.replicates, best.seeds
    d = _simulate(np.random.default_rng(77), 0.0, search_sd, seed_sd, r, s)
    means = d.mean(axis=2)
    half = stats.t.ppf(0.95, r - 1) * means.std(axis=1, ddof=1) / math.sqrt(r)
    inside = np.abs(means.mean(axis=1)) + half < margin
    record_property("plan", f"R={r} S={s} power={best.power:.3f} simulated={inside.mean()}")
    assert inside.mean() == pytest.approx(best.power, abs=0.03)


# ------------------------------------------------------------------------------ suites


def test_tau2_upper_bound_solves_the_q_profile() -> None:
    assert tau2_upper([1.0, 1.0, 1.0], [0.5, 0.5, 0.5]) == 0.0  # no spread beyond the noise
    y, se = [0.0, 2.0, -1.0, 3.0], [0.3, 0.4, 0.3, 0.5]
    upper = tau2_upper(y, se)
    w = 1 / (np.square(se) + upper)
    q = float(np.sum(w * (np.array(y) - np.sum(w * np.array(y)) / np.sum(w)) ** 2))
    assert q == pytest.approx(stats.chi2.ppf(0.2, 3), rel=1e-6)
    assert tau2_upper(y, se, level=0.95) > upper
    assert tau2_upper([1.0], [0.1]) == 0.0


def test_a_suite_of_one_experiment_is_that_experiments_plan() -> None:
    parts = PlanComponents(3, 5.0, 0.8, 0.9, 0.5, 1.5, 0.5, 1.5, PLAN_CONFIDENCE)
    goal = Goal("effect", 1.0, 0.8)
    alone = build_plan("a", "points", goal, parts, COSTS)
    members = [SuiteMember("a", parts, COSTS), SuiteMember("b", None, None, "not started")]
    suite = build_suite_plan("s", "points", goal, members)
    assert [c.power for c in suite.cells] == [c.power for c in alone.cells]
    assert suite.recommended == alone.recommended
    assert suite.heterogeneity.k == 1 and suite.heterogeneity.tau2_upper == 0.0
    assert suite.members[1].reason == "not started"


def test_a_suite_pools_with_k_minus_1_degrees_of_freedom_and_its_heterogeneity() -> None:
    goal = Goal("effect", 1.0, 0.8)
    made = [
        PlanComponents(4, 5.0, mean, 0.6, 0.3, 1.2, 0.5, 1.4, PLAN_CONFIDENCE)
        for mean in (0.2, 1.5, 2.9)
    ]
    members = [SuiteMember(f"e{i}", p, COSTS) for i, p in enumerate(made)]
    plan = build_suite_plan("s", "points", goal, members)
    h = plan.heterogeneity
    assert h.k == 3 and 0 < h.tau2 <= h.tau2_upper
    cell = next(c for c in plan.cells if (c.replicates, c.seeds) == (5, 10))
    se = math.sqrt(1 / sum(1 / (p.variance(10) / 5 + h.tau2_upper) for p in made))
    assert cell.power == pytest.approx(power_test(1.0, se, 2))
    assert cell.trials == 3 * COSTS.trials(5) and cell.runs == 3 * COSTS.runs(5, 10)
    assert cell.seconds == pytest.approx(3 * (COSTS.seconds(5, 10) or 0))
    with pytest.raises(ValueError, match="no experiment"):
        build_suite_plan("s", "points", goal, [SuiteMember("e", None, None, "not started")])
