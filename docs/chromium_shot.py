"""Headless Chromium's screenshot of one HTML page: what ``docs/report_png.py`` and
``docs/forest_png.py`` share (run by hand; needs ``apt-get install chromium``)."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

BROWSERS = ("chromium", "chromium-browser", "google-chrome")


def find_browser() -> str | None:
    """The first Chromium on PATH, or None."""
    return next((b for b in map(shutil.which, BROWSERS) if b), None)


def screenshot(browser: str, page: str, output: Path, width: int, height: int) -> None:
    """Write ``page`` (a whole HTML document) to a temporary file and have ``browser`` save
    its first ``width`` × ``height`` pixels as the PNG ``output``."""
    with tempfile.TemporaryDirectory() as tmp:
        html = Path(tmp) / "page.html"
        html.write_text(page, encoding="utf-8")
        shot = Path(tmp) / "page.png"
        subprocess.run(
            [
                browser,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--hide-scrollbars",
                "--force-device-scale-factor=1",
                f"--user-data-dir={Path(tmp) / 'profile'}",
                f"--window-size={width},{height}",
                "--virtual-time-budget=10000",
                f"--screenshot={shot}",
                html.as_uri(),
            ],
            check=True,
            capture_output=True,
            timeout=120,
        )
        output.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot, output)
