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
