"""Shared test setup: a private data cache per test session, so tests never touch ~/.cache."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator

import pytest


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
