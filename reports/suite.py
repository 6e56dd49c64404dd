"""The suite report's numbers: one difference per experiment, pooled across the suite.

A suite runs one base experiment over a matrix of settings; each experiment's own report gives
``arm − fixed`` differences with Student-t intervals over its paired seeds. Step one (house
style 10) turns those plain inputs into a frozen :class:`SuiteReportData`: per arm, every
experiment's difference, the random-effects pooled estimate (:func:`reports.meta.pool`), a
"when" table (the same pooling over the experiments sharing each value of each matrix factor)
and, for the main arm, one paragraph saying what the evidence shows and how strongly.
:func:`reports.render.render_suite_html` draws it; :func:`suite_json` gives its numbers.

Pure: no store, no study. A claim that an arm did better or worse is made only where the
interval shown excludes 0. The pooled interval is the modified Hartung–Knapp one (Student t
on k − 1 degrees of freedom, :mod:`reports.meta`); one experiment pooled alone keeps its own
Student-t interval. Like every interval of the experiments' reports it is cut at what the
difference can be (:func:`reports.stats.difference_bounds`, ±100 accuracy points) and a cut
one is marked † (:data:`reports.stats.CUT`) wherever it is written.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from reports.common import plural
from reports.decision import tost_p
from reports.meta import Pooled, pool, standard_error
from reports.stats import ALPHA, CUT, MeanCI, difference_bounds, p_text, signed

__all__ = [
    "BASELINE",
    "ArmSummary",
    "SuiteEntry",
    "SuiteInput",
    "SuiteReportData",
    "SuiteRow",
    "WhenRow",
    "WhenTable",
    "build_suite_data",
    "factor_text",
    "json_float",
    "jsonable",
]

BASELINE = "fixed"  # every comparison of a suite entry is ``arm − fixed``
LOW_I2, HIGH_I2 = 0.25, 0.75  # I² below LOW_I2 reads "low", below HIGH_I2 "moderate"
NAMED_AT_MOST = 5  # experiments left out of the pooling named in the paragraph
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")


# ------------------------------------------------------------------------------- inputs


@dataclass(frozen=True)
class SuiteEntry:
    """One experiment of the suite, as the caller read it from its own report."""

    experiment: str  # experiment name
    factors: Mapping[str, object] = field(hash=False)  # dotted config key -> value (a dict:
    # a whole section)
    comparisons: Mapping[str, MeanCI | None] = field(hash=False)  # arm -> (arm − fixed) in
    # display units (points for accuracy); None when not available
    href: str | None  # the experiment's own report (a relative file name), or None
    note: str | None = None  # e.g. "not evaluated yet"
    # arm -> its own report's decision (reports.decision): better, worse, equivalent, ...
    decisions: Mapping[str, str] = field(default_factory=dict, hash=False)


@dataclass(frozen=True)
class SuiteInput:
    name: str
    factors: tuple[str, ...]  # the matrix keys, in order
    entries: tuple[SuiteEntry, ...]
    main_arm: str = "dynamic"  # the arm whose difference against fixed is "the main difference"
    unit: str = "points"  # display unit of the differences
    higher_is_better: bool = True
    generated: str = ""  # timestamp text
    baseline: str = BASELINE  # the experiments' fixed arm's name, every difference's reference
    margin: float | None = None  # [evaluate] margin of the experiments: the pooled TOST's

    @property
    def bounds(self) -> tuple[float, float]:
        """What a difference can be, as each experiment's verdict bounds its own (its unit is
        "points" for accuracy): the pooled intervals are cut there."""
        return difference_bounds(self.unit == "points")


# ------------------------------------------------------------------------------- results


@dataclass(frozen=True)
class SuiteRow:
    """One experiment's ``arm − fixed`` difference."""

    experiment: str
    factors: Mapping[str, object] = field(hash=False)
    diff: float | None  # the mean difference; None without a comparison
    low: float | None  # its 95% interval (Student t over the paired seeds); None without one
    high: float | None
    se: float | None  # the standard error behind the interval; None without one
    n: int  # paired seeds (0 without a comparison)
    reason: str | None  # why the row is not pooled; None when it is
    decision: str | None = None  # the experiment's own decision (its report's)
    truncated: bool = False  # its interval is cut at what the difference can be

    @property
    def pooled(self) -> bool:
        return self.reason is None


@dataclass(frozen=True)
class WhenRow:
    """The pooled difference over the experiments that share one value of one factor."""

    value: object  # the factor's value, as given
    text: str  # the value written compactly (factor_text)
    n: int  # experiments with this value, pooled or not
    pooled: Pooled | None  # over those with an interval; None when none has one
    direction: str | None  # "better" / "worse" (the arm against fixed) when the interval
    # excludes 0, else None


@dataclass(frozen=True)
class WhenTable:
    factor: str
    rows: tuple[WhenRow, ...]  # one per value, in the order the entries first show it


@dataclass(frozen=True)
class ArmSummary:
    arm: str
    rows: tuple[SuiteRow, ...]  # one per entry, in the entries' order
    pooled: Pooled | None  # None when no experiment has an interval
    direction: str | None  # "better" / "worse" when the pooled interval excludes 0
    when: tuple[WhenTable, ...]  # one per factor of the suite, in order
    # The pooled decision (reports.decision's four, with the pooled TOST against the margin)
    decision: str = "inconclusive"
    tost_p: float | None = None


@dataclass(frozen=True)
class SuiteReportData:
    name: str
    generated: str
    factors: tuple[str, ...]
    entries: tuple[SuiteEntry, ...]
    unit: str
    higher_is_better: bool
    main_arm: str
    baseline: str
    digits: int  # decimals of a difference on the page
    arms: tuple[ArmSummary, ...]  # the main arm first, then the others as the entries name them
    headline: str  # the paragraph's answer in a few words
    sentence: str  # the paragraph on the main arm
    margin: float | None = None  # the experiments' [evaluate] margin

    @property
    def main(self) -> ArmSummary:
        return self.arms[0]

    @property
    def any_cut(self) -> bool:
        """Whether any interval of the report is cut at what the difference can be."""
        pooled = [a.pooled for a in self.arms]
        pooled += [r.pooled for t in self.main.when for r in t.rows]
        rows = [r.truncated for a in self.arms for r in a.rows]
        return any(rows) or any(p is not None and p.truncated for p in pooled)


# ------------------------------------------------------------------------------- building


def build_suite_data(inp: SuiteInput) -> SuiteReportData:
    """Every arm's per-experiment differences, pooled estimate and "when" tables."""
    _validate(inp)
    arms = [inp.main_arm]
    for entry in inp.entries:
        arms += [a for a in entry.comparisons if a not in arms]
    digits = 2 if inp.unit == "points" else 4
    summaries = tuple(_arm(inp, arm) for arm in arms)
    return SuiteReportData(
        name=inp.name,
        generated=inp.generated,
        factors=inp.factors,
        entries=inp.entries,
        unit=inp.unit,
        higher_is_better=inp.higher_is_better,
        main_arm=inp.main_arm,
        baseline=inp.baseline,
        digits=digits,
        arms=summaries,
        headline=_headline(inp, summaries[0], digits),
        sentence=_paragraph(inp, summaries[0], digits),
        margin=inp.margin,
    )


def _validate(inp: SuiteInput) -> None:
    seen: set[str] = set()
    for entry in inp.entries:
        if entry.experiment in seen:
            raise ValueError(
                f"experiment names in a suite must be unique, but {entry.experiment!r} "
                f"appears twice in suite {inp.name!r}."
            )
        seen.add(entry.experiment)
        href = entry.href
        if href is not None and (_SCHEME.match(href) or href.startswith(("/", "\\"))):
            raise ValueError(
                f"`href` of experiment {entry.experiment!r} must be a relative file name "
                f"(like 'name.html'), but got {href!r}."
            )
    if not inp.main_arm:
        raise ValueError("`main_arm` must name an arm, but got an empty string.")


def _row(entry: SuiteEntry, arm: str, baseline: str) -> SuiteRow:
    ci = entry.comparisons.get(arm)
    decided = entry.decisions.get(arm)
    if ci is None:
        reason = entry.note or f"no {arm} − {baseline} comparison"
        return SuiteRow(
            entry.experiment, entry.factors, None, None, None, None, 0, reason, decided
        )
    diff = ci.mean if math.isfinite(ci.mean) else None
    if diff is None:
        reason = "the difference is not a finite number"
    elif ci.half_width is None or ci.n < 2:
        reason = f"{plural(ci.n, 'paired seed')}: no interval"
    elif not (math.isfinite(ci.half_width) and ci.half_width > 0) and diff == 0:
        reason = "the arms tie exactly on every seed: a zero-width interval cannot be weighted"
    elif not (math.isfinite(ci.half_width) and ci.half_width > 0):
        reason = "a zero-width interval (every seed moved alike) cannot be weighted"
    else:
        se = standard_error(ci)
        return SuiteRow(
            entry.experiment, entry.factors, diff, ci.low, ci.high, se, ci.n, None, decided,
            ci.truncated,
        )  # fmt: skip
    return SuiteRow(entry.experiment, entry.factors, diff, None, None, None, ci.n, reason, decided)


def _pool(rows: Sequence[SuiteRow], bounds: tuple[float, float]) -> Pooled | None:
    used = [r for r in rows if r.pooled]
    if not used:
        return None
    return pool(
        [r.diff for r in used],  # type: ignore[misc]
        [r.se for r in used],  # type: ignore[misc]
        [r.n - 1 for r in used],
        bounds,
    )


def _direction(
    pooled: Pooled | None, rows: Sequence[SuiteRow], higher_is_better: bool
) -> str | None:
    """The arm against fixed, "better" or "worse", when the interval excludes 0; else None.
    Read on the uncut t interval, as the p value (the cut one, whose bounds hold 0, agrees)."""
    if pooled is None or pooled.mean - pooled.half_width <= 0 <= pooled.mean + pooled.half_width:
        return None
    used = [r for r in rows if r.pooled]
    if len(used) == 1:  # one experiment: its own Student-t interval must agree
        own = used[0]
        assert own.low is not None and own.high is not None
        if own.low <= 0 <= own.high:
            return None
    return "better" if (pooled.mean > 0) == higher_is_better else "worse"


def _arm(inp: SuiteInput, arm: str) -> ArmSummary:
    rows = tuple(_row(entry, arm, inp.baseline) for entry in inp.entries)
    pooled = _pool(rows, inp.bounds)
    when = tuple(_when(inp, factor, rows) for factor in inp.factors)
    direction = _direction(pooled, rows, inp.higher_is_better)
    decision, tost = _pooled_decision(pooled, direction, inp.margin)
    return ArmSummary(arm, rows, pooled, direction, when, decision, tost)


def _pooled_decision(
    pooled: Pooled | None, direction: str | None, margin: float | None
) -> tuple[str, float | None]:
    """The pooled estimate's decision: equivalent when the pooled TOST against ±margin
    rejects at 5% (its 90% interval, on the pooled t's degrees of freedom, inside ±margin),
    else better or worse when its 95% interval excludes 0, else inconclusive
    (reports.decision's rule, on the pooled estimate)."""
    if pooled is None:
        return "inconclusive", None
    tost = None if margin is None else tost_p(pooled.mean, pooled.se, pooled.df, margin)
    if tost is not None and tost < ALPHA:
        return "equivalent", tost
    return direction or "inconclusive", tost


def _when(inp: SuiteInput, factor: str, rows: Sequence[SuiteRow]) -> WhenTable:
    """Rows grouped by their value of ``factor`` (entries without that key left out)."""
    groups: dict[str, tuple[object, list[SuiteRow]]] = {}
    for row in rows:
        if factor in row.factors:
            value = row.factors[factor]
            groups.setdefault(_key(value), (value, []))[1].append(row)
    out = []
    for value, members in groups.values():
        pooled = _pool(members, inp.bounds)
        direction = _direction(pooled, members, inp.higher_is_better)
        out.append(WhenRow(value, factor_text(value), len(members), pooled, direction))
    return WhenTable(factor, tuple(out))


def _key(value: object) -> str:
    # Dicts (a whole section) are unhashable: group by their canonical JSON.
    return json.dumps(jsonable(value), sort_keys=True)


def factor_text(value: object) -> str:
    """A factor's value, compactly: ``digits``, ``30``, ``{kind=mlp, hidden=[100, 100]}``."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{k}={factor_text(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(factor_text(v) for v in value) + "]"
    if value is None:
        return "–"
    return str(value)


# ------------------------------------------------------------------------------- the paragraph


def _headline(inp: SuiteInput, arm: ArmSummary, digits: int) -> str:
    p = arm.pooled
    if p is None:
        return f"Nothing to pool yet for {arm.arm} − {inp.baseline}."
    unit = " " + inp.unit if inp.unit else ""
    size = f"{signed(p.mean, digits)}{unit}, 95% CI {_ci(p, digits)}"
    if arm.decision == "equivalent" and inp.margin is not None:
        return (
            f"Equivalent within ±{inp.margin:g}{unit}: {arm.arm} − {inp.baseline} = {size} "
            f"(pooled TOST {p_text(arm.tost_p)})."
        )
    if arm.direction is None:
        return (
            f"Inconclusive: no detectable difference between {arm.arm} and {inp.baseline} "
            f"({size}); effects beyond that interval are ruled out."
        )
    verdict = f"{arm.arm} did {arm.direction} than {inp.baseline}"
    return f"{arm.direction.capitalize()}: {verdict}: {size}."


def _paragraph(inp: SuiteInput, arm: ArmSummary, digits: int) -> str:
    vs = f"{arm.arm} − {inp.baseline}"
    unit = f" {inp.unit}" if inp.unit else ""
    left_out = [r for r in arm.rows if not r.pooled]
    p = arm.pooled
    if p is None:
        return (
            f"No experiment of suite {inp.name} has an interval for {vs} yet "
            f"({plural(len(arm.rows), 'experiment')}, none with two or more paired seeds): "
            f"nothing can be pooled, and the suite says nothing yet about {arm.arm} against "
            f"{inp.baseline}."
        )

    parts = [
        f"Pooled over {plural(p.k, 'experiment')} (random effects), {vs} = "
        f"{signed(p.mean, digits)}{unit}, 95% CI {_ci(p, digits)} ({p_text(p.p_value)})."
    ]
    if arm.direction is not None:
        parts.append(
            f"The interval excludes 0: across these experiments {arm.arm} did "
            f"{arm.direction} than {inp.baseline} on average."
        )
    elif p.low <= 0 <= p.high:
        parts.append(
            f"The interval covers 0: no detectable difference between {arm.arm} and "
            f"{inp.baseline}, a null result. The data are consistent with anything from "
            f"{signed(p.low, digits)} to {signed(p.high, digits)}{unit}{_cut(p)}, so they show "
            f"neither that {arm.arm} helps nor that it hurts."
        )
    else:  # one experiment: the pooled interval excludes 0, its own Student-t one does not
        parts.append(
            f"Only one experiment is pooled and its own interval (over its seeds) covers 0: "
            f"no detectable difference between {arm.arm} and {inp.baseline}, a null result."
        )
    if inp.margin is not None:
        parts.append(
            f"Against the margin ±{inp.margin:g}{unit} (pooled TOST {p_text(arm.tost_p)}): "
            + (
                "the pooled difference is equivalent to none, within the margin."
                if arm.decision == "equivalent"
                else "equivalence is not shown."
            )
        )
    decided = [r.decision for r in arm.rows if r.decision]
    if decided:
        counts = {d: decided.count(d) for d in ("better", "worse", "equivalent", "inconclusive")}
        parts.append(
            "Each experiment's own decision: "
            + ", ".join(f"{n} {d}" for d, n in counts.items() if n)
            + "."
        )
    parts.append(_heterogeneity(p))
    parts.append(_settings(arm, digits, inp.baseline))
    if left_out:  # each named with its reason: a reader counts the rows above the pooling
        names = "; ".join(f"{r.experiment} ({r.reason})" for r in left_out[:NAMED_AT_MOST])
        more = len(left_out) - NAMED_AT_MOST
        names += f"; and {more} more" if more > 0 else ""
        parts.append(
            f"{plural(len(left_out), 'experiment')} of {len(arm.rows)} "
            f"{'is' if len(left_out) == 1 else 'are'} not pooled: {names}."
        )
    return " ".join(s for s in parts if s)


def _heterogeneity(p: Pooled) -> str:
    if p.k < 2:
        return "With one experiment pooled there is no heterogeneity to measure."
    numbers = f"(I² = {100 * p.i2:.0f}%, τ² = {p.tau2:.3g})"
    if p.i2 < LOW_I2:
        return f"Heterogeneity is low {numbers}: the experiments agree within their noise."
    if p.i2 < HIGH_I2:
        return f"Heterogeneity is moderate {numbers}: the effect varies between experiments."
    return (
        f"Heterogeneity is high {numbers}: the effect differs a lot between experiments, so "
        f"the average hides real differences between settings."
    )


def _ci(p: Pooled, digits: int) -> str:
    return f"[{signed(p.low, digits)}, {signed(p.high, digits)}]{_cut(p)}"


def _cut(p: Pooled) -> str:
    """† after an interval cut at what the difference can be, as the experiments' reports."""
    return CUT if p.truncated else ""


def _settings(arm: ArmSummary, digits: int, baseline: str) -> str:
    """The factor values whose own pooled interval excludes 0 (factors with 2+ values)."""
    varied = [t for t in arm.when if len(t.rows) > 1]
    if not varied:
        return ""
    found: dict[str, list[str]] = {"better": [], "worse": []}
    for table in varied:
        for row in table.rows:
            if row.direction is not None and row.pooled is not None:
                found[row.direction].append(
                    f"{table.factor} = {row.text} ({signed(row.pooled.mean, digits)} "
                    f"{_ci(row.pooled, digits)}, {plural(row.pooled.k, 'experiment')})"
                )
    if not found["better"] and not found["worse"]:
        return (
            f"No single setting of {', '.join(t.factor for t in varied)} has a pooled "
            f"interval that excludes 0."
        )
    said = [
        f"{arm.arm} did {word} than {baseline} with {'; '.join(items)}"
        for word, items in found.items()
        if items
    ]
    return (
        "Settings whose own pooled interval excludes 0 (not corrected for multiple "
        f"comparisons): {'; and '.join(said)}."
    )


# ------------------------------------------------------------------------------- JSON


def json_float(x: float | None) -> float | None:
    return x if x is not None and math.isfinite(x) else None


def jsonable(value: object) -> Any:
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, float):
        return json_float(value)
    if value is None or isinstance(value, str | int | bool):
        return value
    return str(value)
