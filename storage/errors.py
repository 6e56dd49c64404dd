"""Errors raised deliberately by the storage layer.

Every message is one sentence a user can act on: what was given, what is allowed, or where to
look. The CLI prints ``str(error)`` on one line and exits with status 2, so no message may rely
on a traceback to make sense.
"""

from __future__ import annotations

__all__ = [
    "ExperimentConflict",
    "ExperimentNotFound",
    "InvalidRecord",
    "QueryError",
    "QueryTimeout",
    "ReadOnlyViolation",
    "ReaderLoginError",
    "ReportNotFound",
    "StorageError",
    "StorageURLError",
    "StorageUnavailable",
    "SuiteConflict",
    "SuiteNotFound",
    "damaged",
]


class StorageError(Exception):
    """Base class of every error the storage layer raises on purpose."""


class StorageURLError(StorageError, ValueError):
    """The storage URL is malformed or names a database we do not support."""


class StorageUnavailable(StorageError):
    """The database server or file cannot be reached or opened."""


class InvalidRecord(StorageError, ValueError):
    """A caller passed a record (epoch row, evaluation, name) the schema cannot hold."""


class ExperimentNotFound(StorageError, LookupError):
    """No experiment with the given name exists in the store."""


class ExperimentConflict(StorageError):
    """An experiment with the same name but a different config already exists."""


class SuiteNotFound(StorageError, LookupError):
    """No suite with the given name exists in the store."""


class SuiteConflict(StorageError):
    """A suite with the same name but another definition or other experiments exists."""


class ReadOnlyViolation(StorageError):
    """The read-only query door refused a statement that could change or leak data."""


class ReaderLoginError(StorageError):
    """PostgreSQL: no login that can only read is there for ``dynl2 sql``, or none can be made.

    The message says which login was tried, what more it could do, and how to set up the
    dedicated read-only role.
    """


class QueryTimeout(StorageError):
    """A read-only query ran longer than its time limit and was stopped."""


class QueryError(StorageError):
    """A read-only query was accepted but the database rejected it (syntax, unknown table)."""


class ReportNotFound(StorageError, LookupError):
    """No report of the experiment (or suite) is stored yet."""


def damaged(what: str) -> StorageError:
    """The error for a row dynl2 cannot read: not the user's input but the store's state, so
    the CLI says ``failed`` and exits 1."""
    return StorageError(
        f"the store is damaged: {what}; restore the database from a backup, or repair the row "
        "by hand if you know what it held."
    )
