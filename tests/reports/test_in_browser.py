"""The report in a real browser: headless Chromium opens it offline, no script error, and every
figure rendered (an SVG inside each figure's container); and no figure's toolbar (Plotly's
modebar) covers its title or its plot, at a laptop's width and a narrow one.

Skipped when no Chromium is installed, except when ``DYNL2_REQUIRE_BROWSER=1`` (CI), where a
missing browser fails the run.
"""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import optuna
import pytest

import reports
import storage
from reports import MeanCI, SuiteEntry, SuiteInput
from tests.reports import synthetic as syn

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


def render_in_browser(
    browser: str, page: Path, profile: Path, window: tuple[int, int] | None = None
) -> str:
    size = [] if window is None else [f"--window-size={window[0]},{window[1]}"]
    proc = subprocess.run(
        [
            browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
            "--no-first-run", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", f"--user-data-dir={profile}", "--virtual-time-budget=10000",
            *size, "--dump-dom", page.as_uri(),
        ],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


@pytest.mark.slow
def test_report_renders_in_chromium_without_errors(tmp_path):
    """examples/tiny.toml with two replicates, the run whose report once read "dynamic
    test_acc 70.33 ± 159.27": rendered in Chromium, every figure draws, no interval leaves
    what the metric can be, and nothing is claimed on one degree of freedom."""
    browser = find_browser()
    config = tmp_path / "b.toml"
    tiny = (ROOT / "examples" / "tiny.toml").read_text()
    assert "\nreplicates = 3" in tiny
    two = tiny.replace('"tiny"', '"b"').replace("\nreplicates = 3", "\nreplicates = 2")
    config.write_text(two)
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

    verdict = dom.split('<section id="verdict">', 1)[1].split("</section>", 1)[0]
    text = re.sub(r"<div[^>]*class=\"figure\".*", "", verdict, flags=re.S)  # tables, words
    answer = re.search(r'<p class="answer[^"]*">(.*?)</p>', text, re.S)
    cells = re.findall(r"<td[^>]*>(.*?)</td>", text, re.S)  # the tables and their readings
    assert answer and answer.group(1).startswith("Inconclusive for lack of replicates: 2 searches")
    said = [answer.group(1), *cells]
    assert not [c for c in said if " beat " in c]  # no claim on one degree of freedom
    assert not [c for c in cells if "±" in c]  # and no t interval
    assert sum("(searches: " in c for c in cells) == 3 + 2  # each arm's, each comparison's
    for low, high in re.findall(r"\[([−+\d.]+), ([−+\d.]+)\]", " ".join(said)):
        low_f, high_f = (float(x.replace("−", "-")) for x in (low, high))
        assert -100.0 <= low_f <= high_f <= 100.0, (low, high)


# Once every figure has drawn (polled: plotly draws titles and the modebar after newPlot
# returns), writes each figure's modebar rectangle and what it intersects into the <html>
# element's data-modebar attribute, as JSON. Covered: the title (.gtitle), the subplot titles
# and other annotations, every subplot's plot area (its .nsewdrag drag rectangle: where the
# data points lie), the legend and the colorbar. Measured whether the modebar is shown or faded
# out for hover: the rectangle is the same, and a touch screen shows it all the time.
MODEBAR_PROBE = """<script>
window.addEventListener("load", function () {
  var COVERABLE = {title: ".gtitle", annotation: ".annotation", plot: ".nsewdrag",
                   legend: ".legend", colorbar: ".colorbar"};
  function box(r) { return [Math.round(r.left), Math.round(r.top),
                            Math.round(r.right), Math.round(r.bottom)]; }
  function meets(a, b) {
    return a.left < b.right && b.left < a.right && a.top < b.bottom && b.top < a.bottom;
  }
  function drawn(fig) {
    return fig.querySelector(".main-svg") && fig.querySelector(".modebar .modebar-btn")
      && fig.querySelector(".gtitle");
  }
  function measure() {
    var out = [];
    document.querySelectorAll("div.figure").forEach(function (fig) {
      var bar = fig.querySelector(".modebar");
      var row = {id: fig.id, width: Math.round(fig.getBoundingClientRect().width),
                 modebar: bar ? box(bar.getBoundingClientRect()) : null,
                 titles: fig.querySelectorAll(".gtitle").length,
                 plots: fig.querySelectorAll(".nsewdrag").length, covers: []};
      Object.keys(COVERABLE).forEach(function (kind) {
        fig.querySelectorAll(COVERABLE[kind]).forEach(function (el) {
          var r = el.getBoundingClientRect();
          if (bar && r.width > 0 && r.height > 0 && meets(bar.getBoundingClientRect(), r)) {
            row.covers.push(kind + " " + box(r).join(","));
          }
        });
      });
      out.push(row);
    });
    document.documentElement.setAttribute("data-modebar", JSON.stringify(out));
  }
  var tries = 0;
  (function poll() {
    var figs = Array.prototype.slice.call(document.querySelectorAll("div.figure"));
    if (figs.every(drawn) || ++tries > 100) { measure(); } else { setTimeout(poll, 50); }
  })();
});
</script>"""

LAPTOP, NARROW = (1366, 768), (800, 900)


def _demo_like_report(directory: Path) -> str:
    """A report with every figure the demo's has, on a synthetic store shaped like the demo
    (arms dynamic / fixed / none, 3 searches per arm, epochs, evaluations): the demo itself
    trains for minutes."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with storage.open(f"sqlite:///{directory / 'demo.db'}") as store:
        cfg = syn.config("demo", n_trials=4, seeds=5)
        cfg["search"]["replicates"] = 3
        store.create_experiment("demo", cfg)
        for i, arm in enumerate(cfg["arms"]):
            for r in (1, 2, 3):
                values = [0.5 + 0.04 * ((k * 5 + i + r) % 7) for k in range(4)]
                syn.add_trials(store, cfg, arm, values, epochs=3, seed=10 * i + r, replicate=r)
                accs = [0.8 + 0.01 * i + 0.007 * ((s + r) % 4) for s in range(5)]
                syn.add_evaluations(store, "demo", arm, accs, replicate=r)
        return reports.render_html(reports.build_report_data(store, syn.spec(store, "demo")))


def _suite_report() -> str:
    """A suite report with both of its figures: the forest plot and the "when" subplots."""
    entries = [
        SuiteEntry(
            experiment=f"when-{dataset}-{epochs}",
            factors={"data.dataset": dataset, "train.epochs": epochs},
            comparisons={"dynamic": MeanCI(0.3 * k - 0.4, 0.5, 10)},
            href=None,
            note=None,
        )
        for k, (dataset, epochs) in enumerate(
            [("digits", 30), ("digits", 100), ("mnist1d", 30), ("mnist1d", 100)]
        )
    ]
    data = reports.build_suite_data(
        SuiteInput("when", ("data.dataset", "train.epochs"), entries, generated="2025-01-01")
    )
    return reports.render_suite_html(data)


@pytest.fixture(scope="module")
def pages(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    find_browser()  # skip before building anything
    directory = tmp_path_factory.mktemp("modebar")
    out = {}
    for name, page in (("demo", _demo_like_report(directory)), ("suite", _suite_report())):
        out[name] = directory / f"{name}.html"
        out[name].write_text(page.replace("</body>", MODEBAR_PROBE + "</body>", 1), "utf-8")
    return out


@pytest.mark.parametrize("window", [LAPTOP, NARROW], ids=["laptop", "narrow"])
@pytest.mark.parametrize("report", ["demo", "suite"])
def test_the_modebar_covers_no_title_and_no_plot(pages, report, window, tmp_path):
    """Every figure has its modebar and its title, and the modebar's rectangle meets neither
    the title nor any plot area (nor a legend, colorbar or subplot title)."""
    browser = find_browser()

    dom = render_in_browser(browser, pages[report], tmp_path / "profile", window)

    found = re.search(r'data-modebar="([^"]*)"', dom)
    assert found, "the probe wrote no measurement"
    figures = json.loads(html.unescape(found.group(1)))
    expected = {"demo": 11, "suite": 2}[report]  # every figure of these reports
    assert len(figures) == expected, [f["id"] for f in figures]
    for f in figures:
        assert f["modebar"] is not None, f"{f['id']} has no modebar"
        assert f["titles"] == 1 and f["plots"] >= 1, f
        assert (f["width"] > NARROW[0]) == (window == LAPTOP), f  # the window size took effect
    covering = {f["id"]: (f["modebar"], f["covers"]) for f in figures if f["covers"]}
    assert not covering, f"the modebar (left, top, right, bottom) covers: {covering}"
