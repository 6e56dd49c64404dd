"""keep_freed_memory: tensors allocated again after a free reuse the freed pages instead of
faulting in fresh ones (glibc's malloc; the setting is a no-op, returning False, elsewhere)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from trainers import keep_freed_memory

# Allocate 8 tensors of about 4 MB, then free them all, round after round, as a training step
# does with its activations and gradients; count the minor page faults of the last rounds
# (after the first rounds grew the heap). The probe imports what a training process imports
# first: how many pages malloc hands back by default depends on the heap those imports leave
# (with torch alone, few: 1,230-2,459 of 78,125 measured, as with the setting).
PROBE = """
import json, resource, sys
import torch
import trainers.fused
from trainers import keep_freed_memory
kept = keep_freed_memory() if sys.argv[1] == "keep" else None
def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
sizes = [1_000_000 + 37_000 * i for i in range(8)]
for warm in range(3):
    live = [torch.ones(n) for n in sizes]
    del live
before = faults()
for _ in range(10):
    live = [torch.ones(n) for n in sizes]
    del live
print(json.dumps({"kept": kept, "faults": faults() - before}))
"""


def _probe(mode: str) -> dict[str, object]:
    out = subprocess.run(
        [sys.executable, "-c", PROBE, mode], capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout)  # type: ignore[no-any-return]


def _glibc() -> bool:
    import ctypes

    try:
        ctypes.CDLL(None).gnu_get_libc_version  # noqa: B018
    except (OSError, AttributeError):
        return False
    return sys.platform.startswith("linux")


@pytest.mark.skipif(not _glibc(), reason="glibc's malloc only")
def test_freed_tensors_are_reused_without_page_faults():
    kept, default = _probe("keep"), _probe("default")
    assert kept["kept"] is True
    pages = 10 * 8 * 4_000_000 // 4096  # what the measured rounds touch
    assert kept["faults"] < pages // 20  # reused: almost no fresh page
    # Without it, malloc hands pages back every round. How many depends on where glibc's
    # adaptive mmap threshold settles (measured over 24 fresh processes: 87% or 32% of the
    # pages, never fewer; with the setting 0% or 1.6%).
    assert default["faults"] > pages // 4


def test_returns_a_bool_and_can_be_called_twice():
    first = keep_freed_memory()
    assert isinstance(first, bool)
    assert keep_freed_memory() == first
