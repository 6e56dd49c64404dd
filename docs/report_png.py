"""Retake the README's screenshot: the first screen of the demo's report; run by hand.

    python docs/report_png.py [--storage URL] [-o docs/report.png]

Without ``--storage`` it first runs ``dynl2 demo`` on a new store in a temporary folder (about
four minutes on 2 CPU cores), so the picture comes from the current code end to end. With
``--storage URL``, a store where ``dynl2 demo`` already ran, it only reads that store (nothing is
written to it). Either way it builds the report as ``dynl2 report`` does
(:func:`study.run.runs.stored_experiment`, :func:`reports.build_report_data`,
:func:`reports.render_html`) and has headless Chromium screenshot its first screen at a
laptop's size. Needs Chromium (``apt-get install chromium``).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from chromium_shot import find_browser, screenshot  # docs/, this script's folder

ROOT = Path(__file__).resolve().parents[1]  # the checkout: runs without dynl2 installed
WINDOW = (1280, 800)  # px: a laptop's screen, as the README shows it


def run_demo(folder: Path) -> str:
    """Run ``dynl2 demo`` on a new SQLite store in ``folder``; its URL. The demo writes its own
    report under ``folder`` too, never into the current directory."""
    url = f"sqlite:///{folder / 'demo.db'}"
    path = os.environ.get("PYTHONPATH")
    env = {**os.environ, "PYTHONPATH": str(ROOT) + (os.pathsep + path if path else "")}
    print("report_png: running dynl2 demo (minutes) ...", file=sys.stderr, flush=True)
    subprocess.run(
        [sys.executable, "-m", "study", "demo", "--quiet", "--storage", url],
        cwd=folder,
        env=env,
        check=True,
    )
    return url


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--storage", default=None, help="a store where `dynl2 demo` ran (default: run it anew)"
    )
    parser.add_argument("--experiment", default="demo", help="the experiment (default: demo)")
    parser.add_argument("-o", "--output", default="docs/report.png", type=Path)
    args = parser.parse_args(argv)
    browser = find_browser()
    if browser is None:
        print("report_png: no Chromium found (apt-get install chromium)", file=sys.stderr)
        return 2
    sys.path.insert(0, str(ROOT))

    import storage
    from reports import build_report_data, render_html
    from study.api import experiments as api
    from study.errors import StudyError
    from study.run.files import check_target, target_path
    from study.run.runs import stored_experiment

    try:
        check_target(target_path(args.output), what="image")  # a regular file or a new name
    except StudyError as exc:
        print(f"report_png: {exc}", file=sys.stderr)
        return 2

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        url = api.storage_url(args.storage) if args.storage else run_demo(folder)
        try:
            with storage.open(url, create=False) as store:
                page = render_html(
                    build_report_data(store, stored_experiment(store, args.experiment))
                )
        except (StudyError, storage.StorageError) as exc:
            print(f"report_png: {exc}", file=sys.stderr)
            return 2
        screenshot(browser, page, args.output, *WINDOW)
    print(f"first screen of the {args.experiment} report ({WINDOW[0]}x{WINDOW[1]}): {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
