"""Sizing the next run from a stored one: ``dynl2 plan``.

:func:`make_plan` reads a stored experiment (or suite) and asks how many search replicates R
and evaluation seeds S a verdict about dynamic − fixed needs: the power of the verdict's test
at every (R, S) of a grid, each cell's cost, and the cheapest cell that reaches the power. The
statistics are :mod:`reports.plan`'s; this module finds the experiment or suite, checks what
the user gave and turns what cannot be planned into one line (:class:`study.UsageError`). It
only reads the store, and imports no torch.
"""

from __future__ import annotations

import math

import storage as storage_layer
from reports.plan import (
    Goal,
    Plan,
    SuiteMember,
    SuitePlan,
    build_plan,
    build_suite_plan,
    estimate_components,
)
from reports.plan_store import PlanInput, plan_input
from storage import Store
from study.api.experiments import storage_url
from study.errors import UsageError
from study.run.runs import stored_experiment

__all__ = ["DEFAULT_POWER", "make_plan"]

DEFAULT_POWER = 0.8


def make_plan(
    name: str,
    *,
    storage: str | None = None,
    effect: float | None = None,
    margin: float | None = None,
    power: float = DEFAULT_POWER,
) -> Plan | SuitePlan:
    """The plan for experiment ``name`` or, when no experiment has that name, for suite
    ``name``: ``dynl2 plan``.

    ``effect``: the difference to detect (two-sided t-test at 5%); ``margin``: the margin
    within which to show equivalence when the true difference is 0 (two one-sided tests at
    5%); one of them, in the verdict's unit (accuracy points, or test loss). Without either,
    the experiment's ``[evaluate] margin`` is the effect to detect. ``power``: the power the
    recommended (R, S) must reach, strictly between 0 and 1."""
    _check(effect, margin, power)
    with storage_layer.open(storage_url(storage), create=False) as store:
        if name in set(store.experiments()["name"]):
            return _experiment_plan(store, name, effect, margin, power)
        try:
            store.suite(name)
        except storage_layer.SuiteNotFound:
            raise UsageError(
                f"no experiment or suite named {name!r} in {store.display_url}"
            ) from None
        return _suite_plan(store, name, effect, margin, power)


def _check(effect: float | None, margin: float | None, power: float) -> None:
    if effect is not None and margin is not None:
        raise UsageError(
            "give --effect (a difference to detect) or --margin (an equivalence margin), not both"
        )
    for flag, value in (("--effect", effect), ("--margin", margin)):
        if value is not None and not (math.isfinite(value) and value > 0):
            raise UsageError(
                f"{flag} must be a finite number > 0 (accuracy points, or test loss), "
                f"got {value!r}"
            )
    if not (math.isfinite(power) and 0 < power < 1):
        raise UsageError(f"--power must lie strictly between 0 and 1 (e.g. 0.8), got {power!r}")


def _goal(
    effect: float | None, margin: float | None, power: float, default: float | None, whose: str
) -> Goal:
    if margin is not None:
        return Goal("equivalence", margin, power)
    if effect is not None:
        return Goal("effect", effect, power)
    if default is not None:
        return Goal("effect", default, power)
    raise UsageError(
        "give --effect DELTA (a difference to detect) or --margin DELTA (an equivalence "
        f"margin), in accuracy points or test loss: {whose} has no [evaluate] margin to plan for"
    )


def _margin(store: Store, name: str) -> float | None:
    """The experiment's ``[evaluate] margin`` (the smallest difference worth having), if any."""
    return stored_experiment(store, name).evaluate.margin


def _unit(accuracy: bool) -> str:
    return "points" if accuracy else "test loss"


def _problem(found: PlanInput) -> str | None:
    """Why the experiment cannot be planned from, or None."""
    if found.dynamic is None or found.fixed is None:
        missing = " and ".join(
            f"no arm of scheme {s!r}" for s, a in (("dynamic", found.dynamic),
                                                   ("fixed", found.fixed)) if a is None
        )  # fmt: skip
        return f"experiment {found.experiment!r} has {missing}: a plan compares the two"
    n = len(found.differences)
    if n < 2:
        return (
            f"experiment {found.experiment!r} has {n} replicate{'' if n == 1 else 's'} with "
            f"paired evaluations of {found.dynamic} and {found.fixed}; a plan needs [search] "
            "replicates >= 2 with evaluations (dynl2 evaluate)"
        )
    parts = estimate_components(found.differences)
    if parts.mean_sd == 0 and not parts.seed_sd:
        return (
            f"experiment {found.experiment!r}: {found.dynamic} − {found.fixed} is the same "
            "in every evaluation run: no spread to plan with"
        )
    return None


def _experiment_plan(
    store: Store, name: str, effect: float | None, margin: float | None, power: float
) -> Plan:
    config = stored_experiment(store, name)
    found = plan_input(store, config)
    problem = _problem(found)
    if problem is not None:
        raise UsageError(problem)
    goal = _goal(effect, margin, power, _margin(store, name), f"experiment {name!r}")
    assert found.costs is not None
    parts = estimate_components(found.differences)
    return build_plan(name, _unit(found.accuracy), goal, parts, found.costs)


def _suite_plan(
    store: Store, name: str, effect: float | None, margin: float | None, power: float
) -> SuitePlan:
    info = store.suite(name)
    stored = set(store.experiments()["name"])
    members: list[SuiteMember] = []
    units: set[str] = set()
    margins: set[float | None] = set()
    for member in info.members:
        if member.experiment not in stored:
            members.append(SuiteMember(member.experiment, None, None, "not started"))
            continue
        found = plan_input(store, stored_experiment(store, member.experiment))
        problem = _problem(found)
        if problem is not None:
            members.append(SuiteMember(member.experiment, None, None, problem))
            continue
        units.add(_unit(found.accuracy))
        margins.add(_margin(store, member.experiment))
        parts = estimate_components(found.differences)
        members.append(SuiteMember(member.experiment, parts, found.costs))
    if not units:
        raise UsageError(
            f"suite {name!r} has no experiment with [search] replicates >= 2 evaluated "
            "for both its dynamic and its fixed arm: nothing to plan with (dynl2 evaluate)"
        )
    if len(units) > 1:
        raise UsageError(
            f"suite {name!r} mixes accuracy points and test loss: its differences cannot be "
            "pooled into one plan; plan its experiments one by one"
        )
    default = margins.pop() if len(margins) == 1 else None
    goal = _goal(effect, margin, power, default, f"suite {name!r}")
    return build_suite_plan(name, units.pop(), goal, members)
