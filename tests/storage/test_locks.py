"""The named lock: exclusive across real processes, released when its holder dies."""

from __future__ import annotations

import multiprocessing
import os
import signal
import time
from pathlib import Path

import storage


def _hold(url: str, name: str, seconds: float, log_path: str) -> None:
    with storage.open(url) as store, store.lock(name):
        with open(log_path, "a") as log:
            log.write(f"in {time.monotonic():.6f}\n")
        time.sleep(seconds)
        with open(log_path, "a") as log:
            log.write(f"out {time.monotonic():.6f}\n")


def test_lock_is_exclusive_across_processes(prepared_url, tmp_path):
    log = tmp_path / "log.txt"
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_hold, args=(prepared_url, "x", 0.3, str(log))) for _ in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    events = [line.split() for line in log.read_text().splitlines()]
    assert [e[0] for e in events] == ["in", "out"] * 3  # never two holders at once


def test_locks_with_other_names_do_not_block(prepared_url):
    with storage.open(prepared_url) as store, store.lock("a"), store.lock("b"):
        pass  # a second name is free while the first is held: no deadlock


def _holding(url: str, name: str, log: Path) -> multiprocessing.process.BaseProcess:
    """A process holding lock ``name`` for a minute, returned once it holds it."""
    holder = multiprocessing.get_context("spawn").Process(
        target=_hold, args=(url, name, 60.0, str(log))
    )
    holder.start()
    deadline = time.monotonic() + 30
    while not (log.exists() and "in" in log.read_text()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert log.exists(), "the holder never took the lock"
    return holder


def test_lock_dies_with_its_holder(prepared_url, tmp_path):
    holder = _holding(prepared_url, "y", tmp_path / "log.txt")
    os.kill(holder.pid, signal.SIGKILL)
    holder.join(10)
    started = time.monotonic()
    with storage.open(prepared_url) as store, store.lock("y"):
        waited = time.monotonic() - started
    assert waited < 20  # released by the holder's death, not by its 60 s sleep ending


def test_try_lock_does_not_wait_and_frees_with_its_holder(prepared_url, tmp_path):
    holder = _holding(prepared_url, "z", tmp_path / "log.txt")
    with storage.open(prepared_url) as store:
        with store.try_lock("z") as got:
            assert got is False  # held elsewhere: refused at once, not waited for
        with store.try_lock("other") as got:
            assert got is True
        os.kill(holder.pid, signal.SIGKILL)
        holder.join(10)
        # Its holder's death frees it: at once on SQLite (flock), as soon as PostgreSQL has
        # ended the dead client's session (it notices the closed socket within moments).
        deadline = time.monotonic() + 30
        while True:
            with store.try_lock("z") as got:
                if got:
                    with storage.open(prepared_url) as second, second.try_lock("z") as again:
                        assert again is False  # and now this process holds it
                    break
            assert time.monotonic() < deadline, "the dead holder's lock was never freed"
            time.sleep(0.05)
