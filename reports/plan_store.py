"""What a plan reads of one stored experiment: its paired differences, exactly as its verdict
pairs them, and what a run of it costs (:mod:`reports.plan` plans from them)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from reports.common import mean_seconds
from reports.data import build_report_verdict
from reports.plan import Costs
from reports.spec import ExperimentSpec
from storage import Store

__all__ = ["PlanInput", "plan_input"]


@dataclass(frozen=True)
class PlanInput:
    """What a plan reads of one stored experiment."""

    experiment: str
    accuracy: bool  # the unit: accuracy points (× 100), else test loss
    dynamic: str | None  # the first arm of scheme "dynamic", as the verdict takes it
    fixed: str | None  # the first arm of scheme "fixed"
    differences: Mapping[int, tuple[float, ...]] = field(hash=False)  # replicate -> d[r, ·]
    costs: Costs | None = None


def plan_input(store: Store, config: ExperimentSpec) -> PlanInput:
    """The paired differences ``dynamic − fixed`` of the experiment ``config`` names, exactly
    as its verdict pairs them (:attr:`reports.model.Verdict.differences`: the evaluations of
    each search's current best, in the verdict's unit), and its costs."""
    verdict = build_report_verdict(store, config)
    searched = sum(1 for a in config.arms if config.searched(a.name))
    trials = store.trials(config.name)
    ended = ("COMPLETE", "PRUNED", "FAIL")  # trials that ran to an end and took their time
    done = trials[trials["state"].isin(ended)] if not trials.empty else trials
    stored = store.evaluations(config.name)
    costs = Costs(
        arms=len(config.arms),
        searched=searched,
        n_trials=config.search.n_trials,
        trial_seconds=mean_seconds(done["duration_s"]) if not done.empty else None,
        eval_seconds=mean_seconds(stored["seconds"]) if not stored.empty else None,
    )
    return PlanInput(
        config.name, config.accuracy, verdict.dynamic_arm, verdict.fixed_arm,
        dict(verdict.differences), costs,
    )  # fmt: skip
