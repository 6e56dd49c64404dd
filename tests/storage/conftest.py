"""Fixtures for the storage tests; the backend helpers live in ``tests/storage/backends.py``.

``store`` and ``prepared_url`` are parametrized over every backend, so a test that uses them
is the contract suite (optuna's ``pytest_storages.py`` pattern).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

import storage
from tests.storage.backends import BACKENDS, StoreTemplates, empty_url


@pytest.fixture(scope="session")
def store_templates(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StoreTemplates]:
    templates = StoreTemplates(tmp_path_factory.mktemp("templates"))
    yield templates
    templates.close()


@pytest.fixture(params=BACKENDS)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database on every backend (for tests about creating the tables)."""
    with empty_url(request.param, tmp_path) as url:
        yield url


@pytest.fixture(params=BACKENDS)
def prepared_url(
    request: pytest.FixtureRequest, tmp_path: Path, store_templates: StoreTemplates
) -> Iterator[str]:
    """A database with the (empty) dynl2 and Optuna tables, on every backend."""
    with store_templates.copy(request.param, tmp_path) as url:
        yield url


@pytest.fixture
def store(prepared_url: str) -> Iterator[storage.Store]:
    """The contract suite's store: every test using it runs once per backend."""
    with storage.open(prepared_url) as opened:
        yield opened


@pytest.fixture
def sqlite_store(tmp_path: Path, store_templates: StoreTemplates) -> Iterator[storage.Store]:
    """For input validation, which happens before any SQL and so is the same everywhere."""
    with store_templates.copy("sqlite", tmp_path) as url, storage.open(url) as opened:
        yield opened


@pytest.fixture
def postgres_url(tmp_path: Path) -> Iterator[str]:
    with empty_url("postgresql", tmp_path) as url:
        yield url


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'dynl2.db'}"
