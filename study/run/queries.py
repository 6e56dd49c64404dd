"""Read-side views of an experiment that more than one verb shows: the trials with the test
scores of the configurations that were evaluated, and a DataFrame as text (CSV or JSON records,
the way ``dynl2 trials`` and ``dynl2 serve`` give one; dict and list cells, such as a trial's
params, as JSON text in CSV, not Python reprs)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import pandas as pd

# The store and the progress views (Optuna, SQLAlchemy) only for the trials: `dynl2 sql` prints
# its rows with the functions below and imports neither.
if TYPE_CHECKING:
    from storage import Store
    from study.config.experiment import ExperimentConfig


def trials_with_tests(store: Store, config: ExperimentConfig, arm: str | None) -> pd.DataFrame:
    """Trials, plus the mean test metrics over the seeds where the trial's params were
    evaluated (the current best trial of each arm; evaluations of an earlier best are left
    out)."""
    from study.run.progress import current_evaluations

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


def json_cells(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with every dict or list cell replaced by its JSON text."""
    frame = frame.copy()
    for i in range(frame.shape[1]):
        column = frame.iloc[:, i]
        if any(isinstance(v, dict | list) for v in column):  # an empty column has none
            frame.isetitem(
                i, column.map(lambda v: json.dumps(v) if isinstance(v, dict | list) else v)
            )
    return frame


def frame_csv(frame: pd.DataFrame) -> str:
    return str(json_cells(frame).to_csv(index=False))


def frame_json(frame: pd.DataFrame) -> str:
    """JSON records; NaN as null, timestamps in ISO 8601, floats to 15 significant digits."""
    return str(frame.to_json(orient="records", date_format="iso", double_precision=15))
