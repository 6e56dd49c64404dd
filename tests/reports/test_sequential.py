"""Group-sequential decisions over search replicates (reports/sequential.py), checked against
published boundaries, an independent Monte Carlo of Brownian motion, and a simulation of whole
sequential studies (no training).

The simulated study: the paired difference of one (replicate, seed) is ``d[r, s] = μ + a[r] +
e[r, s]`` with ``a`` the search effect of the replicate (sd √2 · 1.0 point: two arms' searches
of sd 1.0) and ``e`` the seed noise (sd √2 · 1.5 points: two training runs of sd 1.5), over
S = 10 seeds, as in tests/reports/test_replicates.py. The replicate means then have sd
√(2 + 2 · 1.5² / 10) = 1.57 points. Looks at 3, 5, 7, 9, 11 and 12 replicates
(``replicates = { min = 3, max = 12, step = 2 }``).

The decisions of whole studies are computed vectorized (``_sequential``) so that 20000 studies
take a fraction of a second; every scenario of the whole procedure checks that they are the
decisions :func:`look` makes, study by study, on its first 1000 studies.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from scipy import special, stats

from reports import sequential
from reports.sequential import Look, Stages, boundaries, look, spent, stage_counts

SEARCH_SD, SEED_SD, SEEDS = 1.0, 1.5, 10
STAGES = Stages(stage_counts(3, 12, 2))
STUDIES = 20000  # sampling error of a rate near 5%: 0.15 points
CHECKED = 1000  # studies per scenario also decided by look() itself, one by one
MARGIN = 3.0  # points: reachable at 7 replicates when the arms are equal


# ---------------------------------------------------------------------------------------------
# spending and boundaries


def test_spent_is_zero_at_the_start_alpha_at_the_end_and_increasing():
    assert spent(0.0) == 0.0
    assert spent(1.0) == 0.05
    assert spent(1.0, alpha=0.1) == 0.1
    grid = np.linspace(0, 1, 101)
    values = [spent(float(t)) for t in grid]
    assert all(b > a for a, b in itertools.pairwise(values))
    # the O'Brien–Fleming shape: almost nothing at a quarter of the information
    assert spent(0.25) == pytest.approx(2 * stats.norm.sf(1.959964 * 2), rel=1e-5)
    assert spent(0.25) < 1e-4
    with pytest.raises(ValueError, match="fraction"):
        spent(1.5)
    with pytest.raises(ValueError, match="alpha"):
        spent(0.5, alpha=0.0)


def test_one_look_is_the_fixed_sample_test():
    (c,) = boundaries([1.0])
    assert c == pytest.approx(1.959964, abs=1e-6)
    assert Stages((12,)).levels == pytest.approx((0.05,), abs=1e-12)
    assert Stages((12,), alpha=0.1).levels == pytest.approx((0.1,), abs=1e-12)


def _per_side_targets(fractions: list[float], alpha: float) -> list[float]:
    """First-crossing probabilities of the symmetric two-sided design that spends ``alpha / 2``
    on each side with ``2 − 2Φ(z_{1−α/4} / √t)``, the form of the published tables."""
    z = stats.norm.isf(alpha / 4)
    cum = [0.0] + [2 * (2 - 2 * stats.norm.cdf(z / math.sqrt(t))) for t in fractions]
    return [b - a for a, b in itertools.pairwise(cum)]


@pytest.mark.parametrize(
    "published",
    [
        (3.710, 2.511, 1.993),
        (4.333, 2.963, 2.359, 2.014),
        (4.877, 3.357, 2.680, 2.290, 2.031),
    ],
)
def test_the_recursion_reproduces_published_lan_demets_tables(published):
    """Published O'Brien–Fleming-type Lan–DeMets boundaries for equally spaced looks at two-sided
    5% (DeMets and Lan 1994; Jennison and Turnbull 2000; gsDesign's ``sfLDOF`` for a symmetric
    two-sided design) use the per-side form of the spending function. Given that spending, the
    recursion reproduces them within 0.001."""
    k = len(published)
    fractions = [i / k for i in range(1, k + 1)]
    solved, _ = sequential._recursion(fractions, targets=_per_side_targets(fractions, 0.05))
    assert solved == pytest.approx(published, abs=1e-3)


@pytest.mark.parametrize(
    "published",
    [(2.797, 1.977), tuple(2.040 * math.sqrt(5 / k) for k in range(1, 6))],
)
def test_the_recursion_gives_the_published_o_brien_fleming_boundaries_their_level(published):
    """The original O'Brien–Fleming (1979) boundaries ``C √(K / k)`` (C = 1.977 for K = 2,
    2.040 for K = 5 at 5%) cross with total probability 5% under H0."""
    k = len(published)
    _, exits = sequential._recursion([i / k for i in range(1, k + 1)], cs=published)
    assert sum(exits) == pytest.approx(0.05, abs=5e-4)


@pytest.mark.parametrize(
    "fractions",
    [
        [0.5, 1.0],
        [0.2, 0.4, 0.6, 0.8, 1.0],
        [c / 12 for c in (3, 5, 7, 9, 11, 12)],
        [0.1, 0.15, 0.7, 1.0],
    ],
)
def test_boundaries_match_a_monte_carlo_of_brownian_motion(fractions):
    """400000 Brownian paths under H0 (fixed seed), read at the looks: the share that first
    crosses ``|Z_k| ≥ c_k`` at look k is the spending increment, within 4.5 standard errors."""
    cs = boundaries(fractions)
    # closed form of the first look: all it can spend is its own tail
    assert cs[0] == pytest.approx(stats.norm.isf(0.05 / 2) / math.sqrt(fractions[0]), rel=1e-9)
    rng = np.random.default_rng(2024)
    paths = 400_000
    steps = np.diff([0.0, *fractions])
    b = np.cumsum(rng.normal(0, 1, (paths, len(fractions))) * np.sqrt(steps), axis=1)
    z = b / np.sqrt(fractions)
    crossed = np.abs(z) >= np.asarray(cs)
    first = np.where(crossed.any(axis=1), crossed.argmax(axis=1), -1)
    cum = [0.0, *(spent(t) for t in fractions)]
    for k in range(len(fractions)):
        expected = cum[k + 1] - cum[k]
        observed = float(np.mean(first == k))
        se = math.sqrt(max(expected, 1e-6) / paths)
        assert abs(observed - expected) < 4.5 * se + 1e-5, (k, observed, expected)
    assert float(np.mean(first >= 0)) == pytest.approx(0.05, abs=4.5 * math.sqrt(0.05 / paths))


def test_boundaries_reject_bad_fractions():
    with pytest.raises(ValueError, match="increasing"):
        boundaries([0.5, 0.5, 1.0])
    with pytest.raises(ValueError, match=r"\(0, 1\]"):
        boundaries([0.0, 1.0])
    with pytest.raises(ValueError, match="at least one"):
        boundaries([])


def test_the_levels_of_the_default_looks():
    """O'Brien–Fleming shape: nearly nothing at 3 of 12 replicates, most of alpha at the end."""
    levels = STAGES.levels
    assert STAGES.counts == (3, 5, 7, 9, 11, 12)
    assert all(b > a for a, b in itertools.pairwise(levels))
    assert levels[0] == pytest.approx(spent(3 / 12), rel=1e-9)  # the first look: closed form
    assert levels[0] < 1e-4
    assert 0.03 < levels[-1] < 0.05
    assert STAGES.fractions[-1] == 1.0


# ---------------------------------------------------------------------------------------------
# stages


def test_stage_counts():
    assert stage_counts(3, 12, 2) == (3, 5, 7, 9, 11, 12)
    assert stage_counts(3, 11, 2) == (3, 5, 7, 9, 11)
    assert stage_counts(4, 4, 1) == (4,)
    assert stage_counts(2, 5, 10) == (2, 5)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((1, 12, 2), "`min` must be at least 2"),
        ((5, 4, 1), r"`max` must be at least `min` \(5\)"),
        ((3, 12, 0), "`step` must be at least 1"),
    ],
)
def test_stage_counts_rejects_bad_settings(args, message):
    with pytest.raises(ValueError, match=message):
        stage_counts(*args)


def test_stage_of():
    assert [STAGES.stage_of(r) for r in range(0, 15)] == [
        1, 1, 1, 1, 1, 2, 2, 3, 3, 4, 4, 5, 6, 6, 6,
    ]  # fmt: skip


def test_stages_reject_bad_counts():
    with pytest.raises(ValueError, match="strictly increasing"):
        Stages((3, 3, 5))
    with pytest.raises(ValueError, match="at least one"):
        Stages(())
    with pytest.raises(ValueError, match="alpha"):
        Stages((3, 5), alpha=1.0)
    with pytest.raises(ValueError, match="integers"):
        Stages((3, 5.5))  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------
# one look


def test_one_look_is_the_t_test_and_the_ordinary_tost():
    """With a single look the level is alpha: the p-value is the one-sample t test, the interval
    the 95% t interval, and equivalence is the 90% interval inside the margin (TOST at 5%)."""
    stages = Stages((8,))
    rng = np.random.default_rng(7)
    seen = set()
    for _ in range(300):
        means = rng.normal(rng.uniform(-1.5, 1.5), 1.0, 8)
        result = look(list(means), stages, margin=1.0, higher_is_better=True)
        assert result.level == pytest.approx(0.05, abs=1e-12)
        assert result.p_value == pytest.approx(stats.ttest_1samp(means, 0.0).pvalue, rel=1e-9)
        sem = stats.sem(means)
        low, high = stats.t.interval(0.95, 7, loc=means.mean(), scale=sem)
        assert (result.low, result.high) == pytest.approx((low, high), rel=1e-9, abs=1e-12)
        low90, high90 = stats.t.interval(0.90, 7, loc=means.mean(), scale=sem)
        inside = low90 > -1.0 and high90 < 1.0
        if inside:  # equivalence first: a real difference smaller than the margin too
            assert result.decision == "equivalent"
        elif result.p_value >= 0.05:
            assert result.decision == "inconclusive"
        else:
            assert result.decision == ("better" if means.mean() > 0 else "worse")
        seen.add(result.decision)
    assert seen == {"better", "worse", "equivalent", "inconclusive"}


def test_the_interval_excludes_zero_exactly_when_the_look_rejects():
    rng = np.random.default_rng(8)
    for _ in range(300):
        r = int(rng.integers(3, 13))
        means = list(rng.normal(1.0, 1.5, r))
        result = look(means, STAGES, margin=None, higher_is_better=False)
        assert result.p_value is not None
        assert (result.p_value < result.level) == (result.low > 0 or result.high < 0)
        assert result.tost_p is None
        assert result.stage == STAGES.stage_of(r) and result.of == 6 and result.replicates == r


def test_lower_is_better_swaps_better_and_worse():
    means = [-3.0, -3.2, -2.9, -3.1, -3.05]
    assert look(means, Stages((5,)), margin=None, higher_is_better=False).decision == "better"
    assert look(means, Stages((5,)), margin=None, higher_is_better=True).decision == "worse"


def test_all_replicate_means_equal():
    """sd 0: the t test is undefined. A common non-zero shift is a difference (p = 0), a
    common zero is not (p = 1) and is equivalent to 0 under any margin; the interval is the
    point."""
    shifted = look([0.4] * 3, STAGES, margin=None, higher_is_better=True)
    assert (shifted.decision, shifted.p_value, shifted.low, shifted.high) == (
        "better", 0.0, 0.4, 0.4,
    )  # fmt: skip
    assert look([0.4] * 3, STAGES, margin=None, higher_is_better=False).decision == "worse"
    # inside the margin: equivalent first, though the shift is real
    assert look([0.4] * 3, STAGES, margin=1.0, higher_is_better=False).decision == "equivalent"
    assert look([1.4] * 3, STAGES, margin=1.0, higher_is_better=False).decision == "worse"
    zero = look([0.0] * 3, STAGES, margin=1.0, higher_is_better=True)
    assert (zero.decision, zero.p_value, zero.tost_p) == ("equivalent", 1.0, 0.0)
    assert look([0.0] * 3, STAGES, margin=None, higher_is_better=True).decision == "continue"
    last = look([0.0] * 12, STAGES, margin=None, higher_is_better=True)
    assert (last.decision, last.stage) == ("inconclusive", 6)


def test_fewer_than_two_means():
    one = look([1.0], STAGES, margin=1.0, higher_is_better=True)
    assert one == Look(1, 6, 1, "continue", STAGES.levels[0], None, None, -math.inf, math.inf)
    assert look([], STAGES, margin=None, higher_is_better=True).decision == "continue"
    assert look([1.0], Stages((1,)), margin=None, higher_is_better=True).decision == (
        "inconclusive"
    )


def test_look_rejects_bad_input():
    with pytest.raises(ValueError, match="margin"):
        look([1.0, 2.0], STAGES, margin=0.0, higher_is_better=True)
    with pytest.raises(ValueError, match="finite"):
        look([1.0, math.nan], STAGES, margin=None, higher_is_better=True)


# ---------------------------------------------------------------------------------------------
# calibration of whole studies


def _simulate(rng: np.random.Generator, studies: int, effect: float) -> np.ndarray:
    """Replicate means ``m[study, r]`` of ``d[r, s] = effect + a[r] + e[r, s]``, 12 replicates."""
    a = rng.normal(0, math.sqrt(2) * SEARCH_SD, (studies, STAGES.counts[-1]))
    e = rng.normal(0, math.sqrt(2) * SEED_SD, (studies, STAGES.counts[-1], SEEDS))
    return np.asarray(effect + a + e.mean(axis=2))


def _sequential(
    m: np.ndarray, margin: float | None, *, equivalence_only: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """(decision, replicates used) of every study, the rule of :func:`look` vectorized.
    ``equivalence_only``: stop only for equivalence (what the TOST alone would declare)."""
    decision = np.full(len(m), "continue", dtype=object)
    used = np.full(len(m), STAGES.counts[-1])
    for count, level in zip(STAGES.counts, STAGES.levels, strict=True):
        x = m[:, :count]
        mean = x.mean(axis=1)
        se = x.std(axis=1, ddof=1) / math.sqrt(count)
        p = 2 * special.stdtr(count - 1, -np.abs(mean) / se)
        now = np.full(len(m), "continue", dtype=object)
        if not equivalence_only:
            now[(p < level) & (mean > 0)] = "better"
            now[(p < level) & (mean < 0)] = "worse"
        if margin is not None:  # equivalence first: it overrides a real but small difference
            tost = np.maximum(
                special.stdtr(count - 1, -(mean + margin) / se),
                special.stdtr(count - 1, (mean - margin) / se),
            )
            now[tost < level] = "equivalent"
        if count == STAGES.counts[-1]:
            now[now == "continue"] = "inconclusive"
        fresh = (decision == "continue") & (now != "continue")
        decision[fresh] = now[fresh]
        used[fresh] = count
    return decision, used


def _one_by_one(m: np.ndarray, margin: float | None) -> tuple[np.ndarray, np.ndarray]:
    """The same studies decided by :func:`look`, look by look, as the runner does."""
    decisions, used = [], []
    for row in m:
        for count in STAGES.counts:
            result = look(list(row[:count]), STAGES, margin=margin, higher_is_better=True)
            if result.decision != "continue":
                break
        decisions.append(result.decision)
        used.append(count)
    return np.array(decisions, dtype=object), np.array(used)


def _study(seed: int, effect: float, margin: float | None) -> tuple[np.ndarray, np.ndarray]:
    m = _simulate(np.random.default_rng(seed), STUDIES, effect)
    decision, used = _sequential(m, margin)
    checked, checked_used = _one_by_one(m[:CHECKED], margin)
    assert list(checked) == list(decision[:CHECKED])
    assert list(checked_used) == list(used[:CHECKED])
    return decision, used


def _naive(m: np.ndarray) -> float:
    """Share of studies that a t test at 5% after every look calls significant at some look."""
    hit = np.zeros(len(m), dtype=bool)
    for count in STAGES.counts:
        x = m[:, :count]
        t = x.mean(axis=1) / (x.std(axis=1, ddof=1) / math.sqrt(count))
        hit |= 2 * special.stdtr(count - 1, -np.abs(t)) < 0.05
    return float(hit.mean())


def test_false_positive_rate_is_calibrated_and_looking_naively_is_not(record_property):
    """No true difference. The sequential procedure calls 'better' or 'worse' in [3%, 6%] of
    20000 studies (its sampling error is 0.15 points; its rate is about 5.5%: each look's t test
    is exact, but the t statistics of successive looks, each with its own variance estimate,
    are less correlated than the z statistics the boundaries are computed for, half a point of
    excess). The same data tested at 5% after every look exceed 6%, and the sequential rate."""
    rng = np.random.default_rng(11)
    m = _simulate(rng, STUDIES, 0.0)
    decision, used = _sequential(m, None)
    checked, _ = _one_by_one(m[:CHECKED], None)
    assert list(checked) == list(decision[:CHECKED])
    rate = float(np.isin(decision, ["better", "worse"]).mean())
    naive = _naive(m)
    record_property("false_positive_rate", rate)
    record_property("naive_false_positive_rate", naive)
    print(
        f"\nμ = 0: false positives sequential {rate:.4f}, naive (5% at every look) {naive:.4f}; "
        f"mean replicates {used.mean():.2f}"
    )
    assert 0.03 <= rate <= 0.06
    assert naive > 0.06
    assert naive > rate


def test_power_at_two_points_and_the_replicates_it_saves(record_property):
    """A true +2 points: the sequential procedure finds it nearly as often as 12 replicates
    without looks would (noncentral t; within 3 points), stops well before 12 on average, and
    almost never gets the sign wrong."""
    decision, used = _study(12, 2.0, None)
    power = float((decision == "better").mean())
    sd = math.sqrt(2 * SEARCH_SD**2 + 2 * SEED_SD**2 / SEEDS)
    r = STAGES.counts[-1]
    crit = stats.t.isf(0.025, r - 1)
    fixed = float(stats.nct.sf(crit, r - 1, 2.0 / (sd / math.sqrt(r))))
    record_property("power", power)
    record_property("mean_replicates", float(used.mean()))
    print(
        f"\nμ = +2: power sequential {power:.4f} (12 replicates, no looks: {fixed:.4f}); "
        f"mean replicates {used.mean():.2f}; worse {float((decision == 'worse').mean()):.4f}"
    )
    assert power > fixed - 0.03
    assert used.mean() < 9.5
    # the wrong sign: only when the first 3 replicates happen to agree closely (2 dof)
    assert float((decision == "worse").mean()) < 0.001


def test_equivalence_is_reached_when_equal_and_rarely_on_the_margin(record_property):
    """Margin 3 points. Equal arms: equivalence is declared in most studies (after 6.9
    replicates on average). True difference on the margin: the TOST's false-equivalence rate
    is at most 5% plus three sampling errors (0.15 points each over 20000 studies), both for
    the whole procedure (where 'better' usually comes first) and for the equivalence test
    alone."""
    equal, used = _study(13, 0.0, MARGIN)
    reached = float((equal == "equivalent").mean())
    on_margin, _ = _study(14, MARGIN, MARGIN)
    false_equivalence = float((on_margin == "equivalent").mean())
    alone, _ = _sequential(_simulate(np.random.default_rng(15), STUDIES, MARGIN), MARGIN,
                           equivalence_only=True)  # fmt: skip
    alone_rate = float((alone == "equivalent").mean())
    record_property("equivalence_rate", reached)
    record_property("false_equivalence_rate", false_equivalence)
    print(
        f"\nmargin {MARGIN}: equivalent at μ = 0 {reached:.4f} (mean replicates "
        f"{used.mean():.2f}); at μ = margin {false_equivalence:.4f}, equivalence test alone "
        f"{alone_rate:.4f}"
    )
    tolerance = 3 * math.sqrt(0.05 * 0.95 / STUDIES)
    assert reached > 0.9
    assert false_equivalence <= 0.05 + tolerance
    assert alone_rate <= 0.05 + tolerance
