"""Shared test setup: a private data cache per test session, so tests never touch ~/.cache;
SIGINT delivered to the processes the tests start."""

from __future__ import annotations

import os
import signal
import tempfile
from collections.abc import Iterator

import pytest


def pytest_configure(config: pytest.Config) -> None:
    """A suite started as a background job of a non-interactive shell (``pytest &`` in a
    script) inherits SIGINT ignored, and so would every ``dynl2`` it starts: dynl2 keeps an
    ignored SIGINT ignored, as ``nohup`` asks (tests/reliability/test_signals.py). The tests
    that send SIGINT need it delivered, so the suite takes Python's own handler, which a child
    process does not inherit (it starts with the default action)."""
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    _one_thread_each()


def _one_thread_each() -> None:
    """One torch (and BLAS) thread in each test process and in every process it starts,
    unless the caller says otherwise: the suite's two test processes share the machine's
    cores with each other and with the workers they start, and tiny models on two
    oversubscribed cores train about 2.5x slower with two threads than with one. Set before
    any test module imports torch (which reads ``OMP_NUM_THREADS`` once), and inherited by the
    xdist worker processes, started after this hook. ``DYNL2_THREADS`` is what an in-process
    run gives torch (``study.run.runs.worker_threads``); the tests of that variable set their own
    values."""
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("DYNL2_THREADS", "1")


@pytest.fixture(scope="session", autouse=True)
def _private_cache() -> Iterator[None]:
    old = os.environ.get("DYNL2_CACHE")
    with tempfile.TemporaryDirectory(prefix="dynl2-cache-") as path:
        os.environ["DYNL2_CACHE"] = path
        yield
    if old is None:
        os.environ.pop("DYNL2_CACHE", None)
    else:
        os.environ["DYNL2_CACHE"] = old
