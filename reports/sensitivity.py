"""The sensitivity section: how each arm's validation metric varies with each searched
parameter, how flat the optimum is, and which parameters matter (fANOVA or PED-ANOVA)."""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

import optuna
import pandas as pd  # type: ignore[import-untyped, unused-ignore]

from reports.common import plural
from reports.model import ArmSensitivity, ParamSeries, Sensitivity
from reports.spec import RangeSpec

__all__ = ["build_sensitivity"]

FANOVA_MAX_TRIALS = 60  # above this many complete trials, PED-ANOVA (fANOVA takes seconds)


def _importances(
    study: optuna.Study | None, n_complete: int, n_params: int
) -> tuple[tuple[tuple[str, float], ...], str]:
    if study is None or n_complete < 2 or n_params < 1:
        return (), "not enough trials (needs 2 complete trials and a searched parameter)"
    if n_complete <= FANOVA_MAX_TRIALS:
        evaluator: Any = optuna.importance.FanovaImportanceEvaluator(seed=0)
        name = "fANOVA"
    else:
        evaluator = optuna.importance.PedAnovaImportanceEvaluator()
        name = "PED-ANOVA"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            got = optuna.importance.get_param_importances(study, evaluator=evaluator)
    except Exception as exc:  # optuna raises several kinds for degenerate studies
        text = str(exc).strip().splitlines()
        return (), f"not enough trials ({text[0] if text else type(exc).__name__})"
    pairs = tuple((str(k), float(v)) for k, v in got.items())
    return pairs, f"{name} over {plural(n_complete, 'complete trial')}"


def build_sensitivity(
    arms: Mapping[str, str],
    spaces: Mapping[str, Mapping[str, RangeSpec]],
    complete: pd.DataFrame,
    studies: Mapping[str, optuna.Study],
    accuracy: bool,
    direction: str,
) -> Sensitivity:
    out = []
    for arm, scheme in arms.items():
        rows = complete[complete["arm"] == arm]
        if rows.empty:
            continue
        values = [float(v) for v in rows["value"]]
        params = list(rows["params"])
        series = []
        for name, r in spaces[arm].items():
            pts = [
                (float(p[name]), v)
                for p, v in zip(params, values, strict=True)
                if isinstance(p, Mapping) and isinstance(p.get(name), int | float)
            ]
            series.append(
                ParamSeries(
                    name,
                    r.log,
                    tuple(x for x, _ in pts),
                    tuple(y for _, y in pts),
                )
            )
        alpha_floor = None
        by_name = {s.name: s for s in series}
        if scheme == "dynamic" and "alpha" in by_name and "floor" in by_name:
            triples = [
                (float(p["alpha"]), float(p["floor"]), v)
                for p, v in zip(params, values, strict=True)
                if isinstance(p, Mapping) and "alpha" in p and "floor" in p
            ]
            alpha_floor = (
                tuple(t[0] for t in triples),
                tuple(t[1] for t in triples),
                tuple(t[2] for t in triples),
            )
        best = max(values) if direction == "maximize" else min(values)
        if accuracy:
            tolerance, tol_text = 0.01, "0.01 (1 point)"
        else:
            tolerance, tol_text = 0.01 * abs(best), "1% of the best value"
        near = sum(abs(v - best) <= tolerance + 1e-12 for v in values) / len(values)
        importances, note = _importances(studies.get(arm), len(values), len(series))
        out.append(
            ArmSensitivity(
                arm=arm,
                n_complete=len(values),
                params=tuple(series),
                alpha_floor=alpha_floor,
                near_best_share=near,
                near_best_tolerance=tol_text,
                importances=importances,
                importance_note=note,
            )
        )
    message = None if out else "No complete trial yet: no sensitivity to show."
    return Sensitivity(tuple(out), message)
