from __future__ import annotations

from pathlib import Path

import pytest

import storage
from storage.urls import ENV_VAR, backend_of, default_url, masked_url, resolve_url, sqlite_path


@pytest.fixture(autouse=True)
def _no_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_VAR, raising=False)


def test_explicit_url_wins_over_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(ENV_VAR, f"sqlite:///{tmp_path / 'env.db'}")
    assert resolve_url(f"sqlite:///{tmp_path / 'explicit.db'}") == (
        f"sqlite:///{tmp_path / 'explicit.db'}"
    )


def test_env_is_used_when_no_url(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(ENV_VAR, f"sqlite:///{tmp_path / 'env.db'}")
    assert resolve_url(None) == f"sqlite:///{tmp_path / 'env.db'}"


def test_empty_env_falls_back_to_default(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(ENV_VAR, "  ")
    assert resolve_url(None) == default_url()


def test_default_is_workspace_file_in_cwd_and_creates_nothing(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    url = resolve_url(None)
    assert url == f"sqlite:///{tmp_path.resolve() / 'dynl2-workspace' / 'dynl2.db'}"
    assert sqlite_path(url) == tmp_path.resolve() / "dynl2-workspace" / "dynl2.db"
    assert list(tmp_path.iterdir()) == []


def test_relative_sqlite_path_becomes_absolute(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    assert resolve_url("sqlite:///sub/x.db") == f"sqlite:///{tmp_path.resolve() / 'sub/x.db'}"


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("postgresql://u:p@h:5433/db", "postgresql+psycopg://u:p@h:5433/db"),
        ("postgres://u@h/db", "postgresql+psycopg://u@h/db"),
        (
            "postgresql+psycopg://u@h/db?sslmode=require",
            "postgresql+psycopg://u@h/db?sslmode=require",
        ),
        ("mysql://root@h/db", "mysql+pymysql://root@h/db"),
        ("mysql+pymysql://root@h/db", "mysql+pymysql://root@h/db"),
    ],
)
def test_server_schemes_are_normalised(given: str, expected: str) -> None:
    assert resolve_url(given) == expected
    assert resolve_url(expected) == expected  # canonical URLs are fixed points


@pytest.mark.parametrize(
    ("bad", "expected_in_message"),
    [
        ("mongodb://h/db", "'mongodb'"),
        ("postgresql+psycopg2://h/db", "'postgresql+psycopg2'"),
        ("mysql+mysqldb://h/db", "'mysql+mysqldb'"),
        ("results.db", "sqlite:///"),
        ("", "''"),
        ("sqlite://", "does not name a SQLite file"),
        ("sqlite:///:memory:", "does not name a SQLite file"),
        ("sqlite:///file:x.db?mode=ro&uri=true", "does not name a SQLite file"),
    ],
)
def test_bad_urls_are_refused_with_the_allowed_schemes(bad: str, expected_in_message: str) -> None:
    with pytest.raises(storage.StorageURLError) as info:
        resolve_url(bad)
    message = str(info.value)
    assert expected_in_message in message
    if "SQLite file" not in message:
        for scheme in ("sqlite://", "postgresql+psycopg://", "mysql+pymysql://"):
            assert scheme in message
    assert isinstance(info.value, ValueError)  # callers may treat it as a bad argument


def test_bad_env_url_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_VAR, "oracle://h/db")
    with pytest.raises(storage.StorageURLError, match=ENV_VAR):
        resolve_url(None)


def test_messages_hide_passwords() -> None:
    with pytest.raises(storage.StorageURLError) as info:
        resolve_url("oracle://scott:tiger@h/db")
    assert "tiger" not in str(info.value)
    assert masked_url("postgresql+psycopg://u:secret@h/db") == "postgresql+psycopg://u:***@h/db"


@pytest.mark.parametrize(
    ("url", "backend"),
    [
        ("sqlite:////tmp/x.db", "sqlite"),
        ("postgresql+psycopg://h/db", "postgresql"),
        ("mysql+pymysql://h/db", "mysql"),
    ],
)
def test_backend_of(url: str, backend: str) -> None:
    assert backend_of(url) == backend
    assert (sqlite_path(url) is None) == (backend != "sqlite")
