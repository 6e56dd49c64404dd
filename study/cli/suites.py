"""``dynl2 suite run | status | report``: flags in, a call of :mod:`study.api.suites`, lines
out."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from study.cli.args import batch_flag, storage_flag, workers_flag
from study.cli.experiments import say_line
from study.config.suite import MAX_WITHOUT_YES, SuiteConfigError


def add_parser(verbs: Any) -> None:
    p = verbs.add_parser(
        "suite",
        help="run a family of experiments from one suite file, and report across them",
        description="A suite file holds a base experiment and a matrix of overrides; `suite run` "
        "expands and validates it whole, runs every experiment (rerunning resumes) and writes "
        "the suite report; `suite status` and `suite report` read the store.",
    )
    actions = p.add_subparsers(dest="action", metavar="ACTION", parser_class=type(p))
    actions.required = True

    run = actions.add_parser("run", help="validate, record and run every experiment of FILE")
    run.add_argument("file", metavar="FILE", help="the suite file (TOML)")
    workers_flag(run, "worker processes per experiment")
    batch_flag(run)
    storage_flag(run)
    run.add_argument(
        "--yes", action="store_true", help=f"allow more than {MAX_WITHOUT_YES} experiments"
    )
    run.add_argument("--quiet", action="store_true", help="no progress lines")
    run.set_defaults(handler=cmd_run)

    status = actions.add_parser("status", help="each experiment of suite NAME and its progress")
    status.add_argument("name", metavar="NAME")
    storage_flag(status)
    status.set_defaults(handler=cmd_status)

    report = actions.add_parser("report", help="build, keep and write the suite's report")
    report.add_argument("name", metavar="NAME")
    report.add_argument(
        "-o", "--output", metavar="FILE",
        help="where to write the HTML (default ./dynl2-workspace/reports/suites/NAME.html)",
    )  # fmt: skip
    report.add_argument(
        "--json", action="store_true", help="print the report's numbers as one JSON object"
    )
    storage_flag(report)
    report.set_defaults(handler=cmd_report)


def _problems(exc: SuiteConfigError) -> int:
    """A suite's problems, one line each (exit status 2)."""
    for problem in exc.problems:
        print(f"dynl2 suite: error: {' '.join(problem.split())}", file=sys.stderr)
    return 2


def cmd_run(args: argparse.Namespace) -> int:
    from study.api.suites import run_suite

    say = say_line(args.quiet)
    try:
        result = run_suite(
            args.file,
            storage=args.storage,
            workers=args.workers,
            batch=args.batch,
            confirmed=args.yes,
            say=say,
            note=lambda line: print(f"dynl2 suite: note: {line}", file=sys.stderr),
        )
    except SuiteConfigError as exc:
        return _problems(exc)
    if result.report is None:
        short = [run.name for run in result.runs if not run.complete]
        print(
            f"dynl2 suite: experiments {', '.join(short)} are short of their budget; fix the "
            "cause and run the suite again to resume",
            file=sys.stderr,
        )
        return 1
    print(result.report.summary.get("headline", ""))  # the pooled decision
    print(result.report.summary.get("sentence", ""))
    print(f"suite report: {result.report.path}  ({result.report.seconds:.1f} s)")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from study.api.suites import suite_status

    status = suite_status(args.name, storage=args.storage)
    print(f"suite {status.name} (created {status.created}): {len(status.experiments)} experiments")
    for row in status.experiments:
        factors = ", ".join(f"{k} = {json.dumps(v)}" for k, v in row.factors.items())
        counts = (
            f"{row.results}/{row.budget} trials, {row.evaluations}/{row.planned} evaluation runs"
            if row.state != "not started"
            else ""
        )
        print(f"  {row.experiment:<40} {row.state:<12} {counts}  [{factors}]")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from study.api.suites import make_suite_report

    result = make_suite_report(args.name, storage=args.storage, output=args.output)
    if args.json:
        print(json.dumps(result.summary, indent=2, sort_keys=True))
        print(f"suite report: {result.path}", file=sys.stderr)
    else:
        print(f"suite report: {result.path}  ({result.seconds:.1f} s)")
    return 0
