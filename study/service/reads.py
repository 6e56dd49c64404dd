"""What ``dynl2 serve`` reads, kept for a moment: :class:`Reads` answers the handlers from the
read-only store and serves each answer again for ``ttl`` seconds, so that clients polling one
experiment cost the store one read a second however many they are."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from storage import Store
from study.service.data import (
    ExperimentTrials,
    TrialsPage,
    experiment_detail,
    experiment_trials,
    experiments_overview,
    trials_page_of,
)

__all__ = ["CACHE_SECONDS", "MAX_CACHED", "Reads"]

CACHE_SECONDS = 1.0  # how long a read's answer is served again (the live page polls every 3 s)
MAX_CACHED = 256  # keys kept at most, each with its answer and its lock


class _Entry:
    """One key of :class:`Reads`: the lock its computation holds, and its answer with the
    time it expires (one tuple, so that a reader never sees the one without the other)."""

    __slots__ = ("answer", "lock")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.answer: tuple[float, Any] | None = None

    def fresh(self) -> tuple[bool, Any]:
        answer = self.answer
        if answer is not None and answer[0] > time.monotonic():
            return True, answer[1]
        return False, None


class Reads:
    """What the handlers read, from the read-only store, each answer kept for ``ttl`` seconds:
    twenty clients polling one experiment cost the store one read a second, not twenty. A key
    being computed makes the others asking for it wait for that answer, not compute their own.

    At most ``max_keys`` keys are kept, each with its lock; a new one evicts the least
    recently used (one still being computed included: who waits on it still gets its answer,
    and one more asker computes it again). An experiment's trials are one key, read once a
    freshness window and cut into every page, sort and arm asked of it: requests that differ
    in ``offset`` alone add no key."""

    def __init__(
        self, store: Store, ttl: float = CACHE_SECONDS, max_keys: int = MAX_CACHED
    ) -> None:
        self.store = store
        self._ttl = ttl
        self._max_keys = max_keys
        self._lock = threading.Lock()
        self._entries: OrderedDict[tuple[Any, ...], _Entry] = OrderedDict()

    def _cached(self, key: tuple[Any, ...], compute: Callable[[], Any]) -> Any:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                entry = self._entries[key] = _Entry()
                while len(self._entries) > self._max_keys:
                    self._entries.popitem(last=False)
            else:
                self._entries.move_to_end(key)
        hit, value = entry.fresh()
        if hit:
            return value
        with entry.lock:
            hit, value = entry.fresh()  # computed by the one this waited for
            if hit:
                return value
            value = compute()
            entry.answer = (time.monotonic() + self._ttl, value)
            return value

    def forget(self) -> None:
        """Drop every kept answer (after this server wrote to the store)."""
        with self._lock:
            for entry in self._entries.values():
                entry.answer = None  # a computation still running keeps it for its waiters
            self._entries.clear()

    def overview(self) -> list[dict[str, Any]]:
        return self._cached(("overview",), lambda: experiments_overview(self.store))  # type: ignore[no-any-return]

    def detail(self, name: str) -> dict[str, Any]:
        return self._cached(("detail", name), lambda: experiment_detail(self.store, name))  # type: ignore[no-any-return]

    def trials(
        self,
        name: str,
        *,
        arm: str | None,
        offset: int,
        limit: int | None,
        sort: str | None,
        order: str,
    ) -> TrialsPage:
        shared: ExperimentTrials = self._cached(
            ("trials", name), lambda: experiment_trials(self.store, name)
        )
        return trials_page_of(shared, arm=arm, offset=offset, limit=limit, sort=sort, order=order)
