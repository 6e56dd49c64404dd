"""Evaluations per search replicate: each replicate's rows apart, on every backend."""

from __future__ import annotations

from typing import Any

import pytest

import storage
from storage import EVALUATION_COLUMNS

CONFIG = {"arms": ["dynamic", "fixed"]}


def test_each_replicate_keeps_its_own_seeds(store: storage.Store) -> None:
    store.create_experiment("exp", CONFIG)
    store.record_evaluation("exp", "fixed", 1, {"lam": 0.1}, replicate=2, test_loss=0.2)
    store.record_evaluation("exp", "fixed", 0, {"lam": 0.2}, test_loss=0.3)  # replicate 1
    store.record_evaluation("exp", "fixed", 1, {"lam": 0.2}, replicate=1, test_loss=0.4)
    store.record_evaluation("exp", "dynamic", 0, {"alpha": 1.0}, replicate=3, test_loss=0.5)
    store.record_evaluation("exp", "fixed", 1, {"lam": 0.3}, replicate=2, test_loss=0.6)
    frame = store.evaluations("exp")
    assert list(frame.columns) == list(EVALUATION_COLUMNS)
    assert list(frame.columns[:3]) == ["arm", "seed", "replicate"]
    assert str(frame["replicate"].dtype) == "int64"
    assert [(r.arm, r.replicate, r.seed, r.test_loss) for r in frame.itertuples()] == [
        ("dynamic", 3, 0, 0.5),
        ("fixed", 1, 0, 0.3),
        ("fixed", 1, 1, 0.4),
        ("fixed", 2, 1, 0.6),  # recorded twice: the second replaced the first
    ]
    assert store.evaluated_seeds("exp", "fixed") == {0, 1}
    assert store.evaluated_seeds("exp", "fixed", replicate=2) == {1}
    assert store.evaluated_seeds("exp", "fixed", 3) == set()
    assert store.evaluated_seeds("exp", "dynamic", 3) == {0}


BAD_REPLICATES = [0, -1, True, False, "2", 2.0, None]


@pytest.mark.parametrize("replicate", BAD_REPLICATES, ids=repr)
def test_bad_replicates_are_refused(sqlite_store: storage.Store, replicate: Any) -> None:
    sqlite_store.create_experiment("exp", CONFIG)
    with pytest.raises(storage.InvalidRecord, match="`replicate` must be an int >= 1"):
        sqlite_store.record_evaluation("exp", "fixed", 0, {}, replicate=replicate, test_loss=0.1)
    with pytest.raises(storage.InvalidRecord, match="`replicate`"):
        sqlite_store.evaluated_seeds("exp", "fixed", replicate)
    assert sqlite_store.evaluations("exp").empty
