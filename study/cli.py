"""The ``dynl2`` command line.

Every user mistake ends as one line on stderr naming the problem and what is allowed, and exit
status 2; a run that fails on its own terms (a diverged training run) exits 1. Never a traceback
for bad input. A bad ``DYNL2_*`` environment variable is a user mistake too (:mod:`study.env`).
Ctrl-C and SIGTERM stop any verb with one line and exit status 130 or 143 (:mod:`study.signals`;
``dynl2`` itself starts in ``study/__main__.py``, which installs the handlers before this
module's imports).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from typing import NoReturn

import optuna
import sqlalchemy.exc

import storage

from . import (
    agent_cmd,
    demo,
    env,
    report_cmds,
    serve_cmd,
    signals,
    sql_setup_cmd,
    study_cmds,
    suite_cmds,
    train_cmd,
)
from .errors import StudyError, UsageError
from .experiment import ExperimentConfigError
from .resilience import driver_message

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


def _one_line(exc: BaseException) -> str:
    """The error as one line, with any URL's password masked (the last net under messages
    that quote a driver's text)."""
    return storage.masked_text(" ".join(str(exc).split()))


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
    suite_cmds.add_parser(verbs)
    serve_cmd.add_parsers(verbs)
    agent_cmd.add_parser(verbs)
    demo.add_parser(verbs)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # our own progress lines speak
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, or a usage error already printed as one line
        return exc.code if isinstance(exc.code, int) else 2
    handler: Callable[[argparse.Namespace], int] = args.handler
    try:
        env.check_all()  # every DYNL2_* variable, like a flag: before anything is done
        signals.check()  # a stop whose raise was swallowed on the way here
        return handler(args)
    except (UsageError, ExperimentConfigError, *USER_STORAGE_ERRORS) as exc:
        print(f"{PROG} {args.verb}: error: {_one_line(exc)}", file=sys.stderr)
        return 2
    except (StudyError, storage.StorageError) as exc:  # the environment, not the input
        print(f"{PROG} {args.verb}: failed: {_one_line(exc)}", file=sys.stderr)
        return 1
    except (optuna.exceptions.StorageInternalError, sqlalchemy.exc.DBAPIError) as exc:
        # The database failed under Optuna's or SQLAlchemy's feet, outside the steps that
        # wait for it (study.resilience): still one line, and the environment's fault.
        print(f"{PROG} {args.verb}: failed: the database failed: {driver_message(exc)}",
              file=sys.stderr)  # fmt: skip
        return 1
    except sqlalchemy.exc.SQLAlchemyError as exc:
        # Not the database's doing (a session used wrongly, say): a fault of dynl2's, named
        # as such, in one line.
        print(f"{PROG} {args.verb}: failed: internal error ({type(exc).__name__}): "
              f"{_one_line(exc)}", file=sys.stderr)  # fmt: skip
        return 1
    except BrokenPipeError:  # the reader went away (dynl2 ... | head): not an error of ours
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - keeps interpreter shutdown quiet
        return 0
    except KeyboardInterrupt as exc:  # Ctrl-C or SIGTERM (study.signals): what was done is kept
        signals.stopping()
        if not env.supervised():  # a worker of dynl2 run leaves the line to the run
            print(f"{PROG} {args.verb}: {signals.describe(exc)}{_RESUME.get(args.verb, '')}",
                  file=sys.stderr)  # fmt: skip
        return signals.exit_status(exc)


# What a stopped verb that trains says about picking up where it stopped.
_RESUME = {
    "run": "; run it again to resume",
    "demo": "; run it again to resume",
    "worker": "; its trials in flight are retried by the next worker",
    "evaluate": "; run it again to finish (seeds already evaluated are kept)",
    "suite": "; run the suite again to resume",
}
