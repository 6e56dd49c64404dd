"""Reliability tests start worker and run processes: none may outlive its test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .helpers import stop_all


@pytest.fixture(autouse=True)
def _no_process_left_behind() -> Iterator[None]:
    yield
    stop_all()
