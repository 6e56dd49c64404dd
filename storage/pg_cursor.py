"""A psycopg cursor that never leaves its connection stuck behind an interrupted query.

A stop signal (:mod:`study.search.signals` raises ``KeyboardInterrupt`` subclasses) can land while
psycopg sends a query or reads its answer. psycopg cancels the query when the signal finds it
waiting on the socket, but a signal that lands in its Python code around that wait can leave
the connection "in transaction status ACTIVE", where nothing recovers it: SQLAlchemy's
pre-ping, cut short that way, then failed in its own cleanup ("can't change 'autocommit'
now") and that error replaced the stop, so a stopped worker ended as a database failure
without handing its trials back. This cursor closes such a connection before the interrupt
goes on: the server rolls back whatever it was doing, and SQLAlchemy, finding the connection
closed, drops it from the pool instead of touching it again.

It travels as ``connect_args={"cursor_factory": ...}`` (:func:`storage.engine.engine_kwargs`),
so Optuna's own engine gets it too. Imported only for PostgreSQL stores: psycopg is optional.
"""

from __future__ import annotations

__all__ = ["InterruptSafeCursor", "close_if_stuck"]

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg.pq import TransactionStatus

# The states a connection can go on from: between transactions, inside one, inside a failed one.
_USABLE = (TransactionStatus.IDLE, TransactionStatus.INTRANS, TransactionStatus.INERROR)


def close_if_stuck(connection: psycopg.Connection[Any]) -> bool:
    """Close ``connection`` if an interrupted call left it mid-query (or in a state psycopg
    cannot tell); returns whether it did."""
    if connection.closed or connection.info.transaction_status in _USABLE:
        return False
    connection.close()
    return True


@contextmanager
def _closed_if_interrupted(connection: psycopg.Connection[Any]) -> Iterator[None]:
    """Run the body; an interrupt (anything but an ``Exception``: ``KeyboardInterrupt``,
    ``SystemExit``) that leaves ``connection`` mid-query closes it on its way out."""
    try:
        yield
    except BaseException as exc:
        if not isinstance(exc, Exception):
            close_if_stuck(connection)
        raise


class InterruptSafeCursor(psycopg.Cursor[Any]):
    """psycopg's client-side cursor, closing its connection when an interrupt leaves it
    mid-query."""

    def execute(self, query: Any, params: Any = None, **kwargs: Any) -> InterruptSafeCursor:
        with _closed_if_interrupted(self.connection):
            return super().execute(query, params, **kwargs)

    def executemany(self, query: Any, params_seq: Iterable[Any], **kwargs: Any) -> None:
        with _closed_if_interrupted(self.connection):
            super().executemany(query, params_seq, **kwargs)
