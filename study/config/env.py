"""dynl2's environment variables, each read and checked here and nowhere else.

A bad value is refused like a bad flag: a :class:`~study.errors.UsageError` naming the variable,
what it accepts and what it got (the CLI prints it as one line, exit status 2). ``dynl2`` checks
every variable with :func:`check_all` before doing any work, so a typo never surfaces hours into
a run; the readers below are what the code calls where it uses a value. A variable set to the
empty string (or spaces) counts as unset. The table of docs/limits.md lists them.

Only the standard library is imported at module level: ``dynl2``'s entry point reads
:func:`supervised` before the heavy imports.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from pathlib import Path

from study.errors import UsageError

__all__ = [
    "CACHE",
    "DB_PATIENCE",
    "HEARTBEAT",
    "KNOBS",
    "LOADER_SECONDS",
    "MAX_SECONDS",
    "PGBOUNCER",
    "RUN_PID",
    "SERVE_TOKEN",
    "SQL_URL",
    "STORAGE",
    "THREADS",
    "TOKEN_CHARACTERS",
    "cache",
    "check_all",
    "db_patience",
    "heartbeat",
    "is_token",
    "loader_seconds",
    "pgbouncer",
    "run_pid",
    "serve_token",
    "sql_url",
    "storage_url",
    "supervised",
    "threads",
]

THREADS = "DYNL2_THREADS"
HEARTBEAT = "DYNL2_HEARTBEAT"
DB_PATIENCE = "DYNL2_DB_PATIENCE"
CACHE = "DYNL2_CACHE"
LOADER_SECONDS = "DYNL2_LOADER_SECONDS"  # the same name as trainers.own.LOADER_SECONDS_ENV
STORAGE = "DYNL2_STORAGE"  # the same name as storage.ENV_VAR
SQL_URL = "DYNL2_SQL_URL"  # the same name as storage.READER_URL_ENV
RUN_PID = "DYNL2_RUN_PID"
SERVE_TOKEN = "DYNL2_SERVE_TOKEN"
PGBOUNCER = "DYNL2_PGBOUNCER"  # the same name as storage.PGBOUNCER_ENV

MAX_SECONDS = 86_400  # a day: the longest heartbeat grace or database patience accepted


def _raw(name: str) -> str | None:
    text = os.environ.get(name, "").strip()
    return text or None


def _refuse(name: str, expected: str, text: str) -> UsageError:
    return UsageError(f"{name}: expected {expected}, got {text!r}")


def _whole(text: str) -> int | None:
    """``text`` as a whole number written with ASCII digits, else None (no signs, no ``_``)."""
    return int(text) if text.isascii() and text.isdigit() else None


def threads() -> int | None:
    """``$DYNL2_THREADS``: torch's threads in a worker or evaluation process, 1 to the CPUs."""
    text = _raw(THREADS)
    if text is None:
        return None
    most = os.cpu_count() or 1
    value = _whole(text)
    if value is None or not 1 <= value <= most:
        raise _refuse(THREADS, f"a whole number from 1 to {most} (this machine's CPUs)", text)
    return value


def heartbeat() -> tuple[int, int] | None:
    """``$DYNL2_HEARTBEAT=INTERVAL,GRACE``: seconds between a running trial's heartbeats, and
    without one before it is failed and retried."""
    text = _raw(HEARTBEAT)
    if text is None:
        return None
    parts = [_whole(part.strip()) for part in text.split(",")]
    if len(parts) == 2:
        interval, grace = parts
        if interval is not None and grace is not None and 1 <= interval < grace <= MAX_SECONDS:
            return interval, grace
    raise _refuse(
        HEARTBEAT,
        f"INTERVAL,GRACE in whole seconds with 1 <= INTERVAL < GRACE <= {MAX_SECONDS}",
        text,
    )


def db_patience() -> float | None:
    """``$DYNL2_DB_PATIENCE``: seconds a worker waits for a database that stopped answering."""
    return _seconds(DB_PATIENCE, zero=True)


def loader_seconds() -> float | None:
    """``$DYNL2_LOADER_SECONDS``: how long a ``[data] loader`` may run before the experiment is
    refused. (``trainers.own.loader_seconds`` reads it: the trainer layer does not import this
    one.)"""
    return _seconds(LOADER_SECONDS, zero=False)


def _seconds(name: str, zero: bool) -> float | None:
    """A number of seconds up to :data:`MAX_SECONDS` (from 0 when ``zero``, else above 0)."""
    text = _raw(name)
    if text is None:
        return None
    try:
        seconds = float(text)
    except ValueError:
        seconds = math.nan
    low_ok = seconds >= 0 if zero else seconds > 0
    if not (low_ok and seconds <= MAX_SECONDS):  # also refuses NaN
        expected = "between 0 and" if zero else "above 0, at most"
        raise _refuse(name, f"seconds {expected} {MAX_SECONDS}", text)
    return seconds


def cache() -> Path | None:
    """``$DYNL2_CACHE``: the folder of generated datasets (MNIST-1D). It may not exist yet, but
    the nearest part of it that exists must be a folder. (``trainers.datasets.cache_dir`` reads it:
    the trainer layer does not import this one.)"""
    text = _raw(CACHE)
    if text is None:
        return None
    path = Path(text)
    existing = next((p for p in (path, *path.parents) if p.exists()), None)
    if existing is not None and not existing.is_dir():
        shown = "it" if existing == path else str(existing)
        raise _refuse(CACHE, f"a folder (or a path to create one), but {shown} is a file", text)
    return path


def storage_url() -> str | None:
    """``$DYNL2_STORAGE``: the default store URL, canonical (checked by ``storage``)."""
    if _raw(STORAGE) is None:
        return None
    import storage  # deferred: SQLAlchemy and Optuna, which the entry point must not wait for

    return storage.resolve_url()


def sql_url() -> str | None:
    """``$DYNL2_SQL_URL``: the PostgreSQL login ``dynl2 sql`` reads as (checked by ``storage``)."""
    if _raw(SQL_URL) is None:
        return None
    from storage.pg_reader import resolve_reader_url  # deferred, as above

    found = resolve_reader_url()
    return None if found is None else found[0]


TOKEN_CHARACTERS = "one word of visible ASCII characters (! to ~), at most 4096"


def is_token(text: str) -> bool:
    """Whether ``text`` can be a bearer token: what an HTTP header carries as it is, visible
    ASCII without spaces (a client could not send a token of other characters, so a server
    must not accept one), 1 to 4096 characters."""
    return 0 < len(text) <= 4096 and all("!" <= c <= "~" for c in text)


def serve_token() -> str | None:
    """``$DYNL2_SERVE_TOKEN``: the bearer token ``dynl2 serve`` accepts submissions with, and
    ``dynl2 submit`` sends (``--token-file`` wins over it). Spaces around it are dropped; any
    other character outside visible ASCII is refused (it could not travel in a header)."""
    text = _raw(SERVE_TOKEN)
    if text is None:
        return None
    if not is_token(text):
        raise _refuse(SERVE_TOKEN, TOKEN_CHARACTERS, "<hidden>")
    return text


def run_pid() -> int | None:
    """``$DYNL2_RUN_PID``: set by ``dynl2 run`` for the worker processes it starts (its own
    process id); not for users."""
    text = _raw(RUN_PID)
    if text is None:
        return None
    value = _whole(text)
    if value is None or value < 1:
        raise _refuse(RUN_PID, "a process id (set by dynl2 run for its workers)", text)
    return value


def pgbouncer() -> bool:
    """``$DYNL2_PGBOUNCER``: ``1`` when the storage URL names PgBouncer (or another pooler) in
    transaction pooling mode; ``storage`` reads it where it opens connections."""
    text = _raw(PGBOUNCER)
    if text is not None and text not in ("0", "1"):
        raise _refuse(
            PGBOUNCER, "1 (the storage URL names a pooler in transaction mode) or 0", text
        )
    return text == "1"


def supervised() -> bool:
    """Whether this process is a worker that ``dynl2 run`` started and still watches: it leaves
    Ctrl-C and the line about a stop to the run. A worker whose run died speaks for itself. Never
    raises (the entry point asks before anything is checked): a bad value means no."""
    try:
        return run_pid() == os.getppid()
    except UsageError:
        return False


# Every variable dynl2 reads, with its reader; check_all() runs them all.
KNOBS: dict[str, Callable[[], object]] = {
    THREADS: threads,
    HEARTBEAT: heartbeat,
    DB_PATIENCE: db_patience,
    CACHE: cache,
    LOADER_SECONDS: loader_seconds,
    STORAGE: storage_url,
    SQL_URL: sql_url,
    RUN_PID: run_pid,
    SERVE_TOKEN: serve_token,
    PGBOUNCER: pgbouncer,
}


def check_all() -> None:
    """Read every variable of :data:`KNOBS`: the first bad one raises (a
    :class:`~study.errors.UsageError`, or ``storage.StorageURLError`` for the two URLs)."""
    for read in KNOBS.values():
        read()
