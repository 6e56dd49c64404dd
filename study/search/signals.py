"""Stopping on SIGINT (Ctrl-C) and SIGTERM: one line, exit status 130 or 143, nothing lost.

:func:`install` runs first thing in ``dynl2`` (see ``study/__main__.py``), before the seconds
of importing torch and Optuna, so a stop during the imports is caught like any other. Each
signal raises :class:`Stopped` (a ``KeyboardInterrupt``) in the main thread, where the code
that has something to clean up catches it: a worker hands its trials in flight back to the
study (:func:`study.search.worker.run_worker`), ``dynl2 run`` stops its worker processes
(:func:`study.run.runs._search_in_processes`), and the CLI prints one line and exits with
128 + the signal's number.

Two things Python's default handler gets wrong are handled here. A ``KeyboardInterrupt`` raised
where Python only reports and drops exceptions (a ``__del__``, a weakref callback: "Exception
ignored in ...") let the run go on as if nothing happened: the request is also recorded, and
:func:`check` raises it again at the next safe point. And a second signal during the cleanup
would cut that cleanup short with a traceback: once the code that caught a stop says it is
stopping (:func:`stopping`), further signals are only recorded.

Only the standard library is imported here: this module is loaded before anything heavy.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import time
from collections.abc import Callable, Sequence
from types import FrameType
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # subprocess costs milliseconds, and this module is imported first thing
    import subprocess

__all__ = [
    "EXIT_STATUS",
    "STOP_GRACE_S",
    "WORDS",
    "Stopped",
    "check",
    "describe",
    "exit_status",
    "install",
    "requested",
    "stop_processes",
    "stopping",
]

# 128 + the signal's number: what a shell reports for a process the signal ended.
EXIT_STATUS = {signal.SIGINT: 130, signal.SIGTERM: 143}
WORDS = {signal.SIGINT: "interrupted (SIGINT)", signal.SIGTERM: "terminated (SIGTERM)"}
# Seconds a stopped worker process gets to hand its trials back and exit before it is killed
# (it needs the claim lock and a few writes; on a busy machine, or a SQLite file another process
# is writing, that can take seconds). A killed worker's trials are retried all the same, once
# their heartbeat lapses.
STOP_GRACE_S = 15.0


class Stopped(KeyboardInterrupt):
    """The process was asked to stop by ``signum`` (SIGINT or SIGTERM)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


_requested: int | None = None  # the first stop signal received, None before any
_stopping = False  # set once the code that caught a stop has begun to clean up


def _handle(signum: int, frame: FrameType | None) -> None:
    global _requested
    if _requested is None:
        _requested = signum
    if not _stopping:
        raise Stopped(_requested)


def install(*, ignore_sigint: bool = False) -> None:
    """Handle SIGINT and SIGTERM with :class:`Stopped`. A signal that was ignored when the
    process started stays ignored (``nohup``, a background job of a non-interactive shell), as
    does SIGINT with ``ignore_sigint`` (the worker processes of ``dynl2 run``: the run, which
    gets a terminal's Ctrl-C as well, stops them itself with SIGTERM)."""
    for signum in EXIT_STATUS:
        if signal.getsignal(signum) is signal.SIG_IGN:
            continue
        if signum == signal.SIGINT and ignore_sigint:
            signal.signal(signum, signal.SIG_IGN)
            continue
        signal.signal(signum, _handle)
    if sys.unraisablehook is not _unraisable:
        _previous_hooks.append(sys.unraisablehook)
        sys.unraisablehook = _unraisable


_previous_hooks: list[Callable[[sys.UnraisableHookArgs], object]] = []


def _unraisable(unraisable: sys.UnraisableHookArgs) -> None:
    """A stop raised where Python cannot raise it (a ``__del__``) is not reported as "Exception
    ignored in ..." with a traceback: it is recorded, and :func:`check` raises it again."""
    if isinstance(unraisable.exc_value, Stopped):
        return
    _previous_hooks[-1](unraisable)


def requested() -> int | None:
    """The stop signal received so far, if any."""
    return _requested


def check() -> None:
    """Raise :class:`Stopped` if a stop was requested and its first raise was lost (Python
    drops exceptions raised inside ``__del__`` methods and some callbacks)."""
    if _requested is not None and not _stopping:
        raise Stopped(_requested)


def stopping() -> None:
    """Say that this process is stopping: from now on a signal is only recorded, so the cleanup
    (handing trials back, stopping workers, printing one line) runs to its end. Every such
    cleanup is bounded in time."""
    global _stopping
    _stopping = True


def exit_status(exc: BaseException) -> int:
    """130 for SIGINT (and a plain ``KeyboardInterrupt``), 143 for SIGTERM."""
    signum = exc.signum if isinstance(exc, Stopped) else signal.SIGINT
    return EXIT_STATUS.get(signal.Signals(signum), 130)


def describe(exc: BaseException) -> str:
    """``interrupted (SIGINT)`` or ``terminated (SIGTERM)``."""
    signum = exc.signum if isinstance(exc, Stopped) else signal.SIGINT
    return WORDS.get(signal.Signals(signum), "interrupted")


def stop_processes(procs: Sequence[subprocess.Popen[bytes]], grace: float = STOP_GRACE_S) -> None:
    """SIGTERM every process of ``procs`` still running, wait up to ``grace`` seconds for all of
    them, then SIGKILL the rest; returns once every one has ended. A second stop signal while
    this waits (it raises unless :func:`stopping` was called) still kills the rest."""
    import subprocess

    try:
        for proc in procs:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.terminate()
        deadline = time.monotonic() + grace
        for proc in procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=max(0.0, deadline - time.monotonic()))
    finally:
        for proc in procs:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                proc.wait()
