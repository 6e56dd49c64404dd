"""One difference pooled across the experiments of a suite: a random-effects meta-analysis.

Each experiment gives an estimate y_i of the same kind of difference (say dynamic − fixed, in
points) with its standard error s_i. The experiments differ in dataset, model, optimizer and
length, so their true effects differ too; the random-effects model says so: y_i = μ + u_i + e_i
with u_i ~ N(0, τ²) between experiments and e_i ~ N(0, s_i²) within. DerSimonian and Laird
(Controlled Clinical Trials 7, 1986) estimate τ² by the method of moments:

    w_i = 1 / s_i²,   ȳ = Σ w_i·y_i / Σ w_i,   Q = Σ w_i·(y_i − ȳ)²,   df = k − 1
    τ² = max(0, (Q − df) / (Σ w_i − Σ w_i² / Σ w_i))
    w*_i = 1 / (s_i² + τ²),   μ̂ = Σ w*_i·y_i / Σ w*_i,   se(μ̂) = 1 / √Σ w*_i

and the interval μ̂ ± z·se(μ̂) with the normal quantile (the convention of metafor's
``rma(method="DL")`` and statsmodels' ``combine_effects(method_re="dl")``, against which the
tests check these numbers). Heterogeneity: I² = max(0, (Q − df) / Q) (Higgins and Thompson,
Statistics in Medicine 21, 2002), the share of the spread that is not sampling error; with one
experiment there is none to measure and I² = τ² = 0. Pure functions, no store.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from scipy import stats

from .stats import CONFIDENCE, MeanCI


@dataclass(frozen=True)
class Pooled:
    """The random-effects estimate of the mean difference, and the heterogeneity around it."""

    mean: float  # μ̂
    low: float  # the interval's ends (CONFIDENCE, normal)
    high: float
    se: float  # se(μ̂)
    p_value: float  # two-sided, H0: μ = 0 (normal)
    tau2: float  # between-experiment variance τ²
    i2: float  # I² in [0, 1]
    q: float  # Cochran's Q
    k: int  # experiments pooled


def standard_error(diff: MeanCI) -> float:
    """The standard error behind a Student-t interval of :func:`reports.stats.mean_ci`: its
    half width over t(n − 1). Needs an interval (n ≥ 2)."""
    if diff.half_width is None or diff.n < 2:
        raise ValueError(f"an interval needs at least 2 values, got n = {diff.n}")
    return diff.half_width / float(stats.t.ppf(0.5 + CONFIDENCE / 2, diff.n - 1))


def pool(estimates: Sequence[float], errors: Sequence[float]) -> Pooled:
    """DerSimonian–Laird random-effects pooling of ``estimates`` with standard ``errors``."""
    if len(estimates) != len(errors):
        raise ValueError(f"{len(estimates)} estimates but {len(errors)} standard errors")
    if not estimates:
        raise ValueError("nothing to pool: no estimates")
    for s in errors:
        if not (math.isfinite(s) and s > 0):
            raise ValueError(f"a standard error must be finite and > 0, got {s!r}")
    for y in estimates:
        if not math.isfinite(y):
            raise ValueError(f"an estimate must be finite, got {y!r}")
    k = len(estimates)
    w = [1.0 / (s * s) for s in errors]
    sum_w = math.fsum(w)
    fixed = math.fsum(wi * yi for wi, yi in zip(w, estimates, strict=True)) / sum_w
    q = math.fsum(wi * (yi - fixed) ** 2 for wi, yi in zip(w, estimates, strict=True))
    df = k - 1
    c = sum_w - math.fsum(wi * wi for wi in w) / sum_w
    tau2 = max(0.0, (q - df) / c) if df > 0 and c > 0 else 0.0
    w_star = [1.0 / (s * s + tau2) for s in errors]
    sum_star = math.fsum(w_star)
    mean = math.fsum(wi * yi for wi, yi in zip(w_star, estimates, strict=True)) / sum_star
    se = 1.0 / math.sqrt(sum_star)
    z = float(stats.norm.ppf(0.5 + CONFIDENCE / 2))
    p_value = float(2 * stats.norm.sf(abs(mean) / se))
    i2 = max(0.0, (q - df) / q) if df > 0 and q > 0 else 0.0
    return Pooled(mean, mean - z * se, mean + z * se, se, p_value, tau2, i2, q, k)
