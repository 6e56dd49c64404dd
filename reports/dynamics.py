"""The dynamics section: the per-epoch curves (losses, accuracies, λ, weight norm) of each
arm's best trial."""

from __future__ import annotations

from collections.abc import Mapping

import pandas as pd  # type: ignore[import-untyped, unused-ignore]

from reports.common import finite
from reports.model import ArmDynamics, Dynamics
from storage import EPOCH_METRICS, Store

__all__ = ["build_dynamics"]


def build_dynamics(
    store: Store, experiment: str, arms: Mapping[str, str], best: Mapping[str, pd.Series]
) -> Dynamics:
    if not best:
        return Dynamics((), "No complete trial yet: no training curves.")
    epochs = store.epochs(experiment)
    out = []
    for arm, scheme in arms.items():
        if arm not in best:
            continue
        trial = best[arm]
        rows = epochs[epochs["trial_id"] == trial["trial_id"]].sort_values("epoch")
        series = {
            m: tuple(float("nan") if finite(v) is None else float(v) for v in rows[m])
            for m in EPOCH_METRICS
        }
        out.append(
            ArmDynamics(
                arm=arm,
                scheme=scheme,
                number=int(trial["number"]),
                value=float(trial["value"]),
                epochs=tuple(int(e) for e in rows["epoch"]),
                series=series,
            )
        )
    message = None
    if not any(a.epochs for a in out):
        message = "The best trials have no recorded epochs."
    return Dynamics(tuple(out), message)
