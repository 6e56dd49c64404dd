"""Storage URL resolution: which database a command talks to.

The rule is the same for every command: an explicit URL wins, else ``$DYNL2_STORAGE``, else a
SQLite file in ``./dynl2-workspace/``. Resolving never touches the disk; the folder is created
only when something is written (see :func:`storage.engine.make_engine`).

A URL may carry a password: messages show :func:`masked_url` (or :func:`masked_text` for a
driver's words), and child processes get the URL in ``$DYNL2_STORAGE``, never on their command
lines, which every local user can read.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import unquote_plus

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
    "masked_text",
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
    shown = masked_url(url)
    if "://" not in url:
        hint = ""
        if url.strip() and not url.strip().startswith(("-", ":")) and shown == url:
            hint = f" (for a SQLite file, write sqlite:///{Path(url).resolve()})"
        raise StorageURLError(
            f"The {source} must be a database URL starting with one of {allowed}, "
            f"but got {shown!r}{hint}."
        )
    scheme, rest = url.split("://", 1)
    canonical_scheme = _SCHEME_ALIASES.get(scheme.lower())
    if canonical_scheme is None:
        named = repr(scheme) if _SCHEME.match(scheme) else "that is not a scheme"
        raise StorageURLError(
            f"The {source} uses the unsupported scheme {named} in {shown!r}; use one of {allowed}."
        )
    parts = _split(f"{canonical_scheme}://{rest}")
    assert parts is not None  # the scheme is one of ours
    if canonical_scheme != "sqlite" and "@" in (parts.path or ""):
        raise StorageURLError(
            f"The {source} {shown!r} has an '@' after its host; write an '@' in a user name, "
            "password or database name as %40."
        )
    try:
        parsed = make_url(parts.with_userinfo_quoted())
    except (ArgumentError, ValueError) as exc:
        # Not SQLAlchemy's words: they quote the text it could not read (a "port" that is
        # really a password, when the '@' is missing).
        raise StorageURLError(
            f"The {source} {shown!r} could not be parsed as a database URL; write it as "
            f"{canonical_scheme}://USER:PASSWORD@HOST:PORT/DATABASE (the port a number)."
        ) from exc
    _check_parts(parsed, source=source, shown=shown)
    if canonical_scheme == "sqlite":
        parsed = _absolute_sqlite(parsed, source=source, original=url)
    return parsed.render_as_string(hide_password=False)


def _check_parts(parsed: URL, *, source: str, shown: str) -> None:
    """What parses but cannot name a database: a NUL (``%00``) anywhere, which no file or
    server name holds; a PostgreSQL URL without a host (libpq would try a local socket and
    say so about a server named ``None``) or with a port outside 1-65535."""
    parts = [parsed.username, parsed.password, parsed.host, parsed.database]
    parts += [f"{k}={v}" for k, v in parsed.query.items()]
    if any("\x00" in str(part) for part in parts if part is not None):
        raise StorageURLError(
            f"The {source} {shown!r} holds a NUL character (%00), which no file, server or "
            "database name may contain; remove it."
        )
    if parsed.get_backend_name() != "postgresql":
        return
    if not parsed.host and "host" not in parsed.query:
        raise StorageURLError(
            f"The {source} {shown!r} names no host; write the server's name or address after "
            "the '@' (127.0.0.1 for this machine), or ?host=/path/to/socket/folder for a "
            "Unix socket."
        )
    if parsed.port is not None and not 1 <= parsed.port <= 65535:
        raise StorageURLError(
            f"The {source} {shown!r} has a port outside 1-65535 (PostgreSQL's is 5432); "
            "write it as HOST:PORT."
        )


def _absolute_sqlite(parsed: URL, *, source: str, original: str) -> URL:
    database = parsed.database
    if not database or database == ":memory:" or database.startswith("file:"):
        raise StorageURLError(
            f"The {source} {masked_url(original)!r} does not name a SQLite file; in-memory and "
            "URI-style databases cannot be shared between workers, so write "
            "sqlite:///path/to/file.db."
        )
    return parsed.set(database=str(Path(database).resolve()))


def backend_of(url: str) -> Backend:
    """Which database family a canonical URL (from :func:`resolve_url`) talks to."""
    scheme = url.split("://", 1)[0].lower()
    backend = _BACKENDS.get(_SCHEME_ALIASES.get(scheme, scheme))
    if backend is None:
        allowed = ", ".join(f"{s}://" for s in ALLOWED_SCHEMES)
        named = repr(scheme) if _SCHEME.match(scheme) else "that is not a scheme"
        raise StorageURLError(
            f"The storage URL {masked_url(url)!r} uses the unsupported scheme {named}; "
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


# What a URL may hide a secret in, and how it is shown instead.
_HIDDEN = "***"
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*\Z")
_SECRET_KEY = re.compile(r"pass|pwd|secret|token", re.IGNORECASE)  # password=, passwd=, ...
_URL_IN_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://[^\s'\"<>]+")
_SECRET_IN_TEXT = re.compile(  # libpq's key=value conninfo, and a query string outside a URL
    r"(?i)\b([\w-]*(?:pass|pwd|secret|token)[\w-]*\s*=\s*)"
    r"('(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"|[^\s&]+)"
)


@dataclass(frozen=True)
class _Parts:
    """A URL cut where SQLAlchemy's parser cuts it (``scheme://userinfo@host:port/path?query``),
    except that an unencoded ``@`` inside the password belongs to the password: the userinfo
    ends at the *last* ``@`` before the host's ``/`` or ``?``, as Python's ``urllib`` reads
    it. (SQLAlchemy and libpq end it at the first, and then connect to a host named after the
    password's tail, and print it.)"""

    scheme: str
    userinfo: str | None  # raw, without its closing "@"; None when the URL has none
    rest: str  # raw text after the userinfo: host, port, path, query

    @property
    def hostport(self) -> str:
        return re.split(r"[/?]", self.rest, maxsplit=1)[0]

    @property
    def path(self) -> str | None:
        after = self.rest[len(self.hostport) :]
        return after[1:].split("?", 1)[0] if after.startswith("/") else None

    @property
    def query(self) -> str | None:
        after = self.rest[len(self.hostport) :]
        return after.split("?", 1)[1] if "?" in after else None

    def with_userinfo_quoted(self) -> str:
        """The URL with every ``@`` of the userinfo written ``%40``, for SQLAlchemy."""
        if self.userinfo is None:
            return f"{self.scheme}://{self.rest}"
        return f"{self.scheme}://{self.userinfo.replace('@', '%40')}@{self.rest}"


def _split(url: str) -> _Parts | None:
    scheme, sep, rest = url.partition("://")
    if not sep or not _SCHEME.match(scheme):
        return None
    at = rest.find("@")
    # SQLAlchemy's user name stops at ":" and "/", its password runs to the "@".
    if at < 0 or "/" in rest[:at].split(":", 1)[0]:
        return _Parts(scheme, None, rest)
    after = rest[at + 1 :]
    host_end = len(re.split(r"[/?]", after, maxsplit=1)[0])
    at += 1 + after.rfind("@", 0, host_end)  # unchanged when the host has no "@"
    return _Parts(scheme, rest[:at], rest[at + 1 :])


def masked_url(url: str) -> str:
    """The URL with its password (in the userinfo or a query parameter such as ``password=``)
    replaced by ``***``, for messages and logs.

    Never raises, and errs on the side of hiding: text that is not a URL is shown only when it
    cannot hold a password (a bare file name), a port that is not a number is hidden (it may be
    a password whose ``@`` is missing), and an ``@`` after the host of a server URL hides
    everything before it.
    """
    parts = _split(url)
    if parts is None:
        if not re.search(r"[@:]", url) and not _SECRET_KEY.search(url):
            return url  # "results.db", "": nothing to hide
        head = re.match(r"[A-Za-z][A-Za-z0-9+.\-]*(?=:)", url)
        return f"{head.group()}:{_HIDDEN}" if head else _HIDDEN
    query = "" if parts.query is None else "?" + _masked_query(parts.query)
    path = parts.path
    if path is not None and "@" in path and not parts.scheme.lower().startswith("sqlite"):
        # The drivers read this as a database name holding an "@": most likely a password
        # whose "@" was cut at the wrong place. Show only what follows the last "@".
        return f"{parts.scheme}://{_HIDDEN}@{path.rsplit('@', 1)[1]}{query}"
    shown = f"{parts.scheme}://"
    if parts.userinfo is not None:
        user, colon, _ = parts.userinfo.partition(":")
        if "@" in user or "%40" in user.lower():  # the tail of a password, maybe: "u@pw@host"
            user = _HIDDEN
        shown += user + (f":{_HIDDEN}" if colon else "") + "@"
    shown += _masked_hostport(parts.hostport)
    if path is not None:
        shown += f"/{path}"
    return shown + query


def _masked_hostport(hostport: str) -> str:
    if hostport.startswith("["):  # [IPv6]:port
        host, bracket, port = hostport.partition("]")
        host += bracket
    else:
        host, _, port = hostport.partition(":")
        port = ":" + port if ":" in hostport else ""
    if port and not re.fullmatch(r":\d*", port):
        port = f":{_HIDDEN}"
    return host + port


def _masked_query(query: str) -> str:
    out: list[str] = []
    hiding = False  # inside a secret value, which runs on to the next "key=" (an "&" in it)
    for item in query.split("&"):
        key, eq, _ = item.partition("=")
        if eq:
            hiding = bool(_SECRET_KEY.search(unquote_plus(key)))
            out.append(f"{key}={_HIDDEN}" if hiding else item)
        elif not hiding:
            out.append(item)
    return "&".join(out)


def masked_text(text: str) -> str:
    """``text`` (a driver's or library's message) with every URL in it passed through
    :func:`masked_url` and every ``password=...`` value replaced by ``***``."""
    text = _URL_IN_TEXT.sub(lambda m: masked_url(m.group()), text)
    return _SECRET_IN_TEXT.sub(lambda m: m.group(1) + _HIDDEN, text)


def first_line(exc: BaseException | None) -> str:
    """The first line of a driver's or library's error, masked (:func:`masked_text`): what
    dynl2's own messages quote of an error they wrap."""
    text = str(exc).strip() if exc is not None else ""
    return masked_text(text.splitlines()[0]) if text else type(exc).__name__
