"""The statistics of the verdict: means with Student-t intervals, and paired comparisons.

Two rules hold every interval this package shows or stores:

- **Three units or none** (:data:`MIN_UNITS`). An interval, and the p-value of a comparison,
  needs at least three independent units (the replicates of a search; the seeds of one search
  when there is one): two degrees of freedom. With two, the Student t has one degree of freedom
  and nothing a reader can use comes out of it. Its 97.5% quantile is 12.71, so the expected
  half width is 7.2 σ (σ the sd of one unit), 5.2 times what a known σ would give; at three it
  is 2.2 σ, 1.9 times (then 1.5 at four, 1.3 at five): three is the first count at which the
  interval is within twice its best possible width. And the sd rests on one contrast, a
  chi-square with one degree of freedom: in 20% of draws it is below a quarter of the true σ,
  which turns a lucky pair into p = 0.008 (6% of draws at three units, 2% at four). The t-test
  keeps its 5% level only as far as the two units are normal, which two units cannot check.
  So below three units there is no interval and no p-value: the verdict shows the units' own
  values and calls the comparison inconclusive for lack of them (``tests/reports/test_stats.py``).
- **Inside what the metric can be** (:class:`MeanCI` ``bounds``). Accuracy lies in [0, 100]
  points, a difference of accuracies in [−100, +100], a loss at or above 0. A Student-t interval
  knows none of that; where it reaches past a bound it is cut there and marked ``truncated``.
  The cut interval covers the true value whenever the uncut one does (the true value is always
  inside the bounds), so its coverage is the t interval's; and the test and the decision read
  the same t, where an interval computed on another scale (a logit, a log) would disagree with
  the p-value beside it. ``half_width`` stays the t interval's, what a pooled analysis needs.

Pure functions over plain lists of floats; no store, no pandas. NaN never comes in: callers
drop missing values (a diverged evaluation) first.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from reports.t_quantile import t975

# SciPy is imported by the functions that need it: an arm's interval (mean_ci) does not, and
# `dynl2 status` prints intervals without waiting for SciPy's import.

CONFIDENCE = 0.95  # t975 is its quantile: 0.5 + CONFIDENCE / 2
ALPHA = 0.05  # significance level of the paired t-test
FEW_SEEDS = 5  # fewer paired seeds than this: the verdict carries a warning
MIN_UNITS = 3  # independent units an interval and a p-value need (see the module's docstring)
UNBOUNDED = (-math.inf, math.inf)
ACCURACY_POINTS = (0.0, 100.0)  # an accuracy, in percentage points
ACCURACY_DIFFERENCE = (-100.0, 100.0)  # a difference of two accuracies, in points
LOSS = (0.0, math.inf)  # a loss


@dataclass(frozen=True)
class MeanCI:
    """A mean and its 95% interval (Student t), cut at what the quantity can be (``bounds``):
    ``low``/``high`` are the interval shown and stored, ``truncated`` says whether the t
    interval reached past a bound."""

    mean: float
    half_width: float | None  # the t interval's half width; None below MIN_UNITS values
    n: int
    bounds: tuple[float, float] = UNBOUNDED  # what the quantity can be

    @property
    def low(self) -> float | None:
        if self.half_width is None:
            return None
        return cut(self.mean, self.half_width, self.bounds)[0]

    @property
    def high(self) -> float | None:
        if self.half_width is None:
            return None
        return cut(self.mean, self.half_width, self.bounds)[1]

    @property
    def truncated(self) -> bool:
        """Whether the t interval reached past a bound and was cut there."""
        if self.half_width is None:
            return False
        return cut(self.mean, self.half_width, self.bounds)[2]


def cut(mean: float, half_width: float, bounds: tuple[float, float]) -> tuple[float, float, bool]:
    """The interval ``mean ± half_width`` cut at ``bounds``: its shown ends and whether it
    reached past one (``truncated``). Every interval shown or stored is cut here: a verdict's
    (:class:`MeanCI`) and a suite's pooled one (:class:`reports.meta.Pooled`)."""
    low, high = mean - half_width, mean + half_width
    return max(bounds[0], low), min(bounds[1], high), low < bounds[0] or high > bounds[1]


def difference_bounds(accuracy: bool) -> tuple[float, float]:
    """What a difference of the test metric can be: of two accuracies (points), ±100; of two
    losses, anything."""
    return ACCURACY_DIFFERENCE if accuracy else UNBOUNDED


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


def mean_ci(values: list[float], bounds: tuple[float, float] = UNBOUNDED) -> MeanCI:
    """Mean and its 95% confidence interval (Student t, n − 1 dof), cut at ``bounds``; no
    interval below :data:`MIN_UNITS` values."""
    if not values:
        raise ValueError("`values` must hold at least one number, but got an empty list.")
    mean = statistics.fmean(values)
    if len(values) < MIN_UNITS:
        return MeanCI(mean, None, len(values), bounds)
    sem = statistics.stdev(values) / math.sqrt(len(values))
    t = t975(len(values) - 1)  # scipy.stats.t.ppf(0.5 + CONFIDENCE / 2, n - 1), as SciPy gives it
    return MeanCI(mean, t * sem, len(values), bounds)


def paired(
    arm: str,
    baseline: str,
    arm_values: Mapping[int, float],
    baseline_values: Mapping[int, float],
    *,
    higher_is_better: bool,
    bounds: tuple[float, float] = UNBOUNDED,
) -> Paired:
    """Compare two arms seed by seed (only seeds present in both); the interval is cut at
    ``bounds`` (what a difference can be), and there is none, nor a p-value, below
    :data:`MIN_UNITS` seeds."""
    seeds = sorted(set(arm_values) & set(baseline_values))
    a = [arm_values[s] for s in seeds]
    b = [baseline_values[s] for s in seeds]
    diffs = [x - y for x, y in zip(a, b, strict=True)]
    if not diffs:
        return Paired(arm, baseline, 0, None, None, None, False, None)
    diff = mean_ci(diffs, bounds)
    p_value: float | None = None
    dz: float | None = None
    if len(diffs) >= MIN_UNITS:
        sd = statistics.stdev(diffs)
        if sd > 0:
            from scipy import stats

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
    from scipy import stats

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


CUT = "†"  # marks an interval cut at what the metric can be


def ci_text(ci: MeanCI | None, digits: int, *, sign: bool = False) -> str:
    """A mean and its interval as every page and the terminal show it: ``70.33 ± 2.10``; a
    cut one by its ends, ``96.50 [88.10, 100.00]†``; the mean alone without an interval; ``–``
    without a mean. ``sign``: a difference, signed (``+1.20``)."""
    if ci is None:
        return "–"

    def show(x: float) -> str:
        return signed(x, digits) if sign else f"{x:.{digits}f}"

    mean = show(ci.mean)
    if ci.half_width is None or ci.low is None or ci.high is None:
        return mean
    if ci.truncated:
        return f"{mean} [{show(ci.low)}, {show(ci.high)}]{CUT}"
    return f"{mean} ± {ci.half_width:.{digits}f}"


def units_text(values: Sequence[float], digits: int, *, sign: bool = False) -> str:
    """What stands in for an interval over too few units: each unit's own value,
    ``(searches: 57.80, 82.86)``."""
    shown = [signed(x, digits) if sign else f"{x:.{digits}f}" for x in values]
    return f"(searches: {', '.join(shown)})"


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
