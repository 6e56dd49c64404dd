"""``dynl2 report``, ``dynl2 reports`` and ``dynl2 demo``."""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import storage
from storage import Store

from .errors import UsageError
from .study_cmds import _storage_flag


def add_parsers(verbs: Any) -> None:
    p = verbs.add_parser(
        "report",
        help="write one self-contained HTML report of an experiment (or compare several)",
        description="Build the HTML report of EXPERIMENT, write it (atomically), keep it in "
        "the store and print its path. --compare puts several experiments on one page; "
        "--from-store re-exports the newest stored report without recomputing it.",
    )
    p.add_argument("experiments", metavar="EXPERIMENT", nargs="+")
    p.add_argument("-o", "--output", metavar="FILE", help="where to write the HTML")
    p.add_argument("--compare", action="store_true", help="one page across the experiments")
    p.add_argument("--from-store", action="store_true", help="re-export the newest stored one")
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


def default_report_path(name: str) -> Path:
    return Path.cwd() / "dynl2-workspace" / "reports" / f"{name}.html"


def write_atomically(path: Path, text: str) -> None:
    """Write to a temporary file beside ``path`` and rename it: a reader (or a kill) never
    sees half a report."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def make_report(store: Store, experiment: str, output: Path | None = None) -> tuple[Path, float]:
    """Build, write and record the report of ``experiment``; returns (path, seconds)."""
    from reports import build_report_data, render_html, summary_json

    started = time.perf_counter()
    data = build_report_data(store, experiment)
    html = render_html(data)
    path = (output or default_report_path(experiment)).resolve()
    try:
        write_atomically(path, html)
    except OSError as exc:
        raise UsageError(f"--output: cannot write {path}: {exc.strerror or exc}") from None
    store.record_report(experiment, str(path), summary_json(data), html)
    return path, time.perf_counter() - started


def cmd_report(args: argparse.Namespace) -> int:
    output = Path(args.output) if args.output else None
    if args.compare and args.from_store:
        raise UsageError("--compare and --from-store cannot be combined")
    if args.compare and len(args.experiments) < 2:
        raise UsageError("--compare needs at least two experiments")
    if not args.compare and len(args.experiments) > 1:
        raise UsageError("give one EXPERIMENT, or use --compare for several")
    with storage.open(storage.resolve_url(args.storage), create=False) as store:
        if args.from_store:
            name = args.experiments[0]
            html, _ = store.latest_report(name)
            path = (output or default_report_path(name)).resolve()
            write_atomically(path, html)
            print(path)
            return 0
        if args.compare:
            from reports import build_report_data, render_compare_html

            datas = [build_report_data(store, name) for name in args.experiments]
            path = output or default_report_path("compare-" + "-".join(args.experiments))
            write_atomically(path.resolve(), render_compare_html(datas))
            print(path.resolve())
            return 0
        store.get_experiment(args.experiments[0])  # a missing experiment: one line, exit 2
    # Writing the report needs the tables for it: open for writing (adds dynl2_reports to a
    # store made by an older dynl2).
    with storage.open(storage.resolve_url(args.storage)) as store:
        path, _ = make_report(store, args.experiments[0], output)
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
