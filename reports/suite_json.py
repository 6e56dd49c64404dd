"""The suite report's numbers as JSON-ready data (``dynl2 suite report --json``, and what
``dynl2_reports`` keeps of a suite): the main arm at the top level, every arm under ``arms``,
each experiment's own decision, and the pooled decision against the experiments' margin.
Every ``low``/``high`` is the interval as shown, cut at what the difference can be, with
``truncated`` beside it (true where the t interval reached past a bound)."""

from __future__ import annotations

from typing import Any

from reports.suite import ArmSummary, SuiteReportData, json_float, jsonable

__all__ = ["suite_json"]


def _rows_json(arm: ArmSummary) -> list[dict[str, Any]]:
    return [
        {
            "experiment": r.experiment,
            "factors": jsonable(r.factors),
            "diff": json_float(r.diff),
            "low": json_float(r.low),
            "high": json_float(r.high),
            "truncated": r.truncated,
            "decision": r.decision,
        }
        for r in arm.rows
    ]


def _pooled_json(arm: ArmSummary, margin: float | None) -> dict[str, Any]:
    p = arm.pooled
    decided = {
        "decision": arm.decision,
        "margin": json_float(margin),
        "tost_p": json_float(arm.tost_p),
    }
    if p is None:
        none = dict.fromkeys(("mean", "low", "high", "i2", "tau2", "p_value", "k"))
        return none | {"truncated": False} | decided
    return decided | {
        "mean": json_float(p.mean),
        "low": json_float(p.low),
        "high": json_float(p.high),
        "truncated": p.truncated,
        "i2": json_float(p.i2),
        "tau2": json_float(p.tau2),
        "p_value": json_float(p.p_value),
        "k": p.k,
    }


def suite_json(data: SuiteReportData) -> dict[str, Any]:
    """The suite's numbers as JSON-ready data (``json.dumps(..., allow_nan=False)`` takes it):
    the main arm at the top level, every arm (the main one included) under ``arms``, and the
    main arm's "when" tables. A missing pooled estimate is a dict of None."""
    main = data.main
    return {
        "suite": data.name,
        "main_arm": data.main_arm,
        "experiments": _rows_json(main),
        "pooled": _pooled_json(main, data.margin),
        "arms": {
            a.arm: {"experiments": _rows_json(a), "pooled": _pooled_json(a, data.margin)}
            for a in data.arms
        },
        "when": {
            t.factor: [
                {
                    "value": jsonable(r.value),
                    "mean": json_float(r.pooled.mean) if r.pooled else None,
                    "low": json_float(r.pooled.low) if r.pooled else None,
                    "high": json_float(r.pooled.high) if r.pooled else None,
                    "truncated": r.pooled.truncated if r.pooled else False,
                    "k": r.pooled.k if r.pooled else 0,
                }
                for r in t.rows
            ]
            for t in main.when
        },
        "headline": data.headline,
        "sentence": data.sentence,
    }
