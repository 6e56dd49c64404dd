"""The statistics of the verdict: means with Student-t intervals, and paired comparisons.

Pure functions over plain lists of floats; no store, no pandas. NaN never comes in: callers
drop missing values (a diverged evaluation) first.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping
from dataclasses import dataclass

from scipy import stats

CONFIDENCE = 0.95
ALPHA = 0.05  # significance level of the paired t-test
FEW_SEEDS = 5  # fewer paired seeds than this: the verdict carries a warning


@dataclass(frozen=True)
class MeanCI:
    mean: float
    half_width: float | None  # 95% CI half width (Student t); None with fewer than 2 values
    n: int

    @property
    def low(self) -> float | None:
        return None if self.half_width is None else self.mean - self.half_width

    @property
    def high(self) -> float | None:
        return None if self.half_width is None else self.mean + self.half_width


@dataclass(frozen=True)
class Paired:
    """``arm − baseline`` over the seeds both have, in the verdict's display unit."""

    arm: str
    baseline: str
    n_pairs: int
    diff: MeanCI | None  # None without any shared seed
    p_value: float | None  # paired t-test (scipy.stats.ttest_rel); None below 2 pairs
    cohen_dz: float | None  # mean(diff) / sd(diff); None below 2 pairs or with sd 0
    significant: bool  # p < ALPHA and the CI excludes 0
    winner: str | None  # the arm that did better, when significant


def mean_ci(values: list[float]) -> MeanCI:
    """Mean and the half width of its 95% confidence interval (Student t, n − 1 dof)."""
    if not values:
        raise ValueError("`values` must hold at least one number, but got an empty list.")
    mean = statistics.fmean(values)
    if len(values) < 2:
        return MeanCI(mean, None, len(values))
    sem = statistics.stdev(values) / math.sqrt(len(values))
    t = float(stats.t.ppf(0.5 + CONFIDENCE / 2, len(values) - 1))
    return MeanCI(mean, t * sem, len(values))


def paired(
    arm: str,
    baseline: str,
    arm_values: Mapping[int, float],
    baseline_values: Mapping[int, float],
    *,
    higher_is_better: bool,
) -> Paired:
    """Compare two arms seed by seed (only seeds present in both)."""
    seeds = sorted(set(arm_values) & set(baseline_values))
    a = [arm_values[s] for s in seeds]
    b = [baseline_values[s] for s in seeds]
    diffs = [x - y for x, y in zip(a, b, strict=True)]
    if not diffs:
        return Paired(arm, baseline, 0, None, None, None, False, None)
    diff = mean_ci(diffs)
    p_value: float | None = None
    dz: float | None = None
    if len(diffs) >= 2:
        sd = statistics.stdev(diffs)
        if sd > 0:
            dz = diff.mean / sd
            p_value = float(stats.ttest_rel(a, b).pvalue)
        else:  # every seed moved by exactly the same amount: the test is undefined
            p_value = 1.0 if diff.mean == 0 else 0.0
    significant, winner = decide(arm, baseline, diff, p_value, higher_is_better=higher_is_better)
    return Paired(arm, baseline, len(diffs), diff, p_value, dz, significant, winner)


def decide(
    arm: str, baseline: str, diff: MeanCI, p_value: float | None, *, higher_is_better: bool
) -> tuple[bool, str | None]:
    """(significant, winner) of ``arm − baseline``: significant when p < ALPHA and the
    interval excludes 0; the winner is the arm that did better then."""
    excludes_zero = (
        diff.low is not None and diff.high is not None and (diff.low > 0 or diff.high < 0)
    )
    significant = p_value is not None and p_value < ALPHA and excludes_zero
    if not significant:
        return False, None
    arm_better = diff.mean > 0 if higher_is_better else diff.mean < 0
    return True, arm if arm_better else baseline


def tost_p(mean: float, se: float, dof: float, margin: float) -> float:
    """Two one-sided t-tests of ``mean`` (standard error ``se``, ``dof`` degrees of freedom)
    against ±``margin``: the larger of the two p-values (equivalence at level a when < a)."""
    if se <= 0:
        return 0.0 if abs(mean) < margin else 1.0
    p_low = float(stats.t.sf((mean + margin) / se, dof))  # H0: difference <= −margin
    p_high = float(stats.t.cdf((mean - margin) / se, dof))  # H0: difference >= +margin
    return max(p_low, p_high)


def p_text(p: float | None) -> str:
    """``p = 0.003``, ``p < 0.001`` or ``p n/a``."""
    if p is None:
        return "p n/a"
    if p < 0.001:
        return "p < 0.001"
    return f"p = {p:.3f}"


def signed(x: float, digits: int) -> str:
    """``+1.20`` / ``−0.60`` (a real minus sign)."""
    text = f"{abs(x):.{digits}f}"
    return f"−{text}" if x < 0 and float(text) != 0 else f"+{text}"


def sentence(c: Paired, *, accuracy: bool, digits: int, over: str | None = None) -> str:
    """One plain sentence: who beat whom by how much, or that the data cannot tell.

    ``accuracy``: the differences are test accuracy in percentage points (higher is better);
    otherwise test loss (lower is better). ``over``: what the pairs are, when not seeds
    ("3 searches × 10 seeds").
    """
    seeds = over or f"{c.n_pairs} seed{'s' if c.n_pairs != 1 else ''}"
    unit = " points" if accuracy else " in test loss"
    if c.diff is None:
        return f"{c.arm} and {c.baseline} share no evaluation seed yet: no comparison."
    if c.diff.half_width is None:
        return (
            f"only {seeds} in common: {c.arm} − {c.baseline} = "
            f"{signed(c.diff.mean, digits)}{unit}, with no confidence interval."
        )
    if c.significant and c.winner is not None:
        loser = c.baseline if c.winner == c.arm else c.arm
        size = f"{abs(c.diff.mean):.{digits}f} ± {c.diff.half_width:.{digits}f}"
        how = f"by {size} points" if accuracy else f"with a test loss lower by {size}"
        return f"{c.winner} beat {loser} {how} ({p_text(c.p_value)}, {seeds})."
    assert c.diff.low is not None and c.diff.high is not None
    return (
        f"no significant difference at {seeds}; the CI of the difference "
        f"({c.arm} − {c.baseline}) is [{signed(c.diff.low, digits)}, "
        f"{signed(c.diff.high, digits)}]{unit} ({p_text(c.p_value)})."
    )
