"""Draw a suite's forest plot (the suite report's first figure) as a PNG; run by hand.

    python docs/forest_png.py SUITE [--storage URL] [-o docs/findings-forest.png]

docs/findings.md shows the published suite's forest plot as an image (a Markdown page cannot
run the report's plotly.js). This builds the figure exactly as ``dynl2 suite report`` does
(:func:`study.api.suites.suite_input`, :func:`reports.build_suite_data`,
:func:`reports.suite_figures.forest_figure`), puts it alone on a page with plotly.js inline,
and has headless Chromium screenshot that page. Needs Chromium (``apt-get install chromium``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from chromium_shot import find_browser, screenshot  # docs/, this script's folder

WIDTH = 1100


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("suite")
    parser.add_argument("--storage", default=None, help="store URL (default: dynl2's default)")
    parser.add_argument("-o", "--output", default="docs/findings-forest.png", type=Path)
    args = parser.parse_args(argv)
    browser = find_browser()
    if browser is None:
        print("forest_png: no Chromium found (apt-get install chromium)", file=sys.stderr)
        return 2

    from plotly.offline import get_plotlyjs  # type: ignore[import-untyped, unused-ignore]

    import storage
    from reports import build_suite_data
    from reports.suite_figures import forest_figure
    from study.api import experiments as api
    from study.api.suites import suite_input
    from study.errors import StudyError
    from study.run.files import check_target, target_path

    try:
        check_target(target_path(args.output), what="image")  # a regular file or a new name
    except StudyError as exc:
        print(f"forest_png: {exc}", file=sys.stderr)
        return 2

    with storage.open(api.storage_url(args.storage), create=False) as store:
        data = build_suite_data(suite_input(store, args.suite, args.output.resolve()))
    figure = forest_figure(data)
    if figure is None:
        print(f"forest_png: suite {args.suite!r} has no difference to plot yet", file=sys.stderr)
        return 2
    height = 32 + 160 + 32 * (len(data.main.rows) + 2) + 20  # the modebar strip, then the figure
    page = (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<script>{get_plotlyjs()}</script>"
        "<style>body{margin:0;background:#fff}.modebar{display:none!important}</style></head>"
        f"<body>{figure.html}</body></html>"
    )
    screenshot(browser, page, args.output, WIDTH, height)
    print(f"forest plot of suite {args.suite}: {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
