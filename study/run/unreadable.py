"""An experiment the store holds but cannot read: its stored config is damaged, or is one this
dynl2 no longer accepts, or another of its rows is. Readers that go over every experiment
(``dynl2 status``, ``dynl2 serve``'s overview) read each one inside :func:`reading`, list the
unreadable one with its reason, and go on with the others; a failure of the whole store still
ends them.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from storage import (
    ExperimentNotFound,
    ReportNotFound,
    StorageError,
    StorageUnavailable,
    first_line,
)
from storage.store import StoreVanished
from study.config.reader import ExperimentConfigError

__all__ = ["UnreadableExperiment", "about_the_rows", "quoted", "reading"]

_SHOWN = 60  # characters of a value from the user or a request quoted back in a message


class UnreadableExperiment(StorageError):
    """Experiment ``name`` is in the store but cannot be read: its stored config is damaged,
    or is one this dynl2 no longer accepts. ``reason`` is one line."""

    def __init__(self, name: str, reason: str) -> None:
        super().__init__(f"experiment {quoted(name)} cannot be read: {reason}")
        self.name = name
        self.reason = reason


def quoted(value: str) -> str:
    """``value`` quoted for a message, clipped: a request may send thousands of characters,
    and the line that refuses it names the problem without echoing all of them."""
    if len(value) <= _SHOWN:
        return repr(value)
    return f"{value[:_SHOWN]!r}... ({len(value)} characters)"


def about_the_rows(exc: StorageError) -> bool:
    """Whether ``exc`` says a row the store holds cannot be read (``storage.errors.damaged``
    and its like: raised with no driver error behind them), rather than that the store
    failed (cannot be reached, vanished, refused a query: a driver error is the cause)."""
    whole_store = StorageUnavailable | StoreVanished | ExperimentNotFound | ReportNotFound
    return not isinstance(exc, whole_store | UnreadableExperiment) and exc.__cause__ is None


@contextmanager
def reading(name: str) -> Iterator[None]:
    """Reads of experiment ``name``: what its stored rows make unreadable is raised as
    :class:`UnreadableExperiment`; a failure of the whole store goes through as it is. A
    config error here is the stored config's (the request's was checked before), so the
    store's state, never the request's mistake."""
    try:
        yield
    except ExperimentConfigError as exc:
        reason = (
            f"its stored config is not one this dynl2 accepts ({exc}); read it with the dynl2 "
            "that stored it, or repair the row in dynl2_experiments"
        )
        raise UnreadableExperiment(name, reason) from None
    except StorageError as exc:
        if not about_the_rows(exc):
            raise
        raise UnreadableExperiment(name, first_line(exc)) from None
