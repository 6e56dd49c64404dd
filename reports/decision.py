"""Decisions, not just p-values: each comparison ends better, worse, equivalent or inconclusive.

A p-value above 5% does not say "no difference": it says the data could not tell. What a user
needs then is whether there is *no difference worth having* or whether the run was too small,
and for that the comparison needs the smallest difference worth having, the margin δ
(``[evaluate] margin``, in the verdict's units: accuracy points, or test loss).

The four decisions, from the same replicate × seed model as the interval
(:mod:`reports.replicates`: a Student t on the replicate means, or the paired t over seeds of
one search, labelled as such):

- **equivalent** — with a margin, two one-sided tests at 5% (TOST, Schuirmann 1987) reject
  both "the difference is at most −δ" and "at least +δ": the 90% interval lies inside ±δ. A
  difference that is significant *and* inside ±δ is equivalent too: real, but smaller than
  worth having (the sentence says so).
- **better** / **worse** — otherwise, the two-sided t-test rejects no difference at 5% (the
  95% interval excludes 0) and the arm did better / worse than the baseline.
- **inconclusive** — neither. Without a margin the sentence says what the data rule out (the
  ends of the 95% interval: "effects above +3.2 or below −1.7 points are ruled out"), never
  "no difference".
- **inconclusive for lack of replicates** (or of seeds, with one search) — fewer than
  :data:`reports.stats.MIN_UNITS` units, so no interval and no p-value (why three:
  :mod:`reports.stats`): the sentence names how many there are and how many an interval needs,
  and gives each replicate's own difference instead (``Decision.too_few``).

An experiment whose replicates are added in stages (``[search] replicates = { min, max }``)
decides with group-sequential boundaries instead (:mod:`reports.sequential`): the test at
each stage is held to that stage's nominal level, so stopping at the first decision keeps the
false-positive rate at 5%; an undecided stage before the last is inconclusive *for now*
(``Decision.continues``).

**P(better)** is the probability that the arm beats the baseline on a fresh search and seed:
the share of paired (replicate, seed) runs in which it did, ties counting half. Its interval is
a Student t over the replicates' own shares (R − 1 degrees of freedom, clipped to [0, 1]): the
replicate is the unit that repeats independently, as for the difference. We chose that over a
bootstrap over replicates: 3 to 5 replicates have too few distinct resamples (10 at R = 3) for a
percentile interval, which comes out too narrow. With one search it is a Wilson score interval
over the seeds, about the two configurations that search chose (``over = "seeds"``).

Pure functions over plain numbers; no store, no pandas.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from scipy import stats

from reports.replicates import Replicated
from reports.stats import ALPHA, CONFIDENCE, MIN_UNITS, p_text, sentence, signed, tost_p

__all__ = [
    "DECISIONS",
    "Decision",
    "ProbBetter",
    "decide_comparison",
    "decision_sentence",
    "prob_better",
    "tost_p",
]

DECISIONS = ("better", "worse", "equivalent", "inconclusive")


@dataclass(frozen=True)
class ProbBetter:
    """P(arm beats the baseline on a fresh search and seed), with its 95% interval."""

    mean: float
    low: float | None  # None below MIN_UNITS replicates: no interval on one degree of freedom
    high: float | None
    over: str  # "replicates" (t over the replicates' shares) or "seeds" (Wilson, one search)


@dataclass(frozen=True)
class Decision:
    """The decision of one comparison ``arm − baseline``."""

    decision: str  # one of DECISIONS
    margin: float | None  # ±δ of the equivalence test; None: no margin
    tost_p: float | None  # max of the two one-sided p-values against ±δ; None: no margin
    # The interval whose ends bound what the data leave possible: effects above ``high`` or
    # below ``low`` are ruled out (the 95% interval; at a sequential stage, that stage's).
    ruled_out: tuple[float, float] | None
    prob_better: ProbBetter | None
    significant_inside: bool = False  # equivalent, and yet different from 0 (smaller than δ)
    # The sequential form: stage reached, of how many, and whether the run goes on.
    stage: int | None = None
    stages: int | None = None
    replicates: int = 1
    continues: bool = False
    level: float | None = None  # the stage's nominal two-sided level (sequential only)
    # Fewer units (replicates; seeds of one search) than an interval needs (MIN_UNITS): no
    # interval, no test, only the units' own differences.
    too_few: bool = False


def _beats(d: float, higher_is_better: bool) -> float:
    if d == 0:
        return 0.5
    return 1.0 if (d > 0) == higher_is_better else 0.0


def prob_better(
    by_replicate: Mapping[int, Sequence[float]], *, higher_is_better: bool
) -> ProbBetter | None:
    """P(better) from the paired differences grouped by replicate (see the module's
    docstring); None without any pair."""
    groups = [list(v) for _, v in sorted(by_replicate.items()) if len(v) > 0]
    if not groups:
        return None
    if len(groups) == 1:
        wins = [_beats(d, higher_is_better) for d in groups[0]]
        low, high = _wilson(sum(wins), len(wins))
        return ProbBetter(sum(wins) / len(wins), low, high, "seeds")
    shares = [sum(_beats(d, higher_is_better) for d in g) / len(g) for g in groups]
    r = len(shares)
    mean = sum(shares) / r
    if r < MIN_UNITS:
        return ProbBetter(mean, None, None, "replicates")
    sd = math.sqrt(sum((s - mean) ** 2 for s in shares) / (r - 1))
    half = float(stats.t.ppf(0.5 + CONFIDENCE / 2, r - 1)) * sd / math.sqrt(r)
    return ProbBetter(mean, max(0.0, mean - half), min(1.0, mean + half), "replicates")


def _wilson(wins: float, n: int) -> tuple[float, float]:
    """The 95% Wilson score interval of a proportion ``wins / n``."""
    z = float(stats.norm.ppf(0.5 + CONFIDENCE / 2))
    p = wins / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def decide_comparison(
    c: Replicated,
    *,
    higher_is_better: bool,
    margin: float | None,
    sequential: tuple[int, int, int] | None = None,
) -> Decision:
    """The decision of comparison ``c`` (see the module's docstring). ``sequential`` is the
    experiment's ``(min, max, step)`` when its replicates come in stages."""
    chance = prob_better(c.by_replicate, higher_is_better=higher_is_better)
    diff = c.comparison.diff
    if diff is None or diff.half_width is None or diff.low is None or diff.high is None:
        too_few = diff is not None and diff.n < MIN_UNITS
        if sequential is not None and c.method == "replicate means":
            from reports.sequential import Stages, stage_counts

            stages = Stages(stage_counts(*sequential))
            stage = stages.stage_of(c.replicates)
            final = c.replicates >= stages.counts[-1]
            return Decision(
                "inconclusive", margin, None, None, chance, stage=stage,
                stages=len(stages.counts), replicates=c.replicates, continues=not final,
                level=stages.levels[stage - 1], too_few=too_few,
            )  # fmt: skip
        return Decision(
            "inconclusive", margin, None, None, chance, replicates=c.replicates, too_few=too_few
        )
    if sequential is not None and c.method == "replicate means":
        return _sequential(c, chance, higher_is_better, margin, sequential)
    dof = diff.n - 1
    se = diff.half_width / float(stats.t.ppf(0.5 + CONFIDENCE / 2, dof))
    tost = None if margin is None else tost_p(diff.mean, se, dof, margin)
    significant = c.comparison.significant
    if tost is not None and tost < ALPHA:
        decision = "equivalent"
    elif significant:
        decision = "better" if c.comparison.winner == c.comparison.arm else "worse"
    else:
        decision = "inconclusive"
    return Decision(
        decision,
        margin,
        tost,
        (diff.low, diff.high),
        chance,
        significant_inside=decision == "equivalent" and significant,
        replicates=c.replicates,
    )


def _sequential(
    c: Replicated,
    chance: ProbBetter | None,
    higher_is_better: bool,
    margin: float | None,
    sequential: tuple[int, int, int],
) -> Decision:
    from reports.sequential import Stages, look, stage_counts

    stages = Stages(stage_counts(*sequential))
    means = [sum(v) / len(v) for _, v in sorted(c.by_replicate.items()) if v]
    at = look(means, stages, margin=margin, higher_is_better=higher_is_better)
    continues = at.decision == "continue"
    decision = "inconclusive" if continues else at.decision
    significant = at.p_value is not None and at.p_value < at.level
    return Decision(
        decision,
        margin,
        at.tost_p,
        (at.low, at.high),
        chance,
        significant_inside=decision == "equivalent" and significant,
        stage=at.stage,
        stages=at.of,
        replicates=at.replicates,
        continues=continues,
        level=at.level,
    )


def decision_sentence(
    c: Replicated, d: Decision, *, accuracy: bool, digits: int, over: str | None
) -> str:
    """The comparison in one sentence that opens with its decision."""
    p = c.comparison
    unit = " points" if accuracy else " in test loss"
    if d.too_few and p.diff is not None:
        return _too_few(c, d, unit=unit, digits=digits)
    text = sentence(p, accuracy=accuracy, digits=digits, over=over)
    if p.diff is None or p.diff.half_width is None:
        return f"Inconclusive: {text}"
    mean = signed(p.diff.mean, digits)
    stage = ""
    if d.stage is not None and d.stages is not None:
        stage = (
            f" Decided at stage {d.stage} of {d.stages}, after {d.replicates} replicates."
            if not d.continues and d.decision != "inconclusive"
            else f" Stage {d.stage} of {d.stages}, after {d.replicates} replicates"
            + (": the run adds replicates until decided." if d.continues else ": the last.")
        )
    if d.decision in ("better", "worse") and d.stage is None:
        return f"{d.decision.capitalize()}: {text}{stage}"
    assert d.ruled_out is not None
    low, high = (signed(x, digits) for x in d.ruled_out)
    pair = f"{p.arm} − {p.baseline}"
    if d.decision in ("better", "worse"):  # sequential: the stage's own level
        winner = p.arm if d.decision == "better" else p.baseline
        loser = p.baseline if winner == p.arm else p.arm
        return (
            f"{d.decision.capitalize()}: {winner} beat {loser} ({pair} = {mean}{unit}, "
            f"{_level(d)} interval [{low}, {high}], {p_text(p.p_value)} against the stage's "
            f"level {d.level:.4f}).{stage}"
        )
    if d.decision == "equivalent":
        assert d.margin is not None
        inside = (
            f" The difference is real ({p_text(p.p_value)}) but smaller than the margin."
            if d.significant_inside
            else ""
        )
        return (
            f"Equivalent within ±{d.margin:g}{unit}: {pair} = {mean}{unit}, and the data rule "
            f"out effects beyond the margin (TOST {p_text(d.tost_p)}"
            f"{', ' + over if over else ''}).{inside}{stage}"
        )
    ruled = f"effects above {high} or below {low}{unit} are ruled out"
    if d.margin is None:
        tail = f"; {ruled}, and no margin was set to test equivalence ([evaluate] margin)."
    else:
        tail = (
            f"; {ruled}, which does not settle ±{d.margin:g}{unit} either way "
            f"(TOST {p_text(d.tost_p)})."
        )
    seeds = over or f"{p.n_pairs} seed{'s' if p.n_pairs != 1 else ''}"
    if d.level is not None:  # sequential: the stage's level, not 5%, decides
        return (
            f"Inconclusive{' so far' if d.continues else ''}: {pair} = {mean}{unit} at {seeds} "
            f"({p_text(p.p_value)} against the stage's level {d.level:.4f}){tail}{stage}"
        )
    return (
        f"Inconclusive: no significant difference at {seeds} ({pair} = {mean}{unit}, "
        f"{p_text(p.p_value)}){tail}{stage}"
    )


def _too_few(c: Replicated, d: Decision, *, unit: str, digits: int) -> str:
    """Inconclusive for lack of replicates (or seeds): how many there are, how many an
    interval needs, and the units' own differences in place of an interval."""
    p = c.comparison
    assert p.diff is not None
    pair = f"{p.arm} − {p.baseline}"
    mean = signed(p.diff.mean, digits)
    if c.method == "replicate means":
        what, has = (
            "replicates",
            f"{c.replicates} searches × {c.seeds} seed" + ("s" if c.seeds != 1 else ""),
        )
        own = [sum(v) / len(v) for _, v in sorted(c.by_replicate.items()) if v]
        each = "each search's own difference"
        run = "more replicates ([search] replicates)"
    else:
        what, has = "seeds", f"one search × {p.n_pairs} seed{'s' if p.n_pairs != 1 else ''}"
        own = [x for _, v in sorted(c.by_replicate.items()) for x in v]
        each = "each seed's difference"
        run = "more seeds ([evaluate] seeds) and replicates ([search] replicates)"
    values = ", ".join(signed(x, digits) for x in own)
    stage = ""
    if d.stage is not None and d.stages is not None and d.continues:
        stage = f" Stage {d.stage} of {d.stages}: the run adds replicates."
    return (
        f"Inconclusive for lack of {what}: {has}, and an interval needs at least {MIN_UNITS} "
        f"{what} (with {p.diff.n}, the t test has {max(p.diff.n - 1, 0)} degree"
        f"{'' if p.diff.n - 1 == 1 else 's'} of freedom and no claim can rest on it). "
        f"{pair} = {mean}{unit} on average; {each}: {values}. Run {run} for a "
        f"verdict.{stage}"
    )


def _level(d: Decision) -> str:
    if d.level is None:
        return "95%"
    return f"{100 * (1 - d.level):.2f}%"
