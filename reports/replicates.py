"""Statistics over repeated searches: a verdict about schemes, not about two lucky configurations.

An experiment with ``[search] replicates = R`` searches every arm R times, independently, and
evaluates each replicate's best configuration on the same S seeds. The comparison of two arms
then has one paired difference per (replicate, seed), ``d[r, s] = arm[r, s] − baseline[r, s]``,
and two sources of spread: the *search* (which configuration a search happens to pick, and
how well it then does) and the *seed* (initialization and batch order of one training run).

Model and method
----------------
``d[r, s] = μ + a[r] + e[r, s]``, with ``a[r] ~ N(0, σ_search²)`` the search effect of
replicate ``r`` (both arms' searches: a replicate is one search of every arm) and
``e[r, s] ~ N(0, σ_seed²)`` the seed noise around it. The seeds are common random numbers:
seed ``s`` is the same trainer seed in every arm and replicate, so a seed's effect shared by the
two arms cancels in ``d``; what is left of it varies with the configuration, which differs by
replicate, and sits in ``e``. The unit that repeats independently is the replicate, so the
interval and the p-value are a Student t on the R replicate means ``m[r] = mean_s d[r, s]``
with R − 1 degrees of freedom. Under the model it is exact for balanced data (every replicate
has the same seeds) whatever the ratio of the two components: ``Var(m[r]) = σ_search² +
σ_seed² / S`` is estimated by the sample variance of the ``m[r]`` themselves. We chose it over
a random-effects fit (REML needs iterations and more replicates than a user runs to estimate
``σ_search`` well; its Wald interval is anti-conservative at R = 3..5) and over a hierarchical
bootstrap (a bootstrap of 3 to 5 replicates has too few distinct resamples to give a 95%
interval). Its price is power: R − 1 degrees of freedom make a wide t quantile at R = 3 (4.30);
``tests/reports/test_replicates.py`` measures the false-positive rate and the power by
simulation.

The two components are reported from the one-way analysis of variance of ``d``:
``seed_sd = sqrt(MS_within)`` (pooled within-replicate spread) and ``search_sd =
sqrt(max(0, (MS_between − MS_within) / n0)))`` with ``n0`` the effective number of seeds per
replicate (the usual unbalanced-ANOVA constant; S when balanced).

With R = 1 there is no search spread to measure: the comparison is the paired t over the
seeds, as before replicates (:func:`reports.stats.paired`), and it is about the two
configurations this one search chose; ``tests/reports/test_replicates.py`` shows that read as
a statement about the schemes it gives false positives far above 5%.

Pure functions over plain mappings; no store, no pandas.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
from scipy import stats

from reports.stats import CONFIDENCE, MIN_UNITS, UNBOUNDED, MeanCI, Paired, decide, paired

__all__ = ["Components", "Replicated", "components", "replicated"]

Key = tuple[int, int]  # (replicate, seed index)


@dataclass(frozen=True)
class Components:
    """Standard deviations of the paired difference: between searches and between seeds."""

    search_sd: float | None  # None below 2 replicates
    seed_sd: float | None  # None when no replicate has 2 seeds


@dataclass(frozen=True)
class Replicated:
    """``arm − baseline`` paired by (replicate, seed); ``comparison`` holds the interval, the
    p-value and the winner (its ``n_pairs`` counts (replicate, seed) pairs, its ``diff.n`` the
    replicates the interval is over)."""

    comparison: Paired
    replicates: int  # replicates with at least one shared seed
    seeds: int  # distinct seeds among the pairs
    components: Components
    method: str  # "replicate means" or "seeds only"
    # The paired differences by replicate (what P(better) and a sequential stage read).
    by_replicate: Mapping[int, tuple[float, ...]] = field(default_factory=dict, compare=False)


def _pairs(
    arm_values: Mapping[Key, float], baseline_values: Mapping[Key, float]
) -> dict[int, list[float]]:
    """Differences grouped by replicate, over the (replicate, seed) keys both arms have."""
    by_replicate: dict[int, list[float]] = {}
    for key in sorted(set(arm_values) & set(baseline_values)):
        by_replicate.setdefault(key[0], []).append(arm_values[key] - baseline_values[key])
    return by_replicate


def components(by_replicate: Mapping[int, list[float]]) -> Components:
    """The search and seed standard deviations of the differences (one-way ANOVA, see the
    module's docstring)."""
    groups = [np.asarray(v, dtype=float) for v in by_replicate.values() if len(v) > 0]
    sizes = np.array([len(g) for g in groups], dtype=float)
    total = float(sizes.sum())
    within_dof = total - len(groups)
    seed_sd: float | None = None
    ms_within = 0.0
    if within_dof > 0:
        ss_within = sum(float(((g - g.mean()) ** 2).sum()) for g in groups)
        ms_within = ss_within / within_dof
        seed_sd = math.sqrt(ms_within)
    if len(groups) < 2:
        return Components(None, seed_sd)
    grand = float(sum(float(g.sum()) for g in groups) / total)
    ss_between = float(
        sum(n * (float(g.mean()) - grand) ** 2 for n, g in zip(sizes, groups, strict=True))
    )
    ms_between = ss_between / (len(groups) - 1)
    n0 = (total - float((sizes**2).sum()) / total) / (len(groups) - 1)
    search_var = max(0.0, (ms_between - ms_within) / n0) if n0 > 0 else 0.0
    return Components(math.sqrt(search_var), seed_sd)


def replicated(
    arm: str,
    baseline: str,
    arm_values: Mapping[Key, float],
    baseline_values: Mapping[Key, float],
    *,
    higher_is_better: bool,
    bounds: tuple[float, float] = UNBOUNDED,
) -> Replicated:
    """Compare two arms over replicates and seeds (keys ``(replicate, seed)``, only keys both
    arms have). With 2 or more replicates that share a seed: the t on replicate means (see the
    module's docstring), which needs :data:`reports.stats.MIN_UNITS` replicates for an interval
    and a p-value (with 2, the comparison has the mean and the replicates' own differences
    only); with one: the paired t over its seeds (:func:`reports.stats.paired`). The interval
    is cut at ``bounds``, what a difference of the metric can be."""
    by_replicate = _pairs(arm_values, baseline_values)
    n_pairs = sum(len(v) for v in by_replicate.values())
    seeds = len({key[1] for key in set(arm_values) & set(baseline_values)})
    parts = components(by_replicate)
    kept = {r: tuple(v) for r, v in by_replicate.items()}
    if len(by_replicate) < 2:
        (only,) = by_replicate or {0: []}
        first = {s: v for (r, s), v in arm_values.items() if r == only}
        second = {s: v for (r, s), v in baseline_values.items() if r == only}
        comparison = paired(
            arm, baseline, first, second, higher_is_better=higher_is_better, bounds=bounds
        )
        return Replicated(comparison, len(by_replicate), seeds, parts, "seeds only", kept)
    means = np.array([float(np.mean(v)) for v in by_replicate.values()])
    r = len(means)
    mean = float(means.mean())
    if r < MIN_UNITS:  # one degree of freedom: no interval, no p-value (reports.stats)
        none = Paired(arm, baseline, n_pairs, MeanCI(mean, None, r, bounds), None, None, False,
                      None)  # fmt: skip
        return Replicated(none, r, seeds, parts, "replicate means", kept)
    sd = float(means.std(ddof=1))
    t = float(stats.t.ppf(0.5 + CONFIDENCE / 2, r - 1))
    half = t * sd / math.sqrt(r)
    if sd > 0:
        p_value = float(2 * stats.t.sf(abs(mean) / (sd / math.sqrt(r)), r - 1))
        dz: float | None = mean / sd
    else:  # every replicate moved by exactly the same amount: the test is undefined
        p_value = 1.0 if mean == 0 else 0.0
        dz = None
    diff = MeanCI(mean, half, r, bounds)
    significant, winner = decide(arm, baseline, diff, p_value, higher_is_better=higher_is_better)
    comparison = Paired(arm, baseline, n_pairs, diff, p_value, dz, significant, winner)
    return Replicated(comparison, r, seeds, parts, "replicate means", kept)
