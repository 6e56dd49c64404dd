"""``dynl2`` and ``python -m study``: stop signals handled first, then the CLI.

The CLI's imports (torch, Optuna, pandas) take seconds; a Ctrl-C or SIGTERM during them used to
print a KeyboardInterrupt traceback, or was lost. So the entry point installs the handlers of
:mod:`study.signals` before importing anything heavy, and turns a stop at any moment into one
line and exit status 130 (SIGINT) or 143 (SIGTERM). The GPU machine runs the code without
installing it, as ``python -m study``.
"""

from __future__ import annotations

import sys


def main() -> int:
    """The ``dynl2`` console script."""
    from study import env, signals  # the standard library only: quick

    quiet = env.supervised()  # a worker of dynl2 run: the run speaks, and handles Ctrl-C
    signals.install(ignore_sigint=quiet)
    try:
        from study import cli  # seconds: torch, Optuna

        signals.check()  # a stop whose raise an import swallowed
        code = cli.main()
        signals.stopping()  # done: a signal from here on changes nothing
    except KeyboardInterrupt as exc:  # one the CLI did not catch (parsing its arguments)
        signals.stopping()
        if not quiet:
            print(f"dynl2: {signals.describe(exc)}", file=sys.stderr)
        return signals.exit_status(exc)
    return code


if __name__ == "__main__":
    sys.exit(main())
