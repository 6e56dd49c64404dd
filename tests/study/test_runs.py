"""How a run divides the machine among its workers (:mod:`study.run.runs`)."""

from __future__ import annotations

import os

import pytest

from study.run.runs import worker_threads

CPUS = os.cpu_count() or 1


@pytest.mark.parametrize(
    ("value", "workers", "expected"),
    [
        ("", 1, CPUS),  # unset: the lone worker gets every CPU
        ("", 2, max(1, CPUS // 2)),  # the CPUs divided among the workers
        ("", CPUS + 3, 1),  # never fewer than one
        ("1", 1, 1),  # the user's, when set: a shared machine keeps cores for other work
        ("1", 2, 1),
        (str(CPUS), 2, CPUS),
    ],
)
def test_worker_threads_take_the_users_setting_or_divide_the_cpus(
    monkeypatch: pytest.MonkeyPatch, value: str, workers: int, expected: int
) -> None:
    monkeypatch.setenv("DYNL2_THREADS", value)
    assert worker_threads(workers) == expected
