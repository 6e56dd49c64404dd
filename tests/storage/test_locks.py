"""The named lock: exclusive across real processes, released when its holder dies."""

from __future__ import annotations

import fcntl
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path

import storage
from storage.locks import _file_lock


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


def _blocked_on(inode: int) -> bool:
    """Whether some flock waits for the file ``inode`` (the kernel lists waiters in
    /proc/locks with ``->``)."""
    for line in Path("/proc/locks").read_text().splitlines():
        fields = line.split()
        if "->" in fields and "FLOCK" in fields and any(f.endswith(f":{inode}") for f in fields):
            return True
    return False


def _wait_for(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 60
    while not condition():
        assert time.monotonic() < deadline, f"never: {what}"
        time.sleep(0.01)


def test_a_waiter_on_a_removed_lock_file_does_not_hold_the_lock(tmp_path):
    """On SQLite a holder removes the lock file before letting go. A waiter already blocked on
    that file wins it then, but the name's lock is the file at the path now: it must see the
    file was replaced and wait there, or it would hold the lock beside the next holder. The
    holders here are raw flocks, so each step happens in this order, whatever the load."""
    path = tmp_path / "x.dynl2-lock"
    old = os.open(path, os.O_RDWR | os.O_CREAT)
    fcntl.flock(old, fcntl.LOCK_EX)  # the first holder
    removed = os.fstat(old).st_ino
    waiter_holds = threading.Event()
    release_waiter = threading.Event()

    def waiter() -> None:
        with _file_lock(path, wait=True) as got:
            assert got
            waiter_holds.set()
            release_waiter.wait(60)

    thread = threading.Thread(target=waiter)
    thread.start()
    new = -1
    try:
        _wait_for(lambda: _blocked_on(removed), "the waiter blocked on the first file")
        os.unlink(path)  # the first holder lets go as _file_lock does: file removed first
        new = os.open(path, os.O_RDWR | os.O_CREAT)
        fcntl.flock(new, fcntl.LOCK_EX)  # the next holder, on a new file
        fcntl.flock(old, fcntl.LOCK_UN)  # the removed file is free: the waiter wins it
        current = os.fstat(new).st_ino
        _wait_for(
            lambda: waiter_holds.is_set() or _blocked_on(current),
            "the waiter either holding or waiting on the new file",
        )
        assert not waiter_holds.is_set(), "two holders of one lock"
        fcntl.flock(new, fcntl.LOCK_UN)
        _wait_for(waiter_holds.is_set, "the waiter holding the lock once it is free")
    finally:
        release_waiter.set()
        fcntl.flock(old, fcntl.LOCK_UN)
        if new >= 0:
            fcntl.flock(new, fcntl.LOCK_UN)
            os.close(new)
        os.close(old)
        thread.join(60)


def test_an_idle_sqlite_store_has_no_lock_files_beside_it(tmp_path):
    """Each name used to leave its lock file for good (one per experiment a server was sent)."""
    url = f"sqlite:///{tmp_path / 'store.db'}"
    with storage.open(url) as store:
        for i in range(20):
            with store.lock(f"name-{i}"), store.try_lock(f"other-{i}") as got:
                assert got is True
                assert len(list(tmp_path.glob("*.dynl2-lock"))) == 2  # while held: there
    assert list(tmp_path.glob("*.dynl2-lock")) == []
