"""The report in a real browser: headless Chromium opens it offline, no script error, and every
figure rendered (an SVG inside each figure's container).

Skipped when no Chromium is installed, except when ``DYNL2_REQUIRE_BROWSER=1`` (CI), where a
missing browser fails the run.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BROWSERS = ("chromium", "chromium-browser", "google-chrome")

# Records uncaught errors and console.error calls on the <html> element, where --dump-dom
# shows them.
ERROR_HOOK = """<script>
(function () {
  function note(text) {
    var root = document.documentElement;
    root.setAttribute("data-js-errors", (root.getAttribute("data-js-errors") || "") + "|" + text);
  }
  window.addEventListener("error", function (e) { note(e.message); });
  var original = console.error;
  console.error = function () { note(Array.prototype.join.call(arguments, " "));
                                original.apply(console, arguments); };
})();
</script>"""


def find_browser() -> str:
    for name in BROWSERS:
        path = shutil.which(name)
        if path:
            return path
    if os.environ.get("DYNL2_REQUIRE_BROWSER") == "1":
        pytest.fail(
            "DYNL2_REQUIRE_BROWSER=1 but no Chromium is installed (apt-get install chromium)"
        )
    pytest.skip("no Chromium installed")


def render_in_browser(browser: str, page: Path, profile: Path) -> str:
    proc = subprocess.run(
        [
            browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
            "--no-first-run", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", f"--user-data-dir={profile}", "--virtual-time-budget=10000",
            "--dump-dom", page.as_uri(),
        ],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


@pytest.mark.slow
def test_report_renders_in_chromium_without_errors(tmp_path):
    browser = find_browser()
    config = tmp_path / "b.toml"
    config.write_text((ROOT / "examples" / "tiny.toml").read_text().replace('"tiny"', '"b"'))
    proc = subprocess.run(
        [sys.executable, "-m", "study", "run", str(config), "--quiet",
         "--storage", f"sqlite:///{tmp_path / 'b.db'}"],
        cwd=tmp_path, capture_output=True, text=True, timeout=600,
        env={**os.environ, "DYNL2_THREADS": "1"},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    match = re.search(r"^report: (\S+)", proc.stdout, re.M)
    assert match, proc.stdout
    html = Path(match.group(1)).read_text(encoding="utf-8")
    hooked = tmp_path / "hooked.html"
    hooked.write_text(html.replace("<head>", "<head>" + ERROR_HOOK, 1), encoding="utf-8")

    dom = render_in_browser(browser, hooked, tmp_path / "profile")

    errors = re.search(r'data-js-errors="([^"]*)"', dom)
    assert errors is None, f"script errors in the report: {errors.group(1)}"
    containers = re.split(r'<div[^>]*class="figure"', dom)[1:]
    assert len(containers) >= 5, "the report should hold several figures"
    for chunk in containers:
        figure = chunk.split('class="figure"', 1)[0]
        assert "<svg" in figure, f"a figure did not render: {figure[:300]}"
