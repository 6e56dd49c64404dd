"""Storage URL resolution: which database a command talks to.

The rule is the same for every command: an explicit URL wins, else ``$DYNL2_STORAGE``, else a
SQLite file in ``./dynl2-workspace/``. Resolving never touches the disk; the folder is created
only when something is written (see :func:`storage.engine.make_engine`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from storage.errors import StorageURLError

__all__ = [
    "ALLOWED_SCHEMES",
    "DEFAULT_DB_NAME",
    "DEFAULT_WORKSPACE",
    "ENV_VAR",
    "Backend",
    "backend_of",
    "default_url",
    "masked_url",
    "resolve_url",
    "sqlite_path",
]

ENV_VAR = "DYNL2_STORAGE"
DEFAULT_WORKSPACE = "dynl2-workspace"  # folder under the current directory
DEFAULT_DB_NAME = "dynl2.db"
ALLOWED_SCHEMES = ("sqlite", "postgresql+psycopg", "mysql+pymysql")

Backend = Literal["sqlite", "postgresql", "mysql"]

# Spellings we accept, mapped to the driver we actually use. `postgresql://` would make
# SQLAlchemy pick psycopg2, which we do not depend on; `postgres://` is what Heroku-style
# services print.
_SCHEME_ALIASES = {
    "sqlite": "sqlite",
    "sqlite+pysqlite": "sqlite",
    "postgresql": "postgresql+psycopg",
    "postgres": "postgresql+psycopg",
    "postgresql+psycopg": "postgresql+psycopg",
    "mysql": "mysql+pymysql",
    "mysql+pymysql": "mysql+pymysql",
}

_BACKENDS: dict[str, Backend] = {
    "sqlite": "sqlite",
    "postgresql+psycopg": "postgresql",
    "mysql+pymysql": "mysql",
}


def default_url(cwd: Path | None = None) -> str:
    """The URL of ``./dynl2-workspace/dynl2.db`` (absolute), without creating anything."""
    base = (cwd or Path.cwd()).resolve()
    return f"sqlite:///{base / DEFAULT_WORKSPACE / DEFAULT_DB_NAME}"


def resolve_url(url: str | None = None) -> str:
    """Return the canonical storage URL to use.

    ``url`` if given, else the ``DYNL2_STORAGE`` environment variable if set and non-empty,
    else :func:`default_url`. The scheme is validated and normalised (``postgresql://`` becomes
    ``postgresql+psycopg://``) and SQLite paths are made absolute, so worker processes started
    from another directory open the same file.
    """
    if url is not None:
        return _canonical(url, source="`storage` URL")
    from_env = os.environ.get(ENV_VAR, "")
    if from_env.strip():
        return _canonical(from_env.strip(), source=f"environment variable {ENV_VAR}")
    return default_url()


def _canonical(url: str, *, source: str) -> str:
    allowed = ", ".join(f"{s}://" for s in ALLOWED_SCHEMES)
    if "://" not in url:
        hint = ""
        if url.strip() and not url.strip().startswith(("-", ":")):
            hint = f" (for a SQLite file, write sqlite:///{Path(url).resolve()})"
        raise StorageURLError(
            f"The {source} must be a database URL starting with one of {allowed}, "
            f"but got {url!r}{hint}."
        )
    scheme, rest = url.split("://", 1)
    canonical_scheme = _SCHEME_ALIASES.get(scheme.lower())
    if canonical_scheme is None:
        raise StorageURLError(
            f"The {source} uses the unsupported scheme {scheme!r} in {masked_url(url)!r}; "
            f"use one of {allowed}."
        )
    try:
        parsed = make_url(f"{canonical_scheme}://{rest}")
    except ArgumentError as exc:
        raise StorageURLError(
            f"The {source} {masked_url(url)!r} could not be parsed as a database URL ({exc})."
        ) from exc
    if canonical_scheme == "sqlite":
        parsed = _absolute_sqlite(parsed, source=source, original=url)
    return parsed.render_as_string(hide_password=False)


def _absolute_sqlite(parsed: URL, *, source: str, original: str) -> URL:
    database = parsed.database
    if not database or database == ":memory:" or database.startswith("file:"):
        raise StorageURLError(
            f"The {source} {original!r} does not name a SQLite file; in-memory and URI-style "
            "databases cannot be shared between workers, so write sqlite:///path/to/file.db."
        )
    return parsed.set(database=str(Path(database).resolve()))


def backend_of(url: str) -> Backend:
    """Which database family a canonical URL (from :func:`resolve_url`) talks to."""
    scheme = url.split("://", 1)[0].lower()
    backend = _BACKENDS.get(_SCHEME_ALIASES.get(scheme, scheme))
    if backend is None:
        allowed = ", ".join(f"{s}://" for s in ALLOWED_SCHEMES)
        raise StorageURLError(
            f"The storage URL {masked_url(url)!r} uses the unsupported scheme {scheme!r}; "
            f"use one of {allowed}."
        )
    return backend


def sqlite_path(url: str) -> Path | None:
    """The database file of a SQLite URL (absolute), or ``None`` for other backends."""
    if backend_of(url) != "sqlite":
        return None
    database = make_url(url).database
    if not database:
        return None
    return Path(database).resolve()


def masked_url(url: str) -> str:
    """The URL with any password replaced by ``***``, for messages and logs."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return url
