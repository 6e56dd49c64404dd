"""The ``dynl2`` command line.

Every user mistake ends as one line on stderr naming the problem and what is allowed, and exit
status 2; a run that fails on its own terms (a diverged training run) exits 1. Never a traceback
for bad input. A bad ``DYNL2_*`` environment variable is a user mistake too
(:mod:`study.config.env`). Ctrl-C and SIGTERM stop any verb with one line and exit status 130
or 143 (:mod:`study.search.signals`;
``dynl2`` itself starts in ``study/__main__.py``, which installs the handlers before this
module's imports).

Standard output is the product of most verbs, so output that could not be written (stdout
closed, a full disk) is a failure: one line, exit status 1. A reader that went away
(``dynl2 trials X | head -1``) is not: the verb stops quietly. Every verb's output goes through
:class:`GuardedStdout`, and :func:`main` flushes it before returning, so that no failure is left
for the interpreter's own flush at exit (which would print "Exception ignored" and exit 120).
A deleted current directory, which the default store and report paths are under, is one line
too (:data:`study.run.files.CWD_GONE`).
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import os
import sys
from collections.abc import Callable, Iterable, Sequence
from typing import Any, NoReturn, TextIO, cast

import storage
from study.cli import agent as agent_cmd
from study.cli import demo
from study.cli import experiments as study_cmds
from study.cli import launch as launch_cmd
from study.cli import plan as plan_cmd
from study.cli import reports as report_cmds
from study.cli import serve as serve_cmd
from study.cli import sql_setup as sql_setup_cmd
from study.cli import suites as suite_cmds
from study.cli import train as train_cmd
from study.config import env
from study.config.experiment import ExperimentConfigError
from study.errors import StudyError, UsageError, printable
from study.run.files import CWD_GONE, cwd_gone
from study.search import signals

PROG = "dynl2"


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (no usage dump) and exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


# Storage errors caused by what the user typed: exit status 2. Other storage errors (a server
# that does not answer, a query cut off by its time limit) are failures: exit status 1.
USER_STORAGE_ERRORS = (
    storage.StorageURLError,
    storage.ExperimentNotFound,
    storage.ExperimentConflict,
    storage.ReadOnlyViolation,
    storage.ReaderLoginError,
    storage.QueryError,
    storage.InvalidRecord,
    storage.ReportNotFound,
    storage.SuiteNotFound,
    storage.SuiteConflict,
)


MAX_LINE = 1000  # characters of an error line: it may quote what the user gave, unbounded


def _one_line(exc: BaseException) -> str:
    """The error as one line, with any URL's password masked (the last net under messages
    that quote a driver's text), cut at :data:`MAX_LINE` characters, and with any character
    that is not printable (an escape sequence the user's input carried) written as an escape."""
    line = storage.masked_text(" ".join(str(exc).split()))
    line = printable(line)
    if len(line) > MAX_LINE:
        line = f"{line[: MAX_LINE - 40]}… ({len(line) - MAX_LINE + 40:,} characters cut)"
    return line


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog=PROG,
        description=(
            "dynl2: does dynamic L2 regularization, lambda = clamp(0.5*alpha/L, floor, ceiling), "
            "beat a tuned fixed lambda? Hyperparameter studies that answer with evidence."
        ),
    )
    verbs = parser.add_subparsers(dest="verb", metavar="VERB", parser_class=OneLineParser)
    verbs.required = True
    train_cmd.add_parser(verbs)
    study_cmds.add_parsers(verbs)
    sql_setup_cmd.add_parser(verbs)
    report_cmds.add_parsers(verbs)
    plan_cmd.add_parser(verbs)
    suite_cmds.add_parser(verbs)
    serve_cmd.add_parsers(verbs)
    agent_cmd.add_parser(verbs)
    launch_cmd.add_parser(verbs)
    demo.add_parser(verbs)
    return parser


class OutputError(Exception):
    """Writing to standard output failed. Not an ``OSError``: a verb's own ``except OSError``
    (around a file it reads) must not take it for its own."""

    def __init__(self, cause: OSError | None) -> None:
        self.cause = cause
        super().__init__(self.reason)

    @property
    def quiet(self) -> bool:
        """The reader went away (``| head``): the output was not wanted, nothing failed."""
        return self.cause is not None and self.cause.errno == errno.EPIPE

    @property
    def reason(self) -> str:
        if self.cause is None or self.cause.errno == errno.EBADF:
            return "standard output is closed"
        return (self.cause.strerror or str(self.cause)).rstrip(".")


class GuardedStdout:
    """``sys.stdout`` while a verb runs: writes and flushes pass through, and a failure of
    either becomes an :class:`OutputError` and is remembered (:attr:`failure`), so that a verb
    which swallows the exception still ends as a failure. ``None`` stands for a standard
    output that was closed when the process started (``dynl2 ... >&-``): nothing to write to,
    which is a failure only when there is something to write."""

    def __init__(self, stream: TextIO | None) -> None:
        self.stream = stream
        self.failure: OutputError | None = None

    def write(self, text: str) -> int:
        if self.stream is None:
            self._fail(None)
        try:
            return self.stream.write(text)
        except OSError as exc:
            self._fail(exc)
        except ValueError:  # "I/O operation on closed file"; an encoding error is not ours
            if not self.stream.closed:
                raise
            self._fail(None)

    def writelines(self, lines: Iterable[str]) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        if self.stream is None or self.stream.closed:
            return  # nothing can be pending: every write to it failed
        try:
            self.stream.flush()
        except OSError as exc:
            self._fail(exc)

    def _fail(self, cause: OSError | None) -> NoReturn:
        if self.failure is None:
            self.failure = OutputError(cause)
        raise OutputError(cause) from cause

    def silence(self) -> None:
        """Point the stream's file descriptor at /dev/null and flush into it: what is still
        buffered would otherwise fail again in the interpreter's flush at exit."""
        if self.stream is None or self.stream.closed:
            return
        with contextlib.suppress(OSError, ValueError):
            fd = self.stream.fileno()
            devnull = os.open(os.devnull, os.O_WRONLY)
            try:
                os.dup2(devnull, fd)
            finally:
                os.close(devnull)
            self.stream.flush()

    def isatty(self) -> bool:  # asked by libraries that colour their logs (uvicorn's)
        return self.stream is not None and not self.stream.closed and self.stream.isatty()

    def __getattr__(self, name: str) -> Any:  # encoding, fileno(), ...
        return getattr(self.stream, name)


def main(argv: Sequence[str] | None = None) -> int:
    out = GuardedStdout(sys.stdout)
    sys.stdout = cast(TextIO, out)
    verb: list[str] = []  # the verb, once parsed: for the line that names it
    cut = False  # the verb was stopped by its output's failure
    try:
        code = _main(argv, verb)
        out.flush()  # here, where a failure can still be told, not at the interpreter's exit
    except OutputError:
        cut = True
        code = 1
    finally:
        sys.stdout = cast(TextIO, out.stream)
    if out.failure is None:
        return code
    out.silence()
    if out.failure.quiet:
        return 0 if cut else code
    with contextlib.suppress(OSError, ValueError):  # stderr may be as broken as stdout
        print(f"{' '.join([PROG, *verb])}: failed: could not write the output: "
              f"{out.failure.reason}", file=sys.stderr)  # fmt: skip
    return code or 1


def _main(argv: Sequence[str] | None, verb: list[str]) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, or a usage error already printed as one line
        return exc.code if isinstance(exc.code, int) else 2
    verb.append(args.verb)
    handler: Callable[[argparse.Namespace], int] = args.handler
    try:
        env.check_all()  # every DYNL2_* variable, like a flag: before anything is done
        if args.verb not in _WITHOUT_OPTUNA:
            _quiet_optuna()
        signals.check()  # a stop whose raise was swallowed on the way here
        code = handler(args)
        signals.check()  # one swallowed in the verb (its imports, say: they are the verb's own)
        return code
    except (UsageError, ExperimentConfigError, *USER_STORAGE_ERRORS) as exc:
        print(f"{PROG} {args.verb}: error: {_one_line(exc)}", file=sys.stderr)
        return 2
    except (StudyError, storage.StorageError) as exc:  # the environment, not the input
        print(f"{PROG} {args.verb}: failed: {_one_line(exc)}", file=sys.stderr)
        return 1
    except (
        *_loaded("optuna.exceptions", "StorageInternalError"),
        *_loaded("sqlalchemy.exc", "DBAPIError"),
    ) as exc:
        # The database failed under Optuna's or SQLAlchemy's feet, outside the steps that
        # wait for it (study.search.resilience): still one line, and the environment's fault.
        from study.search.resilience import driver_message

        print(f"{PROG} {args.verb}: failed: the database failed: {driver_message(exc)}",
              file=sys.stderr)  # fmt: skip
        return 1
    except _loaded("sqlalchemy.exc", "SQLAlchemyError") as exc:
        # Not the database's doing (a session used wrongly, say): a fault of dynl2's, named
        # as such, in one line.
        print(f"{PROG} {args.verb}: failed: internal error ({type(exc).__name__}): "
              f"{_one_line(exc)}", file=sys.stderr)  # fmt: skip
        return 1
    except FileNotFoundError as exc:
        # os.getcwd() in a deleted folder, met by whatever resolves a default or relative path
        # (the default store, the default report): as for a missing store, exit status 1.
        if not cwd_gone() or _absolute(exc.filename):
            raise
        print(f"{PROG} {args.verb}: failed: {CWD_GONE}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as exc:  # Ctrl-C or SIGTERM (study.search.signals): kept
        signals.stopping()
        if not env.supervised():  # a worker of dynl2 run leaves the line to the run
            print(f"{PROG} {args.verb}: {signals.describe(exc)}{_RESUME.get(args.verb, '')}",
                  file=sys.stderr)  # fmt: skip
        return signals.exit_status(exc)


# Verbs that never import Optuna, or only to read, where it logs nothing below WARNING (its
# INFO line is for a study created): every other verb gets it quiet (_quiet_optuna) before it
# runs. `dynl2 status NAME` reads a store in the common case without Optuna
# (storage.read_status), and should not wait for its import here.
_WITHOUT_OPTUNA = frozenset({"sql", "sql-setup", "submit", "status"})


def _quiet_optuna() -> None:
    """Optuna logs at WARNING and above only: our own progress lines speak. Imported here, for
    the verbs that use it, not at the top: its import is a fraction of a second that ``dynl2
    sql``, ``--help`` and a usage error need not wait for."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)


def _loaded(module: str, *names: str) -> tuple[type[BaseException], ...]:
    """The exception classes ``names`` of ``module`` if it has been imported, else none: an
    exception of a library never imported cannot have been raised, and importing SQLAlchemy or
    Optuna only to catch their exceptions would slow every verb that uses neither."""
    found = sys.modules.get(module)
    return () if found is None else tuple(getattr(found, name) for name in names)


def _absolute(filename: object) -> bool:
    """Whether an OSError's file name is an absolute path (its lack is not the cwd's doing)."""
    return isinstance(filename, str | bytes) and os.path.isabs(filename)


# What a stopped verb that trains says about picking up where it stopped.
_RESUME = {
    "run": "; run it again to resume",
    "demo": "; run it again to resume",
    "worker": "; its trials in flight are retried by the next worker",
    "evaluate": "; run it again to finish (seeds already evaluated are kept)",
    "suite": "; run the suite again to resume",
}
