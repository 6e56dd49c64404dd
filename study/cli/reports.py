"""``dynl2 report`` and ``dynl2 reports``: flags in, a call of
:mod:`study.api.experiments`, lines out."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import storage
from study.cli.args import storage_flag
from study.errors import UsageError
from study.run.files import check_target, default_report_path, target_path, write_file


def add_parsers(verbs: Any) -> None:
    p = verbs.add_parser(
        "report",
        help="write one self-contained HTML report of an experiment (or compare several)",
        description="Build the HTML report of EXPERIMENT, keep it in the store, write it "
        "(whole or not at all) and print its path. --compare puts several experiments on one "
        "page; --from-store re-exports the newest stored report without recomputing it.",
    )
    p.add_argument("experiments", metavar="EXPERIMENT", nargs="+")
    p.add_argument(
        "-o", "--output", metavar="FILE",
        help="where to write the HTML: a new file or a regular file (not a link, folder, "
        "FIFO or device); missing folders are created",
    )  # fmt: skip
    p.add_argument("--compare", action="store_true", help="one page across the experiments")
    p.add_argument("--from-store", action="store_true", help="re-export the newest stored one")
    p.add_argument(
        "--json",
        action="store_true",
        help="print the verdict's numbers as one JSON object on stdout (the page is still "
        "written and stored; its path goes to stderr)",
    )
    storage_flag(p)
    p.set_defaults(handler=cmd_report)

    p = verbs.add_parser(
        "reports",
        help="list the reports kept in the store",
        description="List stored reports, newest first: id, experiment, created, path, verdict.",
    )
    p.add_argument("experiment", metavar="EXPERIMENT", nargs="?")
    storage_flag(p)
    p.set_defaults(handler=cmd_reports)


def cmd_report(args: argparse.Namespace) -> int:
    if args.compare and args.from_store:
        raise UsageError("--compare and --from-store cannot be combined")
    if args.compare and len(args.experiments) < 2:
        raise UsageError("--compare needs at least two experiments")
    if not args.compare and len(args.experiments) > 1:
        raise UsageError("give one EXPERIMENT, or use --compare for several")
    if args.json and (args.compare or args.from_store):
        raise UsageError(
            "--json prints one experiment's new verdict: not with --compare or --from-store"
        )
    # Where the page goes is checked first: a path that cannot be written costs nothing.
    if args.output is not None:
        path = target_path(args.output)
    elif args.compare:
        path = default_report_path("compare-" + "-".join(args.experiments))
    else:
        path = default_report_path(args.experiments[0])
    check_target(path)
    from study.api import experiments as api  # the reports' SciPy and plotly: not for the parser
    from study.run.reporting import compare_html

    if args.from_store or args.compare:
        with storage.open(storage.resolve_url(args.storage), create=False) as store:
            if args.from_store:
                html, _ = store.latest_report(args.experiments[0])
            else:
                html = compare_html(store, args.experiments)
        print(write_file(path, html))
        return 0
    result = api.make_report(args.experiments[0], storage=args.storage, output=path)
    if args.json:  # stdout is the JSON object alone; where the page went goes to stderr
        # Flushed first: an object that could not be written ends the verb (study.cli.dispatch)
        # before a line on stderr would read as success, buffered or not.
        print(json.dumps(result.summary, allow_nan=False, sort_keys=True), flush=True)
        print(f"report: {result.path}", file=sys.stderr)
    else:
        print(result.path)
    return 0


def cmd_reports(args: argparse.Namespace) -> int:
    with storage.open(storage.resolve_url(args.storage), create=False) as store:
        frame = store.reports(args.experiment)
    if frame.empty:
        print("(no reports)")
        return 0
    for row in frame.itertuples(index=False):
        verdict = row.summary.get("sentence", "") if isinstance(row.summary, dict) else ""
        print(f"{row.id:5d}  {row.experiment}  {row.created:%Y-%m-%d %H:%M:%S}  {row.path}")
        if verdict:
            print(f"       {verdict}")
    return 0
