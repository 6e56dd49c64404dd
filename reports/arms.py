"""One arm's test result as the verdict gives it: its runs' test metric in the verdict's unit,
the mean and its interval, the diverged runs left out.

:func:`reports.verdict.build_verdict` builds every arm's result here, and so does ``dynl2
status`` (:func:`study.run.progress.quick_summary`), from plain rows: this module imports no
pandas and no SciPy, and the status prints what the report prints.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable
from typing import Any

from reports.common import finite
from reports.model import ArmResult
from reports.stats import ACCURACY_POINTS, LOSS, mean_ci

__all__ = ["arm_result", "metric_of"]

Keyed = dict[tuple[int, int], float]  # (replicate, seed) -> the test metric, in display unit


def metric_of(accuracy: bool) -> str:
    """The test metric a verdict reads: ``test_acc`` (accuracy) or ``test_loss``."""
    return "test_acc" if accuracy else "test_loss"


def arm_result(
    arm: str,
    scheme: str,
    rows: Iterable[tuple[Any, Any, Any]],
    *,
    accuracy: bool,
    searched: bool,
    replicates: int,
) -> tuple[ArmResult, Keyed]:
    """``(result, keyed)`` of one arm from ``rows``, its current evaluations as ``(replicate,
    seed, test metric)`` in the store's order (a run that diverged has no finite metric).
    ``keyed`` is what the comparisons pair: the finite runs by (replicate, seed), in points for
    accuracy. An arm with nothing to search (``searched`` false) trains one configuration, the
    same in every replicate: its runs (of replicate 1) stand for every replicate in ``keyed``."""
    scale = 100.0 if accuracy else 1.0
    bounds = ACCURACY_POINTS if accuracy else LOSS  # what the numbers can be: the cut
    n_rows = 0
    keyed: Keyed = {}
    for r, seed, value in rows:
        n_rows += 1
        if finite(value) is not None:
            keyed[(int(r), int(seed))] = scale * float(value)
    values = list(keyed.values())
    by_replicate: dict[int, list[float]] = {}
    for (rep, _), v in keyed.items():
        by_replicate.setdefault(rep, []).append(v)
    if not searched:  # one configuration for every search
        once = {seed: v for (r, seed), v in keyed.items() if r == 1}
        keyed = {(r, seed): v for r in range(1, replicates + 1) for seed, v in once.items()}
    by_seed = {seed: v for (r, seed), v in keyed.items() if r == 1}
    # With replicates the arm's interval, like the comparisons', is over its replicates'
    # means: the runs of one search are not independent draws of the scheme's level.
    means = [statistics.fmean(v) for _, v in sorted(by_replicate.items())]
    over = means if len(means) > 1 else values
    ci = mean_ci(over, bounds) if values else None
    result = ArmResult(
        arm, scheme, ci, n_rows - len(values), by_seed, tuple(values),
        tuple(means) if len(means) > 1 else (),
    )  # fmt: skip
    return result, keyed
