"""``dynl2`` and ``python -m study``: stop signals handled first, then the CLI.

A verb's imports (torch, Optuna, pandas, SciPy) take seconds; a Ctrl-C or SIGTERM during them
used to print a KeyboardInterrupt traceback, or was lost. So the entry point installs the
handlers of :mod:`study.search.signals` before importing anything heavy, and turns a stop at any
moment into one line and exit status 130 (SIGINT) or 143 (SIGTERM). The parser imports none of
them: each verb imports what it needs when it runs, where the CLI handles a stop. The GPU machine
runs the code without installing it, as ``python -m study``.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

# dynl2's import names: four generic top-level packages (docs/development.md, "Import names").
LAYERS = ("trainers", "storage", "reports")


def shadowed() -> tuple[str, str] | None:
    """``(name, where)`` of the first of dynl2's layers that resolves to another package than
    the one beside this ``study`` (another distribution's ``storage``, or a ``reports/`` package
    in the folder ``python -m study`` runs from), else None. Looked up, not imported: cheap."""
    home = Path(__file__).resolve().parents[1]
    for name in LAYERS:
        spec = importlib.util.find_spec(name)
        origin = spec.origin if spec is not None else None
        if origin is None or Path(origin).resolve().parents[1] != home:
            return name, str(origin or "nowhere (a namespace folder)")
    return None


def main() -> int:
    """The ``dynl2`` console script."""
    clash = shadowed()
    if clash is not None:
        name, where = clash
        print(
            f"dynl2: failed: the import name {name!r} is {where}, not dynl2's own; run dynl2 "
            "from another folder, or install it in a virtual environment of its own",
            file=sys.stderr,
        )
        return 1
    from study.config import env
    from study.search import signals  # the standard library only: quick

    quiet = env.supervised()  # a worker of dynl2 run: the run speaks, and handles Ctrl-C
    signals.install(ignore_sigint=quiet)
    try:
        from study.cli import dispatch as cli  # the parser; each verb imports its own needs

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
