"""Group-sequential decisions over search replicates: stop adding replicates once the data decide.

``[search] replicates = { min = 3, max = 12, step = 2 }`` runs ``min`` replicates of every arm,
looks at the comparison, and adds ``step`` replicates per stage until the comparison of an arm
with the baseline is decided (*better*, *worse*, or, with a margin δ, *equivalent*) or ``max``
replicates have run. Each look is the test of :mod:`reports.replicates`: a Student t on the
replicate means ``m[r]`` of the paired differences ``arm − baseline``, with R − 1 degrees of
freedom. Testing at 5% after every look would not be a 5% test: every look is one more chance
of a false positive, and with looks at 3, 5, 7, 9, 11 and 12 replicates about one study in six
with no true difference would be called significant (``bench/sequential_calibration.py``
measures it). The levels here keep the whole procedure near ``alpha``.

Error spending (Lan and DeMets 1983)
------------------------------------
The looks are indexed by their *information fraction* ``t_k = counts[k] / max``: the variance of
the mean of R replicate means is proportional to 1 / R, so the information is proportional to
R. The spending function ``α(t)`` says how much of the familywise type I error may have been
spent by information ``t``; look k spends ``α(t_k) − α(t_{k−1})``. We use the O'Brien–Fleming
type, Lan and DeMets' own two-sided form

    α(t) = 2 − 2 Φ(z_{1−α/2} / √t),

which is 0 at ``t = 0`` and ``alpha`` at ``t = 1``. (Published tables, and software that
builds a symmetric two-sided design from two one-sided ones, spend ``α/2`` per side with
``2 − 2 Φ(z_{1−α/4} / √t)``; that spends even less early, 4.877 instead of 4.383 at the first of
five equal looks, and slightly more at the last, 2.031 instead of 2.064. The tests reproduce
those tables with the same recursion.) Why this shape: it spends almost nothing at
the first looks (0.009% of 5% at 3 of 12 replicates), which is when R is small and the t
quantile with R − 1 degrees of freedom is wide, so an early stop takes overwhelming evidence and
a lucky first few searches cannot end a study; and it keeps most of the fixed-sample level for
the last look (3.4% instead of 5% at 12 of 12 with looks at 3, 5, …, 11, 12), so a study that
runs to ``max`` loses little power against running ``max`` replicates without looks (a true
+2 points with the spreads of ``tests/reports/test_replicates.py``: found in 97% of studies,
after 8.4 replicates on average, against 98% with 12 replicates always). A
Pocock-type function would spend evenly and pay for early stops with a much stricter last look.
Spending rather than a fixed boundary table is what lets the looks sit at any replicate counts
(any ``min``, ``step`` and ``max``, or the counts a stopped study really had when it resumed):
the boundaries are recomputed for whatever fractions the looks have.

Boundaries (Armitage, McPherson and Rowe 1969)
----------------------------------------------
Under H0 the standardized statistics ``Z_k`` of the looks are those of a Brownian motion
``B(t)`` read at ``t_k``: ``Z_k = B(t_k) / √t_k``, with independent Gaussian increments. The
two-sided critical values ``c_k`` solve, look by look,

    P(|Z_1| < c_1, …, |Z_{k−1}| < c_{k−1}, |Z_k| ≥ c_k) = α(t_k) − α(t_{k−1}).

:func:`boundaries` computes this exactly up to quadrature error: it carries the sub-density of
``B(t_k)`` over the continuation region ``|B| < c_k √t_k`` on a grid (Simpson's rule), convolves
it with the Gaussian increment to the next look, and solves for the next ``c_k`` with a root
finder. No simulation; a few milliseconds for a dozen looks, and cached in :class:`Stages`.

From z boundaries to the t test
-------------------------------
The boundaries are for a z statistic with known variance, but the replicate test is a t with
R − 1 degrees of freedom. We use the usual *nominal significance level* conversion: each
``c_k`` becomes a two-sided level ``ℓ_k = 2 (1 − Φ(c_k))``, and look k rejects when the t test's
p-value is below ``ℓ_k``. Each look then has exactly its nominal level on its own (the t test is
exact), and only the dependence between looks is taken from the z model. It is slightly
optimistic: successive t statistics, each with its own variance estimate, are less correlated
than the z statistics, so more of them cross somewhere. With looks at 3, 5, …, 11, 12 the
familywise false-positive rate is about 5.5% instead of 5% (``tests/reports/test_sequential.py``
and ``bench/sequential_calibration.py`` measure it), against 16% when testing at 5% at every
look; over designs from 2 to 20 replicates it lies between 5.3% and 5.9%, the most with looks
at every replicate from 2 or 3 on, where the degrees of freedom are fewest. Exact t boundaries
would need the joint law of the variance estimates as well; half a point was not worth it.

Equivalence
-----------
With a margin δ (in the comparison's unit) a look also tries to show that the difference is
inside ``(−δ, +δ)``: the two one-sided tests (TOST, Schuirmann 1987) of ``mean ≤ −δ`` and
``mean ≥ +δ``, each at the look's level ``ℓ_k``, i.e. the ``(1 − 2ℓ_k)`` interval lies inside
the margin. With one look ``ℓ = alpha`` and this is the ordinary TOST at 5% (the 90% interval).
Equivalence comes first, as in :mod:`reports.decision`: a look whose interval lies inside the
margin says equivalent even if it also rejects ``mean = 0`` (the difference is then real but
smaller than worth having, and the report's sentence says so).

Pure functions over plain sequences; no store, no pandas.
"""

from __future__ import annotations

import bisect
import functools
import itertools
import math
import operator
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import optimize, special, stats

from reports.stats import MIN_UNITS
from reports.stats import tost_p as tost

__all__ = [
    "DECISIONS",
    "Look",
    "Stages",
    "boundaries",
    "look",
    "spent",
    "stage_counts",
]

DECISIONS = ("better", "worse", "equivalent", "continue", "inconclusive")

_GRID_STEP = 1 / 12  # grid step of the recursive density, as a share of an increment's sd
_GRID_MIN, _GRID_MAX = 401, 2001  # points of the grid (odd: Simpson's rule)
_TAIL = 8.5  # an unbounded continuation region is cut at this many sds (mass beyond: 1e-17)


@dataclass(frozen=True)
class Stages:
    """The looks of a sequential study: the replicate counts at which it decides, and the
    familywise two-sided level ``alpha`` of the whole procedure.

    ``counts`` strictly increasing, the last being the most replicates the study may run
    (information fraction 1). A look at fewer than 2 replicates cannot test anything; the
    alpha it spends is lost, which is why :func:`stage_counts` starts at 2 at least.
    """

    counts: tuple[int, ...]
    alpha: float = 0.05

    def __post_init__(self) -> None:
        try:
            counts = tuple(operator.index(c) for c in self.counts)
        except TypeError:
            raise ValueError(f"`counts` must be integers, but got {self.counts!r}.") from None
        if not counts:
            raise ValueError("`counts` must hold at least one look, but got none.")
        if counts[0] < 1:
            raise ValueError(f"`counts` must be at least 1 replicate, but got {counts!r}.")
        if any(b <= a for a, b in itertools.pairwise(counts)):
            raise ValueError(f"`counts` must be strictly increasing, but got {counts!r}.")
        if not 0 < self.alpha < 1:
            raise ValueError(f"`alpha` must lie in (0, 1), but got {self.alpha!r}.")
        object.__setattr__(self, "counts", counts)

    @property
    def fractions(self) -> tuple[float, ...]:
        """Information fraction of each look: ``counts[k] / counts[-1]``."""
        return tuple(c / self.counts[-1] for c in self.counts)

    @property
    def levels(self) -> tuple[float, ...]:
        """Nominal two-sided p-value threshold of each look, ``2 (1 − Φ(c_k))`` (see the
        module's docstring); ``alpha`` exactly with one look."""
        return _levels(self.counts, self.alpha)

    def stage_of(self, replicates: int) -> int:
        """1-based index of the last look whose count is at most ``replicates`` (1 below the
        first look: fewer replicates than a look are judged at its level, which is stricter
        than their information would allow, never laxer)."""
        return max(1, bisect.bisect_right(self.counts, replicates))


@functools.lru_cache(maxsize=64)
def _levels(counts: tuple[int, ...], alpha: float) -> tuple[float, ...]:
    cs = boundaries([c / counts[-1] for c in counts], alpha)
    return tuple(float(2 * stats.norm.sf(c)) for c in cs)


def stage_counts(minimum: int, maximum: int, step: int) -> tuple[int, ...]:
    """The looks of ``replicates = { min, max, step }``: ``(min, min + step, …, max)``, ``max``
    always the last look even when ``max − min`` is not a multiple of ``step``."""
    if minimum < 2:
        raise ValueError(
            f"replicates `min` must be at least 2 (a look needs 2 replicates for a t test), "
            f"but got {minimum}."
        )
    if maximum < minimum:
        raise ValueError(
            f"replicates `max` must be at least `min` ({minimum}), but got {maximum}."
        )
    if step < 1:
        raise ValueError(f"replicates `step` must be at least 1, but got {step}.")
    return (*range(minimum, maximum, step), maximum)


def spent(fraction: float, alpha: float = 0.05) -> float:
    """Type I error spent by information ``fraction``: the Lan–DeMets O'Brien–Fleming-type
    function ``2 − 2Φ(z_{1−α/2} / √t)``; 0 at ``t = 0``, ``alpha`` at ``t = 1``."""
    if not 0 <= fraction <= 1:
        raise ValueError(f"`fraction` must lie in [0, 1], but got {fraction!r}.")
    if not 0 < alpha < 1:
        raise ValueError(f"`alpha` must lie in (0, 1), but got {alpha!r}.")
    if fraction == 0:
        return 0.0
    if fraction == 1:
        return float(alpha)
    z = float(stats.norm.isf(alpha / 2))
    return float(2 * stats.norm.sf(z / math.sqrt(fraction)))


def _simpson(n: int) -> np.ndarray:
    """Simpson's weights for ``n`` (odd) equally spaced points, step 1."""
    w = np.ones(n)
    w[1:-1:2] = 4.0
    w[2:-1:2] = 2.0
    return w / 3.0


def _grid(half: float, sd: float) -> tuple[np.ndarray, np.ndarray]:
    """Points and Simpson weights over ``[−half, half]``, fine against the increment ``sd``."""
    n = math.ceil(2 * half / (sd * _GRID_STEP)) | 1
    n = min(_GRID_MAX, max(_GRID_MIN, n))
    x = np.linspace(-half, half, n)
    return x, _simpson(n) * (x[1] - x[0])


def _excess(
    c: float, x: np.ndarray, mass: np.ndarray, sd: float, root_t: float, target: float
) -> float:
    """Chance of crossing ``|Z| ≥ c`` at the look at ``t = root_t²`` first, minus ``target``:
    ``P(|B(t)| ≥ c √t | B(t_prev) = x)`` integrated against the sub-density (``mass`` holds
    density × quadrature weight at the points ``x``; ``sd`` is the increment's sd)."""
    b = c * root_t
    return float(mass @ (special.ndtr((x - b) / sd) + special.ndtr((-b - x) / sd)) - target)


def boundaries(fractions: Sequence[float], alpha: float = 0.05) -> tuple[float, ...]:
    """Two-sided z critical values ``c_k`` of the looks at information ``fractions`` (strictly
    increasing, in (0, 1]), such that under H0 the chance that the first crossing of
    ``|Z_k| ≥ c_k`` happens at look k is ``spent(t_k) − spent(t_{k−1})``.

    Computed by the recursive density of Armitage, McPherson and Rowe (see the module's
    docstring). A look whose increment of spending is 0 (it underflows for tiny fractions)
    gets ``c = inf``.
    """
    ts = _fractions(fractions)
    cum = [0.0, *(spent(t, alpha) for t in ts)]
    return _recursion(ts, targets=[b - a for a, b in itertools.pairwise(cum)])[0]


def _fractions(fractions: Sequence[float]) -> list[float]:
    ts = [float(t) for t in fractions]
    if not ts:
        raise ValueError("`fractions` must hold at least one look, but got none.")
    if any(not 0 < t <= 1 for t in ts):
        raise ValueError(f"`fractions` must lie in (0, 1], but got {ts!r}.")
    if any(b <= a for a, b in itertools.pairwise(ts)):
        raise ValueError(f"`fractions` must be strictly increasing, but got {ts!r}.")
    return ts


def _recursion(
    ts: Sequence[float],
    *,
    targets: Sequence[float] | None = None,
    cs: Sequence[float] | None = None,
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(critical values, first-crossing probabilities under H0) of looks at information ``ts``:
    each ``c_k`` solved so that its first-crossing probability is ``targets[k]``, or taken
    from ``cs`` (the probabilities are then the result; the tests check published boundaries
    this way).

    Works in Brownian-motion scale ``B = Z √t``: ``dens`` is the sub-density of ``B(t_k)`` on
    the paths that have not crossed yet, on a grid over the continuation region
    ``|B| < c_k √t_k``; the next look's is its convolution with the Gaussian increment.
    """
    out: list[float] = []
    exits: list[float] = []
    x = w = dens = np.empty(0)
    for k, t in enumerate(ts):
        if k == 0:
            if cs is not None:
                c = float(cs[0])
            else:
                assert targets is not None
                c = float(stats.norm.isf(targets[0] / 2)) if targets[0] > 0 else math.inf
            crossing = float(2 * stats.norm.sf(c))
        else:
            sd = math.sqrt(t - ts[k - 1])
            args = (x, w * dens, sd, math.sqrt(t))
            if cs is not None:
                c = float(cs[k])
            else:
                assert targets is not None
                args_t = (*args, targets[k])
                if targets[k] <= 0:
                    c = math.inf
                elif _excess(0.0, *args_t) <= 0:  # all that is left would cross (numerically)
                    c = 0.0
                else:
                    c = float(optimize.brentq(_excess, 0.0, 50.0, args=args_t, xtol=1e-12))
            crossing = _excess(c, *args, 0.0) if math.isfinite(c) else 0.0
        out.append(c)
        exits.append(crossing)
        if k + 1 == len(ts):
            break
        next_sd = math.sqrt(ts[k + 1] - t)
        half = min(c * math.sqrt(t), _TAIL * math.sqrt(t))
        y, wy = _grid(half, next_sd)
        if k == 0:
            new = stats.norm.pdf(y, scale=math.sqrt(t))
        else:
            kernel = stats.norm.pdf((y[:, None] - x[None, :]) / sd) / sd
            new = kernel @ (w * dens)
        x, w, dens = y, wy, new
    return tuple(out), tuple(exits)


@dataclass(frozen=True)
class Look:
    """The decision of one look at ``arm − baseline`` over ``replicates`` replicate means.

    ``low``/``high``: the (1 − level) two-sided Student-t interval of the mean difference, the
    interval that excludes 0 exactly when ``p_value < level``; ``low == high == mean`` when
    every replicate mean is equal, and ``−inf``/``+inf`` below 2 replicates (no spread to
    measure). The equivalence decision uses the (1 − 2·level) interval (TOST), which is
    narrower.
    """

    stage: int  # 1-based
    of: int  # number of looks
    replicates: int  # replicate means used
    decision: str  # one of DECISIONS
    level: float  # nominal two-sided level at this look
    p_value: float | None  # two-sided t test of mean(m) = 0, R − 1 dof; None below 2
    tost_p: float | None  # max of the one-sided p-values against ±margin; None without margin
    low: float
    high: float


def look(
    means: Sequence[float], stages: Stages, *, margin: float | None, higher_is_better: bool
) -> Look:
    """Decide at the look ``len(means)`` replicates reach (:meth:`Stages.stage_of`).

    With a ``margin``, ``"equivalent"`` when the TOST p-value is below ``level``; otherwise
    ``p < level`` → ``"better"`` when the mean difference favours the arm (positive when
    ``higher_is_better``, negative otherwise), else ``"worse"``; otherwise ``"inconclusive"``
    once ``max`` replicates have run and ``"continue"`` before.

    All replicate means equal (sd 0): the t test is undefined; as in
    :func:`reports.replicates.replicated`, ``p = 1`` when they are all 0 and ``p = 0``
    otherwise, and the TOST p-value is 0 inside the margin and 1 on or outside it.
    """
    if margin is not None and not (math.isfinite(margin) and margin > 0):
        raise ValueError(f"`margin` must be a positive number or None, but got {margin!r}.")
    m = np.asarray(means, dtype=float)
    if not np.isfinite(m).all():
        raise ValueError("`means` must be finite numbers (drop missing replicates first).")
    r = len(m)
    stage = stages.stage_of(r)
    of = len(stages.counts)
    level = stages.levels[stage - 1]
    final = r >= stages.counts[-1]
    if r < MIN_UNITS:  # no test on one degree of freedom (reports.stats)
        decision = "inconclusive" if final else "continue"
        return Look(stage, of, r, decision, level, None, None, -math.inf, math.inf)
    if (m == m[0]).all():  # exactly: a mean and sd in floating point need not be
        mean, sd = float(m[0]), 0.0
    else:
        mean, sd = float(m.mean()), float(m.std(ddof=1))
    dof = r - 1
    tost_p: float | None = None
    if sd > 0:
        se = sd / math.sqrt(r)
        p_value = float(2 * special.stdtr(dof, -abs(mean) / se))
        half = float(-special.stdtrit(dof, level / 2)) * se
    else:
        p_value = 1.0 if mean == 0 else 0.0
        half = 0.0
    if margin is not None:  # the one TOST of reports.stats (it handles sd 0 as above)
        tost_p = tost(mean, sd / math.sqrt(r), dof, margin)
    if tost_p is not None and tost_p < level:
        decision = "equivalent"
    elif p_value < level:
        favours_arm = mean > 0 if higher_is_better else mean < 0
        decision = "better" if favours_arm else "worse"
    else:
        decision = "inconclusive" if final else "continue"
    return Look(stage, of, r, decision, level, p_value, tost_p, mean - half, mean + half)
