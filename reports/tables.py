"""The tables section: each arm's best trials, and every final evaluation."""

from __future__ import annotations

from collections.abc import Mapping

import pandas as pd  # type: ignore[import-untyped, unused-ignore]

from reports.common import finite
from reports.model import EvaluationRow, Tables, TrialRow

__all__ = ["TOP_TRIALS", "build_tables"]

TOP_TRIALS = 10  # rows per arm in the top-trials table


def build_tables(
    arms: Mapping[str, str],
    complete: pd.DataFrame,
    evals: pd.DataFrame,
    direction: str,
    accuracy: bool,
) -> Tables:
    top: list[TrialRow] = []
    for arm in arms:
        rows = complete[complete["arm"] == arm].sort_values(
            ["value", "draw", "number"],
            ascending=[direction == "minimize", True, True],
            kind="stable",
        )
        for _, r in rows.head(TOP_TRIALS).iterrows():
            best_epoch = r["best_epoch"]
            top.append(
                TrialRow(
                    arm=arm,
                    number=int(r["number"]),
                    value=finite(r["value"]),
                    params=dict(r["params"]) if isinstance(r["params"], Mapping) else {},
                    best_epoch=None if pd.isna(best_epoch) else int(best_epoch),
                    duration_s=finite(r["duration_s"]),
                )
            )
    metric, scale = ("test_acc", 100.0) if accuracy else ("test_loss", 1.0)
    rows_out = []
    if not evals.empty:
        ordered = evals.sort_values(["arm", "seed"])
        for arm, seed, value, loss, seconds in zip(
            ordered["arm"],
            ordered["seed"],
            ordered[metric],
            ordered["test_loss"],
            ordered["seconds"],
            strict=True,
        ):
            m = finite(value)
            rows_out.append(
                EvaluationRow(
                    str(arm),
                    int(seed),
                    None if m is None else scale * m,
                    finite(loss),
                    finite(seconds),
                )
            )
    parts = []
    if not top:
        parts.append("no complete trial yet")
    if not rows_out:
        parts.append("no evaluations yet")
    message = ("; ".join(parts).capitalize() + ".") if parts else None
    return Tables(tuple(top), tuple(rows_out), message)
