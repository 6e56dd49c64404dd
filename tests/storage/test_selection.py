"""``storage.best_trials`` and ``storage.split_evaluations``: the one rule for which trial is an
arm's best and which stored evaluations retrained it."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pandas as pd
import pytest

import storage


def trials(*rows: tuple) -> pd.DataFrame:
    """Rows ``(arm, number, state, value, params[, draw])``; the draw is the number unless
    given (a search without retries)."""
    return pd.DataFrame(
        [
            {
                "arm": a,
                "replicate": 1,
                "number": n,
                "draw": draw[0] if draw else n,
                "state": s,
                "value": v,
                "params": p,
            }
            for a, n, s, v, p, *draw in rows
        ]
    )  # one replicate, as Store.trials gives it for a store of R = 1


def evals(*rows: tuple[str, int, dict]) -> pd.DataFrame:
    return pd.DataFrame([{"arm": a, "replicate": 1, "seed": s, "params": p} for a, s, p in rows])


TRIALS = trials(
    ("fixed", 0, "COMPLETE", 0.8, {"lam": 1.0}),
    ("fixed", 1, "COMPLETE", 0.9, {"lam": 2.0}),
    ("fixed", 2, "COMPLETE", 0.9, {"lam": 3.0}),  # ties with 1: the lower number wins
    ("fixed", 3, "PRUNED", 0.99, {"lam": 4.0}),  # not complete
    ("fixed", 4, "COMPLETE", math.nan, {"lam": 5.0}),  # no value
    ("dynamic", 0, "FAIL", math.nan, {"alpha": 1.0}),
    ("dynamic", 1, "COMPLETE", 0.7, {"alpha": 2.0}),
)


@pytest.mark.parametrize(
    ("direction", "expected"),
    [("maximize", {"fixed": 1, "dynamic": 1}), ("minimize", {"fixed": 0, "dynamic": 1})],
)
def test_best_trials(direction, expected):
    best = storage.best_trials(TRIALS, direction)
    assert {arm: int(row["number"]) for arm, row in best.items()} == expected


def test_a_tie_goes_to_the_lower_draw_and_a_retry_keeps_its_original_s():
    """Trial 1 was handed back at a stop (FAIL) and retried as trial 3, after trial 2 was
    drawn: a tie between 3 and 2 goes to 3, the trial a run left alone numbered 1."""
    frame = trials(
        ("fixed", 0, "COMPLETE", 0.5, {"lam": 1.0}, 0),
        ("fixed", 1, "FAIL", math.nan, {"lam": 2.0}, 1),
        ("fixed", 2, "COMPLETE", 0.9, {"lam": 3.0}, 2),
        ("fixed", 3, "COMPLETE", 0.9, {"lam": 2.0}, 1),
    )
    assert int(storage.best_trials(frame, "maximize")["fixed"]["number"]) == 3
    records = [SimpleNamespace(**row) for row in frame.to_dict("records")]
    assert storage.best_params(records, "maximize") == {("fixed", 1): {"lam": 2.0}}
    untied = frame.assign(draw=frame["number"])  # numbers alone would pick trial 2
    assert int(storage.best_trials(untied, "maximize")["fixed"]["number"]) == 2


def test_best_trials_of_nothing_and_a_bad_direction():
    assert storage.best_trials(TRIALS.iloc[0:0], "maximize") == {}
    with pytest.raises(ValueError, match="direction"):
        storage.best_trials(TRIALS, "up")


def test_split_evaluations_keeps_only_the_current_best():
    stored = evals(
        ("fixed", 0, {"lam": 2.0}),  # current
        ("fixed", 1, {"lam": 1.0}),  # an earlier best: stale
        ("dynamic", 0, {"alpha": 2.0}),  # current
        ("none", 0, {}),  # nothing searched: current
        ("none", 1, {"lr": 0.1}),  # params for an unsearched arm: stale
        ("ghost", 0, {"x": 1}),  # a searched arm without a complete trial: stale
    )
    current, stale = storage.split_evaluations(
        stored, TRIALS, "maximize", {"fixed", "dynamic", "ghost"}
    )
    assert list(zip(current["arm"], current["seed"], strict=True)) == [
        ("fixed", 0), ("dynamic", 0), ("none", 0),
    ]  # fmt: skip
    assert list(zip(stale["arm"], stale["seed"], strict=True)) == [
        ("fixed", 1), ("none", 1), ("ghost", 0),
    ]  # fmt: skip


def test_split_evaluations_of_no_rows():
    empty = evals()
    current, stale = storage.split_evaluations(empty, TRIALS, "maximize", {"fixed"})
    assert current.empty and stale.empty
