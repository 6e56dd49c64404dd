"""``dynl2 report``, ``dynl2 reports`` and ``dynl2 demo``."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import storage
from storage import Store

from .errors import StudyError, UsageError
from .files import StagedFile, check_target, default_report_path, target_path, write_file
from .study_cmds import _storage_flag


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
    _storage_flag(p)
    p.set_defaults(handler=cmd_report)

    p = verbs.add_parser(
        "reports",
        help="list the reports kept in the store",
        description="List stored reports, newest first: id, experiment, created, path, verdict.",
    )
    p.add_argument("experiment", metavar="EXPERIMENT", nargs="?")
    _storage_flag(p)
    p.set_defaults(handler=cmd_reports)


def make_report(
    store: Store,
    experiment: str,
    output: Path | None = None,
    summary: dict[str, Any] | None = None,
) -> tuple[Path, float]:
    """Build, record and write the report of ``experiment``; returns (path, seconds).

    The target is checked before anything is computed. The page is then written beside it,
    recorded in the store, and only then renamed into place: a report the store could not
    keep is not written, and the one step left after the store's commit is the rename."""
    from reports import build_report_data, render_html, summary_json

    started = time.perf_counter()
    path = target_path(output or default_report_path(experiment))
    check_target(path)
    data = build_report_data(store, experiment)
    html = render_html(data)
    staged = StagedFile(path, html)
    numbers = summary_json(data)
    if summary is not None:  # the caller's copy of the verdict's numbers (--json)
        summary.update(numbers)
    try:
        report_id = store.record_report(experiment, str(path), numbers, html)
    except BaseException:
        staged.discard()
        raise
    try:
        staged.commit()
    except StudyError as exc:
        raise type(exc)(
            f"{exc}; the report is kept in the store (id {report_id}): "
            f"dynl2 report {experiment} --from-store -o FILE writes it"
        ) from None
    return path, time.perf_counter() - started


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
    with storage.open(storage.resolve_url(args.storage), create=False) as store:
        if args.from_store:
            html, _ = store.latest_report(args.experiments[0])
            print(write_file(path, html))
            return 0
        if args.compare:
            from reports import build_report_data, render_compare_html

            built = {name: build_report_data(store, name) for name in set(args.experiments)}
            html = render_compare_html([built[name] for name in args.experiments])
            print(write_file(path, html))
            return 0
        store.get_experiment(args.experiments[0])  # a missing experiment: one line, exit 2
    # Writing the report needs the tables for it: open for writing (adds dynl2_reports to a
    # store made by an older dynl2).
    with storage.open(storage.resolve_url(args.storage)) as store:
        summary: dict[str, Any] = {}
        path, _ = make_report(store, args.experiments[0], path, summary)
    if args.json:  # stdout is the JSON object alone; where the page went goes to stderr
        print(json.dumps(summary, allow_nan=False, sort_keys=True))
        print(f"report: {path}", file=sys.stderr)
    else:
        print(path)
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
