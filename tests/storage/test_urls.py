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


PG = "postgresql+psycopg://"

# (url, what the password is made of, what must still show). The password's pieces must never
# be in masked_url's output; host, port and database must, where the URL can be read.
TRICKY_URLS = [
    (
        PG + "user:SECRET@db.example.com:5432/study",
        ["SECRET"],
        "user:***@db.example.com:5432/study",
    ),
    (PG + "u:p@SECRET@host/db", ["SECRET"], "u:***@host/db"),  # a raw "@" in the password
    (PG + "u:SECRET@x@host:5433/db", ["SECRET", "x@"], "u:***@host:5433/db"),
    (PG + "u:p@SECRET@[::1]:5432/db", ["SECRET"], "u:***@[::1]:5432/db"),
    (PG + "p@SECRET@host/db", ["SECRET"], "***@host/db"),
    (PG + "u:a:SECRET@host/db", ["SECRET", "a:"], "u:***@host/db"),
    (PG + "u:SEC%40RET@host/db", ["SEC", "RET"], "u:***@host/db"),
    (PG + "u:SECRET/x@host/db", ["SECRET", "/x"], "u:***@host/db"),
    (PG + "u:SE?CRET@host/db", ["SE?", "CRET"], "u:***@host/db"),
    (PG + "u@host/db?password=SECRET", ["SECRET"], "u@host/db?password=***"),
    (
        PG + "u@host/db?sslmode=require&password=SEC&RET&application_name=x",
        ["SEC", "RET"],
        "u@host/db?sslmode=require&password=***&application_name=x",
    ),
    ("mysql+pymysql://u@host/db?passwd=SECRET", ["SECRET"], "u@host/db?passwd=***"),
    ("postgres://u:SECRET@host/db", ["SECRET"], "u:***@host/db"),
    ("oracle://u:SECRET@host/db", ["SECRET"], "u:***@host/db"),
    # Not readable as a URL by SQLAlchemy: hidden conservatively.
    (PG + "u:SECRET@host:notaport/db", ["SECRET", "notaport"], "@host:***/db"),
    (PG + "u:SECRET/db", ["SECRET"], "u:***/db"),  # the "@" is missing: the port is the secret
    (PG + "u:SECRET@host/db@x", ["SECRET", "host/db"], "***@x"),
    (PG + "u/x:SECRET@host/db", ["SECRET"], "***@host/db"),
    ("postgresql+psycopg:/u:SECRET@host/db", ["SECRET", "host"], "postgresql+psycopg:***"),
    ("u:SECRET@host/db", ["SECRET"], "***"),
]


@pytest.mark.parametrize(("url", "secrets", "shown"), TRICKY_URLS)
def test_masked_url_never_shows_the_password(url: str, secrets: list[str], shown: str) -> None:
    masked = masked_url(url)
    for secret in secrets:
        assert secret not in masked
    assert shown in masked


@pytest.mark.parametrize(("url", "secrets", "_shown"), TRICKY_URLS)
def test_refusals_never_show_the_password(url: str, secrets: list[str], _shown: str) -> None:
    try:
        canonical = resolve_url(url)
    except storage.StorageURLError as exc:
        message = str(exc)
        for secret in secrets:
            assert secret not in message
    else:
        for secret in secrets:
            assert secret not in masked_url(canonical)


@pytest.mark.parametrize(
    ("given", "user", "password", "host", "port"),
    [
        (PG + "u:p@SECRET@host/db", "u", "p@SECRET", "host", None),
        (PG + "u:p@ss@w@rd@host:5433/db", "u", "p@ss@w@rd", "host", 5433),
        (PG + "u:p@SECRET@[::1]:5432/db", "u", "p@SECRET", "::1", 5432),
        (PG + "u:SEC%40RET@host/db", "u", "SEC@RET", "host", None),
        (PG + "u:a:b/c?d@host/db", "u", "a:b/c?d", "host", None),
        (PG + "user@server:pw@host/db", "user@server", "pw", "host", None),
    ],
)
def test_a_raw_at_sign_in_the_password_belongs_to_the_password(
    given: str, user: str, password: str, host: str, port: int | None
) -> None:
    """The userinfo ends at the last "@" before the host, as Python's urllib reads it;
    SQLAlchemy alone would connect to a host named after the password's tail."""
    from sqlalchemy.engine import make_url

    parsed = make_url(resolve_url(given))
    assert (parsed.username, parsed.password, parsed.host, parsed.port, parsed.database) == (
        user,
        password,
        host,
        port,
        "db",
    )
    assert resolve_url(resolve_url(given)) == resolve_url(given)  # still a fixed point


def test_masked_text_hides_urls_and_conninfo_passwords() -> None:
    text = (
        "connection to postgresql+psycopg://u:SECRET1@h:5432/db failed; "
        "conninfo host=h password=SECRET2 user=u, and password='SEC RET3' dbname=x"
    )
    masked = storage.urls.masked_text(text)
    for secret in ("SECRET1", "SECRET2", "SEC", "RET3"):
        assert secret not in masked
    assert "u:***@h:5432/db" in masked
    assert "host=h" in masked and "user=u" in masked and "dbname=x" in masked


@pytest.mark.parametrize(
    ("bad", "named"),
    [
        ("sqlite:////tmp/x%00y.db", "NUL"),
        (PG + "u:SECRET@host/x%00y", "NUL"),
        (PG + "u%00v:SECRET@host/db", "NUL"),
        (PG + "u:SECRET@host/db?sslmode=re%00quire", "NUL"),
        (PG + "u:SECRET@/db", "names no host"),
        (PG + "u:SECRET@:5432/db", "names no host"),
        ("postgresql:///db", "names no host"),
        (PG + "u:SECRET@host:0/db", "1-65535"),
        (PG + "u:SECRET@host:65536/db", "1-65535"),
        (PG + "u:SECRET@host:-1/db", "1-65535"),
    ],
)
def test_urls_that_cannot_name_a_database_are_refused(bad: str, named: str) -> None:
    """Issue 17: a NUL reached the file system (ValueError), an empty host or a port out of
    range reached libpq (a message about the server 'None')."""
    with pytest.raises(storage.StorageURLError, match=named) as info:
        resolve_url(bad)
    assert "SECRET" not in str(info.value)


def test_a_unix_socket_is_named_with_the_host_parameter() -> None:
    url = resolve_url("postgresql:///db?host=/var/run/postgresql")
    assert backend_of(url) == "postgresql"
    assert resolve_url(url) == url
