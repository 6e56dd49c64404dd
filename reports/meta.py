"""One difference pooled across the experiments of a suite: a random-effects meta-analysis.

Each experiment gives an estimate y_i of the same kind of difference (say dynamic − fixed, in
points) with its standard error s_i. The experiments differ in dataset, model, optimizer and
length, so their true effects differ too; the random-effects model says so: y_i = μ + u_i + e_i
with u_i ~ N(0, τ²) between experiments and e_i ~ N(0, s_i²) within. DerSimonian and Laird
(Controlled Clinical Trials 7, 1986) estimate τ² by the method of moments:

    w_i = 1 / s_i²,   ȳ = Σ w_i·y_i / Σ w_i,   Q = Σ w_i·(y_i − ȳ)²,   df = k − 1
    τ² = max(0, (Q − df) / (Σ w_i − Σ w_i² / Σ w_i))
    w*_i = 1 / (s_i² + τ²),   μ̂ = Σ w*_i·y_i / Σ w*_i,   se(μ̂) = 1 / √Σ w*_i

The interval is not the normal μ̂ ± z·se(μ̂), which is too narrow with few experiments and
with standard errors that are themselves estimated from a few replicates (IntHout, Ioannidis
and Borm, BMC Medical Research Methodology 14:25, 2014): it is the Hartung–Knapp–Sidik–
Jonkman interval in its modified form (Röver, Knapp and Friede, BMC Medical Research
Methodology 15:99, 2015),

    q_HK = Σ w*_i·(y_i − μ̂)² / (k − 1),   se_HK = se(μ̂)·√max(1, q_HK),   μ̂ ± t(k − 1)·se_HK

with Student's t on k − 1 degrees of freedom; the p value is that t test's. The max(1, ·) keeps
it from ever being narrower than the DerSimonian–Laird interval it widens. Where q_HK ≥ 1 the
numbers are statsmodels' ``combine_effects(method_re="dl", use_t=True)`` "random effect wls"
row, against which the tests check them (and μ̂, τ², Q, I² against its "random effect" row, the
convention of metafor's ``rma(method="DL")``). One experiment is its own estimate, with its own
interval: its Student t on the degrees of freedom it was estimated with (``dfs``), normal when
none are given. Heterogeneity: I² = max(0, (Q − df) / Q) (Higgins and Thompson, Statistics in
Medicine 21, 2002), the share of the spread that is not sampling error; with one experiment
there is none to measure and I² = τ² = 0.

The interval shown and stored is cut at what the difference can be (``bounds``: ±100 for
accuracy points), as every interval of :mod:`reports.stats` is, and flagged ``truncated``: with
few experiments t(k − 1) is wide (12.7 at k = 2) and μ̂ ± t·se_HK can reach past ±100. The
p value and the suite's decisions read the t statistic, the uncut interval's; ``half_width``
stays the t interval's. Pure functions, no store.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from scipy import stats

from .stats import CONFIDENCE, UNBOUNDED, MeanCI, cut


@dataclass(frozen=True)
class Pooled:
    """The random-effects estimate of the mean difference, and the heterogeneity around it;
    its interval cut at what the difference can be (``bounds``): ``low``/``high`` are the
    interval shown and stored, ``truncated`` says whether the t interval reached past a bound."""

    mean: float  # μ̂
    half_width: float  # t(df)·se: the uncut interval's half width (CONFIDENCE, Student t)
    se: float  # se_HK: se(μ̂) widened by √max(1, q_HK); one experiment: its own
    p_value: float  # two-sided, H0: μ = 0 (Student t on ``df``)
    tau2: float  # between-experiment variance τ²
    i2: float  # I² in [0, 1]
    q: float  # Cochran's Q
    k: int  # experiments pooled
    df: float  # the t distribution's degrees of freedom: k − 1 (one experiment: its own; inf)
    bounds: tuple[float, float] = UNBOUNDED  # what the difference can be

    @property
    def low(self) -> float:
        return cut(self.mean, self.half_width, self.bounds)[0]

    @property
    def high(self) -> float:
        return cut(self.mean, self.half_width, self.bounds)[1]

    @property
    def truncated(self) -> bool:
        """Whether the t interval reached past a bound and was cut there."""
        return cut(self.mean, self.half_width, self.bounds)[2]


def standard_error(diff: MeanCI) -> float:
    """The standard error behind a Student-t interval of :func:`reports.stats.mean_ci`: its
    half width over t(n − 1). Needs an interval (n ≥ 2)."""
    if diff.half_width is None or diff.n < 2:
        raise ValueError(f"an interval needs at least 2 values, got n = {diff.n}")
    return diff.half_width / float(stats.t.ppf(0.5 + CONFIDENCE / 2, diff.n - 1))


def pool(
    estimates: Sequence[float],
    errors: Sequence[float],
    dfs: Sequence[float] | None = None,
    bounds: tuple[float, float] = UNBOUNDED,
) -> Pooled:
    """DerSimonian–Laird random-effects pooling of ``estimates`` with standard ``errors``, and
    the modified Hartung–Knapp interval, cut at ``bounds`` (what the difference can be; the p
    value is the uncut t test's); ``dfs``, the degrees of freedom behind each error, serve one
    experiment alone (its own Student t interval)."""
    if len(estimates) != len(errors):
        raise ValueError(f"{len(estimates)} estimates but {len(errors)} standard errors")
    if dfs is not None and len(dfs) != len(errors):
        raise ValueError(f"{len(errors)} standard errors but {len(dfs)} degrees of freedom")
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
    if k > 1:
        q_hk = math.fsum(wi * (yi - mean) ** 2 for wi, yi in zip(w_star, estimates, strict=True))
        se *= math.sqrt(max(1.0, q_hk / df))
        t_df = float(df)
    else:
        t_df = float(dfs[0]) if dfs is not None else math.inf
        if not t_df > 0:
            raise ValueError(f"degrees of freedom must be > 0, got {t_df!r}")
    quantile = float(stats.t.ppf(0.5 + CONFIDENCE / 2, t_df))
    p_value = float(2 * stats.t.sf(abs(mean) / se, t_df))
    i2 = max(0.0, (q - df) / q) if df > 0 and q > 0 else 0.0
    return Pooled(mean, quantile * se, se, p_value, tau2, i2, q, k, t_df, bounds)
