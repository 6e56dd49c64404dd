"""What the fused-engine tests compare: a member's epochs against its run alone."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from trainers import EpochRecord, TrainResult
from trainers.fused import FusedOutcome


def same_history(a: Sequence[EpochRecord], b: Sequence[EpochRecord], n_val: int) -> None:
    """Histories equal up to float rounding; an accuracy may differ by one borderline example."""
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        for name in ("train_loss", "val_loss", "lam_mean", "lam_min", "lam_max", "weight_norm"):
            assert getattr(y, name) == pytest.approx(getattr(x, name), rel=1e-4, abs=1e-6), (
                f"epoch {x.epoch} {name}"
            )
        if x.val_acc is not None:
            assert y.val_acc is not None
            assert abs(x.val_acc - y.val_acc) <= 1.5 / n_val


def result_of(outcome: FusedOutcome) -> TrainResult:
    """A member's outcome, which must be a result (not a divergence)."""
    assert isinstance(outcome, TrainResult), outcome
    return outcome
