"""The study layer's error base and the one-line user error the CLI prints."""

from __future__ import annotations


class StudyError(Exception):
    """Base class of every error the study layer raises on purpose."""


class UsageError(StudyError):
    """A user's mistake on the command line: printed as one line, exit status 2."""
