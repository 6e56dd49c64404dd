"""``dynl2 plan``: flags in, a call of :func:`study.api.plan.make_plan`, a table out.

The table has a row per number of search replicates R and a column per number of evaluation
seeds S, each cell the power in percent (rounded down, so that a cell shown at 80 reaches 80%);
under it the recommended (R, S) with its cost, and the spread the plan was made with. ``--json``
prints :func:`plan_json`'s object alone. The statistics: ``docs/statistics.md``
(Planning) and :mod:`reports.plan`.
"""

from __future__ import annotations

import argparse
import json
import math
from typing import TYPE_CHECKING, Any

from study.cli.args import storage_flag

# reports (SciPy, pandas, plotly) is imported by the functions that use it: every verb, and
# `dynl2 --help`, builds this module's parser.
if TYPE_CHECKING:
    from reports.plan import Cell, Costs, Goal, Plan, PlanComponents, SuitePlan


def add_parser(verbs: Any) -> None:
    p = verbs.add_parser(
        "plan",
        help="how many replicates and seeds a verdict needs: power and cost of each (R, S)",
        description="From a stored experiment's (or suite's) paired differences dynamic − "
        "fixed, the power of the verdict's test for R search replicates × S evaluation seeds, "
        "each cell's cost, and the cheapest (R, S) that reaches the power. The spread is "
        "planned with at its 80% upper confidence bound. Reads the store only.",
    )
    p.add_argument("name", metavar="NAME", help="a stored experiment, else a stored suite")
    p.add_argument(
        "--effect", type=_delta, metavar="DELTA",
        help="the difference to detect (two-sided t-test at 5%%), in accuracy points or test "
        "loss (default: the experiment's [evaluate] margin)",
    )  # fmt: skip
    p.add_argument(
        "--margin", type=_delta, metavar="DELTA",
        help="plan to show equivalence within ±DELTA when the true difference is 0 (the 90%% "
        "interval inside the margin)",
    )  # fmt: skip
    p.add_argument(
        "--power", type=_power, default=0.8, metavar="P",
        help="the power to reach, strictly between 0 and 1 (default 0.8)",
    )  # fmt: skip
    p.add_argument("--json", action="store_true", help="print the plan as one JSON object")
    storage_flag(p)
    p.set_defaults(handler=cmd_plan)


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None


def _delta(text: str) -> float:
    value = _number(text)
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"expected a finite number > 0, got {text!r}")
    return value


def _power(text: str) -> float:
    value = _number(text)
    if not 0 < value < 1:  # NaN fails too
        raise argparse.ArgumentTypeError(
            f"expected a number strictly between 0 and 1 (e.g. 0.8), got {text!r}"
        )
    return value


def cmd_plan(args: argparse.Namespace) -> int:
    from study.api.plan import make_plan

    plan = make_plan(
        args.name, storage=args.storage, effect=args.effect, margin=args.margin,
        power=args.power,
    )  # fmt: skip
    if args.json:
        print(json.dumps(plan_json(plan), allow_nan=False, sort_keys=True))
    else:
        for line in plan_lines(plan):
            print(line)
    return 0


# ------------------------------------------------------------------------------ the text


def plan_lines(plan: Plan | SuitePlan) -> list[str]:
    """The plan as lines of text: what it plans for, the spread, the grid, the answer."""
    from reports.plan import Plan

    unit = "accuracy points" if plan.unit == "points" else "test loss"
    digits = 2 if plan.unit == "points" else 4
    if isinstance(plan, Plan):
        head = [f"plan for experiment {plan.experiment!r}: dynamic − fixed, in {unit}"]
        head += _components(plan.components, digits, "  ")
        scope = "R replicates"
    else:
        head = [f"plan for suite {plan.suite!r}: the pooled dynamic − fixed, in {unit}"]
        head += _suite(plan, digits)
        scope = "R replicates in every experiment"
    over = "the replicate means" if isinstance(plan, Plan) else "the pooled difference"
    lines = [*head, _goal(plan.goal, plan.unit, digits, over), ""]
    lines.append(f"power (%), {scope} (rows) × S evaluation seeds (columns):")
    lines += _table(plan.cells)
    lines.append("")
    lines.append(_answer(plan.cells, plan.recommended, plan.goal.power))
    if plan.recommended is None and not isinstance(plan, Plan) and plan.heterogeneity.k > 1:
        lines.append(
            "(the pooled test's degrees of freedom and the heterogeneity between experiments do "
            "not grow or shrink with R and S: more experiments help where more replicates cannot)"
        )
    return lines


def _value(x: float | None, digits: int) -> str:
    return "n/a" if x is None else f"{x:.{digits}f}"


def _components(p: PlanComponents, digits: int, indent: str) -> list[str]:
    whole = abs(p.seeds - round(p.seeds)) < 1e-9
    seeds = f"{round(p.seeds)}" if whole else f"{p.seeds:.1f} (harmonic mean)"
    sign = "+" if p.mean >= 0 else "−"
    lines = [
        f"{indent}stored: {p.replicates} replicates × {seeds} seeds, mean difference "
        f"{sign}{abs(p.mean):.{digits}f}",
        f"{indent}sd of the difference, point estimate → {100 * p.level:.0f}% upper bound "
        "(planned with):",
        f"{indent}  search  {_value(p.search_sd, digits)} → {_value(p.search_sd_upper, digits)}",
        f"{indent}  seed    {_value(p.seed_sd, digits)} → {_value(p.seed_sd_upper, digits)}",
    ]
    if p.seed_sd_upper is None:
        lines.append(
            f"{indent}  (one seed per replicate: the seed spread cannot be told from the "
            "search spread; all of it is planned as search spread)"
        )
    return lines


def _suite(plan: SuitePlan, digits: int) -> list[str]:
    from reports.common import plural

    lines = []
    for m in plan.members:
        if m.components is None:
            lines.append(f"  {m.experiment}: left out: {m.reason}")
            continue
        lines.append(f"  {m.experiment}:")
        lines += _components(m.components, digits, "    ")
    h = plan.heterogeneity
    if h.k < 2:
        lines.append(
            "  one experiment planned with: its own test, no heterogeneity between experiments"
        )
    else:
        lines.append(
            f"  between experiments: τ² {h.tau2:.{digits + 1}g} (DerSimonian–Laird) → "
            f"{h.tau2_upper:.{digits + 1}g} ({100 * h.level:.0f}% upper bound, planned with); "
            f"the pooled test has {plural(h.k - 1, 'degree')} of freedom ({h.k} experiments)"
        )
    return lines


def _goal(goal: Goal, unit: str, digits: int, over: str) -> str:
    size = f"{goal.delta:.{digits}g}"
    if unit == "points":
        size += " point" if goal.delta == 1 else " points"
    if goal.mode == "effect":
        what = (
            f"detect a difference of {size} (two-sided t-test at {100 * goal.alpha:g}% on {over})"
        )
    else:
        what = (
            f"show equivalence within ±{size} when the true difference is 0 (the "
            f"{100 * (1 - 2 * goal.alpha):g}% interval inside the margin)"
        )
    return f"goal: {what}, with power {100 * goal.power:g}%"


def _table(cells: tuple[Cell, ...]) -> list[str]:
    seeds = sorted({c.seeds for c in cells})
    rows = sorted({c.replicates for c in cells})
    at = {(c.replicates, c.seeds): c for c in cells}
    lines = ["   R" + "".join(f"{'S=' + str(s):>7}" for s in seeds)]
    for r in rows:
        lines.append(f"{r:>4}" + "".join(f"{_percent(at[(r, s)].power):>7}" for s in seeds))
    return lines


def _percent(power: float) -> str:
    return str(math.floor(100 * power + 1e-9))


def _answer(cells: tuple[Cell, ...], best: Cell | None, target: float) -> str:
    from reports.common import duration_text

    if best is None:
        top = max(cells, key=lambda c: (c.power, -c.runs))
        return (
            f"no (R, S) of the grid reaches power {100 * target:g}%: the highest is "
            f"{_percent(top.power)}% at R = {top.replicates}, S = {top.seeds}"
        )
    cost = f"{best.trials:,} trials, {best.runs:,} training runs in all"
    if best.seconds is not None:
        cost += f", about {duration_text(best.seconds)} of compute (one worker, stored timings)"
    return (
        f"recommended: R = {best.replicates}, S = {best.seeds} (power "
        f"{_percent(best.power)}%): {cost}"
    )


# ------------------------------------------------------------------------------ JSON


def _components_json(p: PlanComponents) -> dict[str, Any]:
    from reports.suite import json_float

    return {
        "replicates": p.replicates,
        "seeds": json_float(p.seeds),
        "mean": json_float(p.mean),
        "search_sd": json_float(p.search_sd),
        "seed_sd": json_float(p.seed_sd),
        "search_sd_upper": json_float(p.search_sd_upper),
        "seed_sd_upper": json_float(p.seed_sd_upper),
        "level": p.level,
    }


def _cell_json(c: Cell | None) -> dict[str, Any] | None:
    from reports.suite import json_float

    if c is None:
        return None
    return {
        "replicates": c.replicates,
        "seeds": c.seeds,
        "power": c.power,
        "trials": c.trials,
        "runs": c.runs,
        "seconds": json_float(c.seconds),
    }


def _costs_json(c: Costs) -> dict[str, Any]:
    from reports.suite import json_float

    return {
        "arms": c.arms,
        "searched_arms": c.searched,
        "n_trials": c.n_trials,
        "trial_seconds": json_float(c.trial_seconds),
        "eval_seconds": json_float(c.eval_seconds),
    }


def plan_json(plan: Plan | SuitePlan) -> dict[str, Any]:
    """The plan as JSON-ready data (``json.dumps(..., allow_nan=False)`` takes it): what
    ``--json`` prints. Numbers that are not finite are null."""
    from reports.plan import PLAN_CONFIDENCE, Plan

    goal = plan.goal
    out: dict[str, Any] = {
        "unit": plan.unit,
        "mode": goal.mode,
        "delta": goal.delta,
        "power": goal.power,
        "alpha": goal.alpha,
        "level": PLAN_CONFIDENCE,
        "cells": [_cell_json(c) for c in plan.cells],
        "recommended": _cell_json(plan.recommended),
    }
    if isinstance(plan, Plan):
        out.update(
            kind="experiment",
            experiment=plan.experiment,
            components=_components_json(plan.components),
            costs=_costs_json(plan.costs),
        )
        return out
    h = plan.heterogeneity
    out.update(
        kind="suite",
        suite=plan.suite,
        heterogeneity={"k": h.k, "tau2": h.tau2, "tau2_upper": h.tau2_upper, "level": h.level},
        experiments=[
            {
                "experiment": m.experiment,
                "components": None if m.components is None else _components_json(m.components),
                "costs": None if m.costs is None else _costs_json(m.costs),
                "left_out": m.reason,
            }
            for m in plan.members
        ],
    )
    return out
