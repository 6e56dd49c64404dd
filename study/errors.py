"""The study layer's error base and the one-line user error the CLI prints."""

from __future__ import annotations


class StudyError(Exception):
    """Base class of every error the study layer raises on purpose."""


class UsageError(StudyError):
    """A user's mistake on the command line: printed as one line, exit status 2."""


def printable(text: str, limit: int | None = None) -> str:
    """``text`` safe to print in one line: every character that is not printable (ESC, CR,
    newlines, bidi overrides) written as its escape, and, with ``limit``, at most that many
    characters, cut with an ellipsis. For what a user, a server or a request wrote, echoed
    back: it cannot move the cursor or retitle the terminal."""
    shown = "".join(c if c.isprintable() else ascii(c)[1:-1] for c in text)
    if limit is None or len(shown) <= limit:
        return shown
    return shown[: limit - 1] + "…"
