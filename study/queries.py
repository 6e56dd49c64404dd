"""Read-side views of an experiment that more than one verb shows: the trials with the test
scores of the configurations that were evaluated."""

from __future__ import annotations

import pandas as pd

from storage import Store

from .experiment import ExperimentConfig
from .progress import current_evaluations


def trials_with_tests(store: Store, config: ExperimentConfig, arm: str | None) -> pd.DataFrame:
    """Trials, plus the mean test metrics over the seeds where the trial's params were
    evaluated (the current best trial of each arm; evaluations of an earlier best are left
    out)."""
    trials = store.trials(config.name, arm)
    evals, _ = current_evaluations(store, config)
    trials["test_loss"] = float("nan")
    trials["test_acc"] = float("nan")
    trials["test_seeds"] = 0
    for (arm_name, replicate), group in evals.groupby(["arm", "replicate"]):
        params = dict(group.iloc[0]["params"])
        match = (
            (trials["arm"] == arm_name)
            & (trials["replicate"] == replicate)
            & trials["params"].map(params.__eq__)
        )
        if params and match.any():
            trials.loc[match, "test_loss"] = group["test_loss"].mean()
            trials.loc[match, "test_acc"] = group["test_acc"].mean()
            trials.loc[match, "test_seeds"] = len(group)
    return trials
