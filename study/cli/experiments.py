"""``dynl2 run``, ``worker``, ``evaluate``, ``status``, ``trials`` and ``sql``: flags in,
a call of :mod:`study.api.experiments` (or :func:`storage.run_readonly`), lines out."""

from __future__ import annotations

import argparse
import datetime
import decimal
import json
import math
import sys
from typing import TYPE_CHECKING, Any

import storage
from storage.readonly_limits import MAX_ROWS, MAX_TIMEOUT_S, RESULT_BYTES
from study.cli.args import batch_flag, storage_flag, up_to, workers_flag
from study.config import env
from study.config.experiment import MAX_SEEDS

# The handlers import what they call (study.api, study.run: SQLAlchemy, Optuna, pandas, and
# SciPy for a verdict): every verb, and `dynl2 --help`, builds this module's parsers.
if TYPE_CHECKING:
    import pandas as pd

    from study.api import experiments as api

FORMATS = ("table", "csv", "json")


def add_parsers(verbs: Any) -> None:
    p = verbs.add_parser(
        "run",
        help="create or resume an experiment, search every arm, evaluate the winners",
        description=(
            "Create the experiment in CONFIG.toml (or resume it if it exists with the same "
            "config), search every arm with N worker processes, then retrain each arm's best "
            "configuration on the evaluation seeds."
        ),
    )
    p.add_argument("config", metavar="CONFIG.toml", help="the experiment config")
    workers_flag(p)
    batch_flag(p)
    storage_flag(p)
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    p.set_defaults(handler=cmd_run)

    p = verbs.add_parser(
        "worker",
        help="join an existing experiment from another process or machine",
        description="Train trials of EXPERIMENT until every arm has its budget, then exit.",
    )
    p.add_argument("experiment", metavar="EXPERIMENT")
    batch_flag(p)
    storage_flag(p)
    p.add_argument("--quiet", action="store_true", help="no line per trial")
    p.add_argument(
        "--index",
        type=int,
        help="this worker's number; changes nothing (trial k of a search draws the same "
        "parameters whichever worker asks for it), kept for scripts that pass it",
    )
    p.set_defaults(handler=cmd_worker)

    p = verbs.add_parser(
        "evaluate",
        help="retrain each arm's best configuration on S shared seeds and test it",
        description="Evaluate every arm's best configuration; seeds already evaluated are kept.",
    )
    p.add_argument("experiment", metavar="EXPERIMENT")
    p.add_argument(
        "--seeds",
        type=up_to(MAX_SEEDS),
        help=f"evaluation seeds (default: the config's; at most {MAX_SEEDS})",
    )
    workers_flag(p, "processes")
    p.add_argument(
        "--provisional",
        action="store_true",
        help="evaluate although the search is unfinished (its best may still change; "
        "reports call such a verdict provisional)",
    )
    storage_flag(p)
    p.set_defaults(handler=cmd_evaluate)

    p = verbs.add_parser(
        "status",
        help="every experiment, or one experiment's per-arm progress",
        description="Without a name: every experiment. With one: counts per arm and state, "
        "the best value and parameters, and evaluation progress.",
    )
    p.add_argument("experiment", metavar="EXPERIMENT", nargs="?")
    storage_flag(p)
    p.set_defaults(handler=cmd_status)

    p = verbs.add_parser(
        "trials",
        help="one row per trial (table, csv or json)",
        description="One row per trial: arm, number, state, params, objective, best epoch, "
        "duration, and the test metrics where the trial's configuration was evaluated.",
    )
    p.add_argument("experiment", metavar="EXPERIMENT")
    p.add_argument("--arm", help="only this arm")
    p.add_argument("--format", choices=FORMATS, default="table")
    storage_flag(p)
    p.set_defaults(handler=cmd_trials)

    p = verbs.add_parser(
        "sql",
        help="a read-only SQL query over the store",
        description="Run one read-only query (SELECT, WITH, EXPLAIN). Writes, DDL, ATTACH and "
        "state-changing PRAGMAs are refused; each query has a time limit and a row cap.",
    )
    p.add_argument("query", metavar="SQL")
    p.add_argument("--format", choices=FORMATS, default="table")
    p.add_argument(
        "--max-rows",
        type=_max_rows,
        default=1000,
        help=f"row cap (default 1000, at most {MAX_ROWS})",
    )
    p.add_argument(
        "--timeout",
        type=_timeout,
        default=10.0,
        help=f"seconds (default 10, at most {MAX_TIMEOUT_S:g})",
    )
    p.add_argument(
        "--reader-url",
        metavar="URL",
        help="PostgreSQL: the read-only login to query as (default: $DYNL2_SQL_URL, else the "
        "store's login if it can only read, else the role dynl2 sql-setup creates)",
    )
    storage_flag(p)
    p.set_defaults(handler=cmd_sql)


def say_line(quiet: bool) -> api.Say:
    """Progress lines on stdout, or nowhere with ``--quiet``. Each line goes out whole in one
    write: worker processes share the stdout of ``dynl2 agent --workers N``, and ``print``
    writes a line and its newline apart, which an unbuffered stdout (``PYTHONUNBUFFERED``)
    passes on as two writes that another process's line can come between."""

    def say(line: str) -> None:
        if not quiet:
            sys.stdout.write(line + "\n")
            sys.stdout.flush()

    return say


def note_line(line: str) -> None:
    print(f"dynl2 run: note: {line}", file=sys.stderr)


def cmd_run(args: argparse.Namespace) -> int:
    from study.api import experiments as api

    result = api.run_experiment(
        args.config,
        storage=args.storage,
        workers=args.workers,
        batch=args.batch,
        say=say_line(args.quiet),
        note=note_line,
    )
    return print_run(result)


def print_run(result: api.RunResult) -> int:
    """What ``dynl2 run`` and ``demo`` print at the end; their exit status."""
    from study.run.progress import format_verdict

    if result.report is None:
        search = result.search
        print(
            f"dynl2 run: {search.failed_workers} worker(s) failed and arms "
            f"{', '.join(search.short)} are short of their {search.budget} trials; fix the cause "
            "and run again to resume",
            file=sys.stderr,
        )
        return 1
    print(format_verdict(result.report.summary))
    print(f"report: {result.report.path}  ({result.report.seconds:.1f} s)")
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    from storage.store import StoreVanished
    from study.api import experiments as api

    def on_trial(arm: str, number: int, outcome: str) -> None:
        if not args.quiet:
            print(f"dynl2 worker: {arm} trial {number}: {outcome}", flush=True)

    def note(line: str) -> None:
        if not args.quiet:
            print(f"dynl2 worker: {line}", file=sys.stderr, flush=True)

    try:
        summary = api.join_experiment(
            args.experiment,
            storage=args.storage,
            batch=args.batch,
            index=args.index,
            on_trial=on_trial,
            note=note,
        )
    except StoreVanished:
        if env.supervised():
            return 1  # the run checks the file too, and says it once for all its workers
        raise
    if summary.out_of_time:  # not quiet: the reason this worker left work undone
        print(
            f"dynl2 worker: stopping before the job's time limit: the next group "
            f"(~{summary.longest or 0:.0f} s) would not end by the deadline; "
            f"{summary.total} trial(s) trained here, the rest are left to other workers"
        )
    elif not args.quiet:
        print(f"dynl2 worker: done, {summary.total} trial(s) trained here")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from study.api import experiments as api
    from study.run.progress import format_verdict

    summary = api.evaluate_experiment(
        args.experiment,
        storage=args.storage,
        seeds=args.seeds,
        workers=args.workers,
        provisional=args.provisional,
        say=say_line(False),
    )
    del summary  # each arm's runs; the verdict below is what the report will say of them
    print(format_verdict(api.experiment_verdict(args.experiment, storage=args.storage)))
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from study.api import experiments as api

    if args.experiment is None:
        where, overviews = api.list_experiments(storage=args.storage)
        if not overviews:
            print(f"no experiments in {where}")
        for o in overviews:
            if o.unreadable is not None:
                print(f"{o.name}: unreadable: {o.unreadable}")
            else:
                print(
                    f"{o.name}: {o.results}/{o.budget} trials, {o.evaluations} evaluation run(s)"
                )
        unreadable = [o.name for o in overviews if o.unreadable is not None]
        if unreadable:  # the others are listed; the store is not as it should be
            print(
                f"dynl2 status: failed: {len(unreadable)} of {len(overviews)} experiments "
                f"cannot be read: {', '.join(unreadable)}",
                file=sys.stderr,
            )
            return 1
        return 0
    from study.run.progress import ProgressPrinter, format_summary
    from study.search.keys import label

    status = api.experiment_status(args.experiment, storage=args.storage)
    ProgressPrinter(print).update(status.counts, None, force=True)
    for key, params in status.best.items():
        print(f"  {label(status.config, key)} best params: {json.dumps(params)}")
    if status.holders:
        print("  held by:")
        for held in status.holders:
            job = f"  slurm job {held.job}" if held.job is not None else ""
            print(f"    {held.search} trial {held.number}: {held.worker}{job}")
    print(format_summary(list(status.summary)))
    return 0


def cmd_trials(args: argparse.Namespace) -> int:
    from study.api import experiments as api

    frame = api.experiment_trials(args.experiment, storage=args.storage, arm=args.arm)
    _print_frame(frame, args.format)
    return 0


def _max_rows(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 1 <= value <= MAX_ROWS:
        raise argparse.ArgumentTypeError(
            f"expected a whole number from 1 to {MAX_ROWS}, got {text!r}"
        )
    return value


def _timeout(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 < value <= MAX_TIMEOUT_S:  # also refuses nan
        raise argparse.ArgumentTypeError(
            f"expected a number of seconds above 0 and at most {MAX_TIMEOUT_S:g}, got {text!r}"
        )
    return value


def cmd_sql(args: argparse.Namespace) -> int:
    """The result as the database gave it, but for two things every format needs: a column
    whose name came before gets the first free name of ``NAME_2``, ``NAME_3``, ... (``SELECT
    1 AS a, 2 AS a`` prints ``a`` and ``a_2``), and a blob prints as ``\\x`` and its bytes in
    hex, as psql prints bytea. Printed without pandas where :func:`study.run.queries.plain_text`
    knows pandas' text for the rows (its import would be most of the verb's time), through a
    DataFrame otherwise."""
    from study.run.queries import plain_text

    url = storage.resolve_url(args.storage)
    result = storage.run_readonly(
        url,
        args.query,
        max_rows=args.max_rows,
        timeout_s=args.timeout,
        reader_url=args.reader_url,
    )
    rows = [[_cell(value) for value in row] for row in result.rows]
    names = _unique_names(result.columns)
    text = plain_text(names, rows, args.format, _SQL_TABLE_WIDTH)
    if text is not None:
        sys.stdout.write(text)
    else:
        import pandas as pd

        _print_frame(pd.DataFrame(rows, columns=names), args.format, _SQL_TABLE_WIDTH)
    if result.truncated:
        n = len(result.rows)
        if n < args.max_rows:
            why = f"the next row would pass the {RESULT_BYTES // 2**20} MiB a result may hold"
        else:
            why = "use --max-rows"
        print(f"(truncated at {n} rows; {why})", file=sys.stderr)
    return 0


def _unique_names(names: tuple[str, ...]) -> list[str]:
    """``names`` with each repeat renamed to the first of ``NAME_2``, ``NAME_3``, ... that
    no other column has."""
    taken = set(names)
    out: list[str] = []
    seen: set[str] = set()
    for name in names:
        if name in seen:
            k = 2
            while f"{name}_{k}" in taken:
                k += 1
            name = f"{name}_{k}"
            taken.add(name)
        seen.add(name)
        out.append(name)
    return out


def _cell(value: Any) -> Any:
    """One value of a query's result as JSON can hold it: numbers, text, None, lists and
    dicts stay (PostgreSQL arrays and JSON); blobs become ``\\x`` + hex; dates and times
    their ISO text; a numeric a float (its text when no float holds it); anything else its
    text (intervals, UUIDs, network addresses). Iterative: a JSON value may nest deep."""
    if isinstance(value, bool | int | float | str) or value is None:
        return value
    if isinstance(value, list | dict):
        out: Any = [] if isinstance(value, list) else {}
        pending: list[tuple[Any, Any]] = [(value, out)]
        while pending:
            source, target = pending.pop()
            items = source.items() if isinstance(source, dict) else enumerate(source)
            for key, item in items:
                if isinstance(item, list | dict):
                    child: Any = [] if isinstance(item, list) else {}
                    pending.append((item, child))
                    converted = child
                else:
                    converted = _cell(item)
                if isinstance(target, dict):
                    target[str(key)] = converted
                else:
                    target.append(converted)
        return out
    if isinstance(value, bytes | bytearray | memoryview):
        return "\\x" + bytes(value).hex()
    if isinstance(value, datetime.date | datetime.time):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        number = float(value)
        return number if math.isfinite(number) or not value.is_finite() else str(value)
    return str(value)


_SQL_TABLE_WIDTH = 60  # characters of a cell `dynl2 sql --format table` shows (csv, json: all)


def _print_frame(frame: pd.DataFrame, fmt: str, max_colwidth: int | None = None) -> None:
    """``frame`` on stdout as a table, csv or json; a table cuts cells at ``max_colwidth``
    characters (every row is padded to its column's widest cell, so one long value would
    otherwise cost its length on every row)."""
    from study.run.queries import frame_csv, frame_json, json_cells

    if fmt == "csv":
        sys.stdout.write(frame_csv(frame))
    elif fmt == "json":
        sys.stdout.write(frame_json(frame) + "\n")
    elif len(frame) == 0:
        print("(no rows)")
    elif len(frame.columns) == 0:  # SELECT with no columns: rows all the same
        print(f"({len(frame)} row{'s' if len(frame) != 1 else ''}, no columns)")
    else:
        print(json_cells(frame).to_string(index=False, max_colwidth=max_colwidth))
