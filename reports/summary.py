"""The verdict's numbers as plain JSON data, for ``dynl2_reports.summary``."""

from __future__ import annotations

import math
from typing import Any

from reports.decision import Decision
from reports.model import ReportData, Verdict
from reports.stats import MeanCI, Paired, ci_text


def _float(x: float | None) -> float | None:
    return x if x is not None and math.isfinite(x) else None


def _ci(ci: MeanCI | None, digits: int, *, sign: bool = False) -> dict[str, Any] | None:
    """A mean and its interval: ``low``/``high`` cut at what the metric can be
    (``truncated`` when the Student-t interval reached past it), ``half_width`` the t
    interval's, ``text`` as every page and the terminal show it (reports.stats.ci_text)."""
    if ci is None:
        return None
    return {
        "mean": _float(ci.mean),
        "half_width": _float(ci.half_width),
        "low": _float(ci.low),
        "high": _float(ci.high),
        "n": ci.n,
        "truncated": ci.truncated,
        "text": ci_text(ci, digits, sign=sign),
    }


def _paired(c: Paired, digits: int, own: tuple[float, ...] = ()) -> dict[str, Any]:
    return {
        "arm": c.arm,
        "baseline": c.baseline,
        "n_pairs": c.n_pairs,
        "diff": _ci(c.diff, digits, sign=True),
        "replicate_differences": [_float(x) for x in own],
        "p_value": _float(c.p_value),
        "cohen_dz": _float(c.cohen_dz),
        "significant": c.significant,
        "winner": c.winner,
    }


def summary_json(data: ReportData) -> dict[str, Any]:
    """The verdict as JSON-ready data: only dicts, lists, str, int, bool, None and finite
    floats (``json.dumps(..., allow_nan=False)`` accepts it)."""
    v = data.verdict
    digits = v.digits
    own = v.replicate_differences or ((),) * len(v.comparisons)
    main_own = own[v.comparisons.index(v.main)] if v.main in v.comparisons else ()
    return {
        "experiment": data.experiment,
        "generated": data.generated,
        "metric": v.metric,
        "unit": v.unit,
        "higher_is_better": v.higher_is_better,
        "dynamic_arm": v.dynamic_arm,
        "fixed_arm": v.fixed_arm,
        "arms": {
            a.arm: {
                "scheme": a.scheme,
                "test": _ci(a.ci, digits),
                "text": a.text(digits),
                "failed": a.n_failed,
                "replicate_means": [_float(x) for x in a.means],
            }
            for a in v.arms
        },
        "replicates": v.replicates,
        "seeds": v.seeds,
        "method": v.method,
        "main": None
        if v.main is None
        else _paired(v.main, digits, main_own)
        | _decided(v.decision)
        | {"components": _components(v)},
        "comparisons": [
            _paired(c, digits, o) | _decided(d)
            for c, d, o in zip(v.comparisons, _decisions(v), own, strict=True)
        ],
        "margin": _float(v.margin),
        "sentence": v.sentence,
        "basis": v.basis,
        "warnings": list(v.warnings),
        "provisional": bool(v.unfinished),
        "unfinished": list(v.unfinished),
        "stale_evaluations": v.stale,
        "budget_curves": {
            arm: [
                {"n": p.n, "mean": _float(p.mean), "low": _float(p.low), "high": _float(p.high)}
                for p in curve
            ]
            for arm, curve in data.search.budget.items()
        },
        "budget_sentence": data.search.budget_sentence,
    }


def _decisions(v: Verdict) -> tuple[Decision | None, ...]:
    return v.decisions if v.decisions else (None,) * len(v.comparisons)


def _decided(d: Decision | None) -> dict[str, Any]:
    """A comparison's decision keys (reports.decision): ``decision`` is one of better, worse,
    equivalent, inconclusive; ``sequential`` is None unless replicates come in stages."""
    if d is None:
        return {"decision": None, "margin": None, "tost_p": None, "too_few": False,
                "prob_better": None, "ruled_out": None, "sequential": None}  # fmt: skip
    chance = d.prob_better
    return {
        "decision": d.decision,
        "margin": _float(d.margin),
        "tost_p": _float(d.tost_p),
        "too_few": d.too_few,
        "prob_better": None
        if chance is None
        else {
            "mean": _float(chance.mean),
            "low": _float(chance.low),
            "high": _float(chance.high),
            "over": chance.over,
        },
        "ruled_out": None
        if d.ruled_out is None
        else {"low": _float(d.ruled_out[0]), "high": _float(d.ruled_out[1])},
        "sequential": None
        if d.stage is None
        else {
            "stage": d.stage,
            "stages": d.stages,
            "replicates": d.replicates,
            "level": _float(d.level),
            "continues": d.continues,
        },
    }


def _components(v: Verdict) -> dict[str, float | None]:
    parts = v.components
    return {
        "search_sd": None if parts is None else _float(parts.search_sd),
        "seed_sd": None if parts is None else _float(parts.seed_sd),
    }
