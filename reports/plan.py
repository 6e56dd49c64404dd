"""Planning: how many search replicates R and evaluation seeds S a verdict needs.

A stored experiment tells how much its paired difference ``d[r, s]`` (the dynamic arm − the
fixed arm, as the verdict pairs them) spreads between searches and between seeds. ``dynl2
plan`` turns that into the power of the verdict's own test at other (R, S), and each one's
cost, so that the next run is sized before it is paid for. The method in words, with the
checks that hold it: ``docs/statistics.md`` (Planning).

Model (:mod:`reports.replicates`): ``d[r, s] = μ + a[r] + e[r, s]``; the verdict is a Student t
on R replicate means, of variance ``V(S) = σ_search² + σ_seed² / S``, with R − 1 degrees of
freedom.

Planned with upper bounds, not point estimates: a plan from the point estimates is too
optimistic half of the time, and 3 stored replicates give the search component 2 degrees of
freedom. One-sided bounds at :data:`PLAN_CONFIDENCE` from the mean squares' chi-square laws,
ν = N − R₀ (pairs minus stored replicates), S₀ the harmonic mean of the seeds per replicate:

- ``σ_seed²⁺ = ν·MS_within / χ²(0.20; ν)`` and the lower ``σ_seed²⁻ = ν·MS_within / χ²(0.80; ν)``;
- ``V⁺ = (R₀ − 1)·s_m² / χ²(0.20; R₀ − 1)``, bounding the variance of one replicate mean at S₀;
- ``σ_search²⁺ = max(0, V⁺ − σ_seed²⁻ / S₀)``: the spread of the replicate means that seeds
  cannot explain even at their largest plausible spread;
- the plan's ``V⁺(S) = σ_search²⁺ + σ_seed²⁺ / S``, at least ``V⁺`` at S₀, and at least the true
  ``V(S)`` in 80% of stored experiments at every S of the grid (measured by the tests). With one
  seed per replicate all of ``V⁺`` counts as search spread: more seeds earn nothing.

Power: for an **effect** δ, the two-sided t-test at 5% (noncentral t, noncentrality
``δ / sqrt(V⁺(S) / R)``); for **equivalence** within ±δ, the 90% interval inside ±δ when the true
difference is 0 (two one-sided tests). Both are one integral over the chi distribution of the
estimated standard error (:func:`_over_u`).

Cost: ``searched arms × R × n_trials`` trials and ``S × (searched arms × R + unsearched arms)``
evaluation runs (an arm with nothing to search trains one configuration for every replicate),
timed at the stored mean seconds per trial and per evaluation run, one worker. The recommended
cell is the cheapest reaching the power: least time, then fewest training runs.

Suites: the random-effects pooled difference (:mod:`reports.meta`), each experiment with its own
bounds, ``τ²`` at its 80% Q-profile upper bound (Viechtbauer 2007) beside the DerSimonian–Laird
estimate, and the pooled test on k − 1 degrees of freedom (Hartung–Knapp; its ``max(1, q)`` is
left out, so the real test is a little more conservative than the plan).

Pure functions over plain numbers: :mod:`reports.plan_store` reads what they plan from the
store (:func:`reports.plan_store.plan_input`), and the verdict asks :func:`advice` what to run
when it has too few replicates for an interval.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import optimize, special, stats

from reports.meta import pool
from reports.replicates import components
from reports.stats import ALPHA, MIN_UNITS

PLAN_CONFIDENCE = 0.80  # one-sided level of the upper bounds planned with
REPLICATES = tuple(range(MIN_UNITS, 21))  # the grid's rows: an interval needs MIN_UNITS
SEEDS = (3, 5, 10, 20, 40)  # the grid's columns
MODES = ("effect", "equivalence")

Key = tuple[int, int]  # (replicate, seed)


# ------------------------------------------------------------------------------ components


@dataclass(frozen=True)
class PlanComponents:
    """The spread of the paired difference: point estimates and the upper bounds planned
    with (see the module's docstring); standard deviations in the verdict's unit."""

    replicates: int  # R₀: stored replicates with paired evaluations
    seeds: float  # S₀: harmonic mean of the paired seeds per replicate
    mean: float  # the mean of the replicate means (the verdict's estimate)
    mean_sd: float  # sd of the R₀ replicate means (point)
    search_sd: float  # point, the verdict's one-way ANOVA
    seed_sd: float | None  # point; None with one seed per replicate (not measurable)
    search_sd_upper: float
    seed_sd_upper: float | None  # None with one seed per replicate: counted as search spread
    level: float  # the bounds' one-sided confidence

    def variance(self, seeds: int) -> float:
        """The planning variance of one replicate mean over ``seeds`` seeds: ``σ_search²⁺ +
        σ_seed²⁺ / S``."""
        seed = 0.0 if self.seed_sd_upper is None else self.seed_sd_upper**2
        return self.search_sd_upper**2 + seed / seeds


def known_components(search_sd: float, seed_sd: float) -> PlanComponents:
    """Components taken as known (bounds equal to the values): for simulations and for a
    user who plans from numbers of their own."""
    return PlanComponents(0, math.inf, 0.0, math.nan, search_sd, seed_sd, search_sd, seed_sd, 1.0)


def estimate_components(
    by_replicate: Mapping[int, Sequence[float]], level: float = PLAN_CONFIDENCE
) -> PlanComponents:
    """Point estimates and one-sided ``level`` upper bounds of the search and seed components
    from the paired differences grouped by replicate. Needs 2 or more replicates."""
    groups = [np.asarray(v, dtype=float) for v in by_replicate.values() if len(v) > 0]
    r0 = len(groups)
    if r0 < 2:
        raise ValueError(f"the components need at least 2 replicates, got {r0}")
    sizes = np.array([len(g) for g in groups], dtype=float)
    means = np.array([float(g.mean()) for g in groups])
    s0 = float(r0 / np.sum(1.0 / sizes))
    var_m = float(means.var(ddof=1))
    low_q = 1.0 - level
    v_up = (r0 - 1) * var_m / float(stats.chi2.ppf(low_q, r0 - 1))
    point = components({r: [float(x) for x in g] for r, g in enumerate(groups)})
    nu = int(sizes.sum()) - r0
    seed_up: float | None = None
    seed_low_var = 0.0
    if nu > 0 and point.seed_sd is not None:
        ms_w = point.seed_sd**2
        seed_up = math.sqrt(nu * ms_w / float(stats.chi2.ppf(low_q, nu)))
        seed_low_var = nu * ms_w / float(stats.chi2.ppf(level, nu))
    search_up = math.sqrt(max(0.0, v_up - seed_low_var / s0))
    return PlanComponents(
        replicates=r0,
        seeds=s0,
        mean=float(means.mean()),
        mean_sd=math.sqrt(var_m),
        search_sd=point.search_sd or 0.0,
        seed_sd=point.seed_sd if nu > 0 else None,
        search_sd_upper=search_up,
        seed_sd_upper=seed_up,
        level=level,
    )


# ------------------------------------------------------------------------------ power


@functools.cache
def _gauss_legendre() -> tuple[np.ndarray, np.ndarray]:
    """The 400-point Gauss–Legendre nodes and weights on [−1, 1]. Computed on first use, not
    at import: an eigenvalue problem that every verb reading a verdict (``dynl2 status``) would
    otherwise wait for, a second and more where BLAS threads compete for a busy machine."""
    nodes, weights = np.polynomial.legendre.leggauss(400)
    return nodes, weights


def _over_u(g: Callable[[np.ndarray], np.ndarray], dof: float, end: float = math.inf) -> float:
    """``E[g(U); U < end]`` for ``U = sqrt(χ²(dof) / dof)``, the ratio of an estimated
    standard error to the true one: one integral over the chi distribution between its 1e-12
    quantiles, by 400-point Gauss–Legendre (``g`` takes an array; the tests hold it to
    scipy's adaptive quadrature and noncentral t)."""
    root = math.sqrt(dof)
    low = float(stats.chi.ppf(1e-12, dof)) / root
    high = min(end, float(stats.chi.ppf(1.0 - 1e-12, dof)) / root)
    if high <= low:
        return 0.0
    half = (high - low) / 2.0
    nodes, weights = _gauss_legendre()
    u = low + half * (nodes + 1.0)
    density = root * stats.chi.pdf(u * root, dof)
    value = half * float(np.sum(weights * g(u) * density))
    return min(1.0, max(0.0, value))


def power_test(effect: float, se: float, dof: float, alpha: float = ALPHA) -> float:
    """Power of the two-sided t-test at ``alpha`` to reject 0 when the true difference is
    ``effect``, the estimate's true standard error ``se`` and its estimate on ``dof`` degrees
    of freedom: ``P(|T| > t(1 − alpha/2))`` for the noncentral t ``T = (Z + λ) / U``,
    ``λ = effect / se``, computed as ``E_U[Φ(λ − t·U) + Φ(−λ − t·U)]`` (scipy's noncentral t
    gives NaN in its far tail)."""
    if se <= 0:
        return 1.0
    crit = float(stats.t.ppf(1.0 - alpha / 2.0, dof))
    shift = abs(effect) / se

    def rejects(u: np.ndarray) -> np.ndarray:
        both = special.ndtr(shift - crit * u) + special.ndtr(-shift - crit * u)
        return np.asarray(both, dtype=float)

    return _over_u(rejects, dof)


def power_equivalence(margin: float, se: float, dof: float, alpha: float = ALPHA) -> float:
    """Power of two one-sided tests at ``alpha`` (the ``1 − 2·alpha`` interval inside
    ±``margin``) when the true difference is 0, the estimate's true standard error ``se`` and
    its estimate on ``dof`` degrees of freedom: with ``k = margin / se``,
    ``E_U[max(0, 2Φ(k − t·U) − 1)]``, ``t = t(1 − alpha)``."""
    if se <= 0:
        return 1.0
    crit = float(stats.t.ppf(1.0 - alpha, dof))
    k = margin / se

    def inside(u: np.ndarray) -> np.ndarray:
        return np.asarray(2.0 * special.ndtr(k - crit * u) - 1.0, dtype=float)

    return _over_u(inside, dof, end=k / crit)


def _power(goal: Goal, se: float, dof: float) -> float:
    if goal.mode == "effect":
        return power_test(goal.delta, se, dof, goal.alpha)
    return power_equivalence(goal.delta, se, dof, goal.alpha)


# ------------------------------------------------------------------------------ cost


@dataclass(frozen=True)
class Costs:
    """What one run of an experiment costs at (R, S), from its config and stored timings."""

    arms: int
    searched: int  # arms with something to search
    n_trials: int  # per searched arm and replicate
    trial_seconds: float | None  # mean stored seconds per trial; None: none recorded
    eval_seconds: float | None  # mean stored seconds per evaluation run; None: none recorded

    def trials(self, replicates: int) -> int:
        return self.searched * replicates * self.n_trials

    def evaluations(self, replicates: int, seeds: int) -> int:
        """An arm with nothing to search is evaluated once, for every replicate."""
        return seeds * (self.searched * replicates + self.arms - self.searched)

    def runs(self, replicates: int, seeds: int) -> int:
        return self.trials(replicates) + self.evaluations(replicates, seeds)

    def seconds(self, replicates: int, seeds: int) -> float | None:
        trials, evals = self.trials(replicates), self.evaluations(replicates, seeds)
        if (trials and self.trial_seconds is None) or (evals and self.eval_seconds is None):
            return None
        return trials * (self.trial_seconds or 0.0) + evals * (self.eval_seconds or 0.0)


# ------------------------------------------------------------------------------ the plan


@dataclass(frozen=True)
class Goal:
    """What the plan is for: detect ``delta`` (mode "effect") or show equivalence within
    ±``delta`` (mode "equivalence"), with ``power``, at the verdict's ``alpha``."""

    mode: str
    delta: float
    power: float
    alpha: float = ALPHA

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")
        if not (math.isfinite(self.delta) and self.delta > 0):
            raise ValueError(f"delta must be a finite number > 0, got {self.delta!r}")
        if not 0 < self.power < 1:
            raise ValueError(f"power must lie strictly between 0 and 1, got {self.power!r}")


@dataclass(frozen=True)
class Cell:
    """One (R, S) of the grid: its power, and its cost."""

    replicates: int
    seeds: int
    power: float
    trials: int
    runs: int  # trials + evaluation runs
    seconds: float | None  # estimated compute time; None: no stored timing


@dataclass(frozen=True)
class Plan:
    experiment: str
    unit: str  # "points" (accuracy × 100) or "test loss"
    goal: Goal
    components: PlanComponents
    costs: Costs
    cells: tuple[Cell, ...]  # R-major: every S of R = 3, then of R = 4, ...
    recommended: Cell | None  # the cheapest cell reaching the power; None: none does


def _grid(
    goal: Goal,
    se_dof: Callable[[int, int], tuple[float, float]],
    cost: Callable[[int, int], tuple[int, int, float | None]],
    replicates: Sequence[int],
    seeds: Sequence[int],
) -> tuple[tuple[Cell, ...], Cell | None]:
    cells = []
    for r in replicates:
        for s in seeds:
            se, dof = se_dof(r, s)
            trials, runs, seconds = cost(r, s)
            cells.append(Cell(r, s, _power(goal, se, dof), trials, runs, seconds))
    reaching = [c for c in cells if c.power >= goal.power]
    best = min(
        reaching,
        key=lambda c: (c.seconds or 0.0, c.runs, c.replicates, c.seeds),
        default=None,
    )
    return tuple(cells), best


def build_plan(
    experiment: str,
    unit: str,
    goal: Goal,
    parts: PlanComponents,
    costs: Costs,
    replicates: Sequence[int] = REPLICATES,
    seeds: Sequence[int] = SEEDS,
) -> Plan:
    """The power and cost of every (R, S) of the grid for one experiment, and the cheapest
    cell reaching ``goal.power``."""

    def se_dof(r: int, s: int) -> tuple[float, float]:
        return math.sqrt(parts.variance(s) / r), float(r - 1)

    def cost(r: int, s: int) -> tuple[int, int, float | None]:
        return costs.trials(r), costs.runs(r, s), costs.seconds(r, s)

    cells, best = _grid(goal, se_dof, cost, replicates, seeds)
    return Plan(experiment, unit, goal, parts, costs, cells, best)


# ------------------------------------------------------------------------------ suites


@dataclass(frozen=True)
class SuiteMember:
    """One experiment of a suite: its components and costs, or why it is left out."""

    experiment: str
    components: PlanComponents | None
    costs: Costs | None
    reason: str | None = None  # why it is left out of the plan; None when it is in


@dataclass(frozen=True)
class Heterogeneity:
    """Between-experiment variance of the true difference: DerSimonian–Laird's point
    estimate (the suite report's) and the Q-profile upper bound planned with."""

    k: int  # experiments planned with
    tau2: float
    tau2_upper: float
    level: float


@dataclass(frozen=True)
class SuitePlan:
    suite: str
    unit: str
    goal: Goal
    members: tuple[SuiteMember, ...]
    heterogeneity: Heterogeneity
    cells: tuple[Cell, ...]  # (R, S) taken by every experiment of the plan
    recommended: Cell | None


def tau2_upper(
    estimates: Sequence[float], errors: Sequence[float], level: float = PLAN_CONFIDENCE
) -> float:
    """The one-sided ``level`` Q-profile upper bound of τ² (Viechtbauer 2007): the τ² at which
    the generalized Q statistic falls to the ``1 − level`` quantile of χ²(k − 1)."""
    y = np.asarray(estimates, dtype=float)
    s2 = np.asarray(errors, dtype=float) ** 2
    k = len(y)
    if k < 2:
        return 0.0
    target = float(stats.chi2.ppf(1.0 - level, k - 1))

    def q(t2: float) -> float:
        w = 1.0 / (s2 + t2)
        centre = float(np.sum(w * y) / np.sum(w))
        return float(np.sum(w * (y - centre) ** 2))

    if q(0.0) <= target:
        return 0.0
    high = max(float(np.var(y)), float(s2.max()), 1e-12)
    while q(high) > target:
        high *= 4.0
    return float(optimize.brentq(lambda t2: q(t2) - target, 0.0, high, xtol=1e-12 * high))


def build_suite_plan(
    suite: str,
    unit: str,
    goal: Goal,
    members: Sequence[SuiteMember],
    replicates: Sequence[int] = REPLICATES,
    seeds: Sequence[int] = SEEDS,
    level: float = PLAN_CONFIDENCE,
) -> SuitePlan:
    """The power of the suite's pooled test, every planned experiment run at (R, S), and the
    summed cost. Members without components are listed, not planned with; at least one must
    have them."""
    used = [m for m in members if m.components is not None and m.costs is not None]
    if not used:
        raise ValueError("no experiment of the suite has components to plan with")
    parts = [m.components for m in used if m.components is not None]
    costs = [m.costs for m in used if m.costs is not None]
    y = [p.mean for p in parts]
    se = [p.mean_sd / math.sqrt(p.replicates) for p in parts]
    weighable = [(yi, si) for yi, si in zip(y, se, strict=True) if si > 0]
    tau2 = 0.0
    if len(weighable) >= 2:
        tau2 = pool([w[0] for w in weighable], [w[1] for w in weighable]).tau2
    upper = tau2_upper([w[0] for w in weighable], [w[1] for w in weighable], level)
    k = len(parts)

    def se_dof(r: int, s: int) -> tuple[float, float]:
        if k == 1:  # one experiment: its own Student t over its replicate means
            return math.sqrt(parts[0].variance(s) / r), float(r - 1)
        each = [p.variance(s) / r + upper for p in parts]
        if min(each) <= 0:  # an experiment without spread: the pooled estimate is exact
            return 0.0, float(k - 1)
        return math.sqrt(1.0 / math.fsum(1.0 / v for v in each)), float(k - 1)

    def cost(r: int, s: int) -> tuple[int, int, float | None]:
        each = [c.seconds(r, s) for c in costs]
        seconds = None if any(x is None for x in each) else math.fsum(x or 0.0 for x in each)
        return sum(c.trials(r) for c in costs), sum(c.runs(r, s) for c in costs), seconds

    cells, best = _grid(goal, se_dof, cost, replicates, seeds)
    return SuitePlan(
        suite, unit, goal, tuple(members), Heterogeneity(k, tau2, upper, level), cells, best
    )


# ------------------------------------------------------------------------------ advice


def advice(
    differences: Mapping[int, Sequence[float]],
    costs: Costs,
    effect: float,
    power: float = 0.8,
) -> Plan | None:
    """The plan for detecting ``effect`` with ``power`` from the paired differences by
    replicate, as ``dynl2 plan --effect`` gives it; None when it cannot be planned (fewer than
    2 replicates, or an effect that is not a positive number)."""
    if sum(1 for v in differences.values() if len(v) > 0) < 2:
        return None
    if not (math.isfinite(effect) and effect > 0):
        return None
    parts = estimate_components(differences)
    return build_plan("", "", Goal("effect", effect, power), parts, costs)
