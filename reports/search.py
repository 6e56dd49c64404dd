"""The search section: each search's trials and best value so far, and each arm's budget
curve (the expected best validation metric after n trials, over its replicates)."""

from __future__ import annotations

from collections.abc import Mapping

import optuna
import pandas as pd  # type: ignore[import-untyped, unused-ignore]

from reports.budget import BudgetPoint, budget_curve, crossing
from reports.common import RESULT_ATTR, finite, label, plural
from reports.model import ArmSearch, Failure, Search
from reports.stats import LOSS

__all__ = ["build_search"]


def _results(study: optuna.Study) -> list[float | None]:
    """A search's results in trial order, as :mod:`reports.budget` takes them: a complete
    trial's value; None for a pruned or diverged one (a result that cannot be the best).
    Trials of a worker that died, retried elsewhere, are no result and are left out."""
    out: list[float | None] = []
    for t in sorted(study.get_trials(deepcopy=False), key=lambda t: t.number):
        if t.state == optuna.trial.TrialState.COMPLETE and finite(t.value) is not None:
            out.append(t.value)
        elif t.state == optuna.trial.TrialState.PRUNED or (
            t.state == optuna.trial.TrialState.FAIL and t.user_attrs.get(RESULT_ATTR) == "diverged"
        ):
            out.append(None)
    return out


def _bounds(metric: str) -> tuple[float, float]:
    """What a search metric can be: an accuracy (a fraction) in [0, 1], a loss at least 0."""
    return (0.0, 1.0) if metric.endswith("acc") else LOSS


def _budget(
    arms: Mapping[str, str],
    studies: Mapping[tuple[str, int], optuna.Study],
    metric: str,
    direction: str,
) -> tuple[dict[str, tuple[BudgetPoint, ...]], str | None]:
    """Each arm's budget curve (over its replicates), and one sentence per dynamic arm against
    the fixed one."""
    curves: dict[str, tuple[BudgetPoint, ...]] = {}
    for arm in arms:
        mine = {r: _results(study) for (a, r), study in studies.items() if a == arm}
        curve = (
            budget_curve(mine, higher_is_better=direction == "maximize", bounds=_bounds(metric))
            if mine
            else []
        )
        if curve:
            curves[arm] = tuple(curve)
    # Every dynamic arm against fixed (the generous reading first, then the literal one,
    # alpha = "lr", as the config lists them): where its curve and tuned fixed λ's cross.
    dynamics = [a for a, s in arms.items() if s in ("dynamic", "dynamic_l1") and a in curves]
    fixed = next((a for a, s in arms.items() if s == "fixed" and a in curves), None)
    if not dynamics or fixed is None:
        return curves, None
    said = [_against(curves, dynamic, fixed, metric) for dynamic in dynamics]
    text = " ".join(t for t in said if t)
    return curves, text or None


def _against(
    curves: Mapping[str, tuple[BudgetPoint, ...]], dynamic: str, fixed: str, metric: str
) -> str | None:
    """One arm's budget curve against fixed's: their expected best at a small budget, and
    where the curves cross."""
    common = sorted({p.n for p in curves[dynamic]} & {p.n for p in curves[fixed]})
    if not common:
        return None
    at = max(n for n in common if n <= 10) if common[0] <= 10 else common[0]
    value = {arm: next(p.mean for p in curves[arm] if p.n == at) for arm in (dynamic, fixed)}
    where = crossing(curves[dynamic], curves[fixed])
    cross = (
        f"the curves cross at n ≈ {where}"
        if where is not None
        else f"the curves do not cross within {common[-1]} trials"
    )
    return (
        f"At {plural(at, 'trial')}, {dynamic}'s expected best {metric} is "
        f"{value[dynamic]:.4g} vs {fixed}'s {value[fixed]:.4g}; {cross}."
    )


def build_search(
    arms: Mapping[str, str],
    trials: pd.DataFrame,
    metric: str,
    direction: str,
    studies: Mapping[tuple[str, int], optuna.Study],
    replicates: int,
) -> Search:
    """The search section: per search (an arm, or ``ARM/R`` with replicates) its trials and
    best so far; per arm its budget curve."""
    if trials.empty:
        return Search(metric, direction, (), "No trials yet: the search has not started.")
    out = []
    keys = [(arm, r) for r in range(1, replicates + 1) for arm in arms]
    for arm, replicate in sorted(keys, key=lambda k: (list(arms).index(k[0]), k[1])):
        mine = trials[(trials["arm"] == arm) & (trials["replicate"] == replicate)]
        mine = mine.sort_values("number")
        if mine.empty:
            continue
        done = mine[(mine["state"] == "COMPLETE") & mine["value"].notna()]
        values = [float(v) for v in done["value"]]
        running = pd.Series(values, dtype=float)
        best = running.cummax() if direction == "maximize" else running.cummin()
        failed = mine[mine["state"] == "FAIL"]
        failures = tuple(
            Failure(int(n), str(r) if r else "no reason recorded")
            for n, r in zip(failed["number"], failed["fail_reason"], strict=True)
        )
        out.append(
            ArmSearch(
                arm=label(arm, replicate, replicates),
                numbers=tuple(int(n) for n in done["number"]),
                values=tuple(values),
                best_so_far=tuple(float(v) for v in best),
                counts={str(k): int(v) for k, v in mine["state"].value_counts().items()},
                failures=failures,
            )
        )
    message = None
    if not any(a.numbers for a in out):
        message = "No complete trial yet: nothing to chart."
    curves, said = _budget(arms, studies, metric, direction)
    return Search(metric, direction, tuple(out), message, curves, said)
