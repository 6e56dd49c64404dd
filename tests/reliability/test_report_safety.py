"""Issue 6, item 7: a report shows whatever the database holds as text, and is written
atomically.

Arm and parameter names and failure messages full of HTML, script and quotes go through
``dynl2 report`` (in this process) into a file that is then parsed: the hostile text is in the
page's text, verbatim, and made no element, attribute or script of its own. They reach the
store as another program may write them (an arm only the store knows, its trials' parameters,
failure messages); a stored config that names markup is no valid config, and is refused as
``dynl2 status`` refuses it, in one line. A write
that dies half way (the disk fills, the process is interrupted) leaves the previous report
whole, no temporary file behind, and no report recorded in the store."""

from __future__ import annotations

import os
from html.parser import HTMLParser
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState
from plotly.offline import get_plotlyjs

import storage
from study.run import files
from tests.reports import synthetic as syn

from .helpers import run_cli

pytestmark = pytest.mark.reliability

# Names may not hold "/" (it separates experiment and arm in study names).
HOSTILE_NAME = "<img src=x onerror=XSSNAME()>\"'&amp;<b>bold"
NAME = "hostile"
ARM = "<svg onload=XSSARM()>'\"<i>"
PARAM = "</script><script>XSSPARAM()</script>\"'"
REASON = "</td></tr></table><script>XSSREASON()</script><a href=\"javascript:XSS()\">'x'</a>"
HOSTILE = (ARM, PARAM, REASON)
MARKERS = ("XSSNAME", "XSSARM", "XSSPARAM", "XSSREASON", "javascript:")


class _Page(HTMLParser):
    """Tags with their attributes, the text outside scripts, and each script's source."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, list[tuple[str, str | None]]]] = []
        self.text: list[str] = []
        self.scripts: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, attrs))
        if tag == "script":
            self._in_script = True
            self.scripts.append("")

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script:
            self.scripts[-1] += data
        else:
            self.text.append(data)


@pytest.fixture
def hostile(tmp_path: Path) -> str:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    url = f"sqlite:///{tmp_path / 'r.db'}"
    with storage.open(url) as store:
        cfg = syn.create(store, NAME, arms={"fixed": syn.ARMS["fixed"]})
        # The hostile arm and parameter only the store knows, as another program wrote them.
        hostile_arm = {**syn.ARMS["dynamic"], PARAM: {"low": 0.0, "high": 1.0, "log": False}}
        shadow = {**cfg, "arms": {**cfg["arms"], ARM: hostile_arm}}
        syn.add_trials(store, shadow, ARM, [0.7, 0.8, 0.9], epochs=2)
        syn.add_trials(store, cfg, "fixed", [0.75, 0.85], epochs=2)
        syn.add_trials(store, cfg, "fixed", [None], state=TrialState.FAIL, fail_reason=REASON)
        syn.add_trials(store, shadow, ARM, [None], state=TrialState.FAIL, fail_reason=REASON)
        syn.add_evaluations(store, NAME, ARM, [0.8, 0.81, 0.82])
        syn.add_evaluations(store, NAME, "fixed", [0.8, 0.8, 0.83])
    return url


def _report(url: str, out: Path, capsys: pytest.CaptureFixture[str], *extra: str) -> None:
    code, stdout, err = run_cli(["report", NAME, "-o", str(out), *extra, "--storage", url], capsys)
    assert code == 0, err
    assert stdout.strip() == str(out.resolve())


def _check_page(html: str) -> None:
    page = _Page()
    page.feed(html)
    page.close()
    names = {tag for tag, _ in page.tags}
    assert not names & {"img", "svg", "iframe", "object", "embed", "i", "b"}, names
    for tag, attrs in page.tags:
        for attr, value in attrs:
            assert not attr.startswith("on"), (tag, attr)
            assert not (value or "").lower().startswith("javascript:"), (tag, attr, value)
            assert not any(m in (value or "") for m in MARKERS), (tag, attr, value)
    assert page.tags.count(("script", [])) == len(page.scripts)  # no script of another kind
    library = get_plotlyjs()
    for source in page.scripts:
        if library in source:
            continue  # plotly.js itself (inlined once), not data
        # User text may sit in a figure's JSON data, where Plotly writes "<" as \u003c: a
        # script holding any of it has no raw "<" that could end it or open markup.
        if any(marker in source for marker in MARKERS):
            assert "<" not in source
    text = "".join(page.text)
    for value in HOSTILE:
        assert value in text, value  # shown, verbatim, as text


def test_hostile_names_params_and_reasons_render_as_text(hostile, tmp_path, capsys):
    out = tmp_path / "report.html"
    _report(hostile, out, capsys)
    _check_page(out.read_text(encoding="utf-8"))
    again = tmp_path / "again.html"
    _report(hostile, again, capsys, "--from-store")
    assert again.read_bytes() == out.read_bytes()


def test_a_stored_config_with_markup_names_is_refused_in_one_line(tmp_path, capsys):
    url = f"sqlite:///{tmp_path / 'bad.db'}"
    with storage.open(url) as store:
        syn.create(store, HOSTILE_NAME)
    out = tmp_path / "report.html"
    code, stdout, err = run_cli(["report", HOSTILE_NAME, "-o", str(out), "--storage", url], capsys)
    assert code == 2 and stdout == "", (code, stdout, err)
    assert len(err.strip().splitlines()) == 1 and "experiment.name" in err, err
    assert not out.exists()
    with storage.open(url, create=False) as store:
        assert store.reports().empty


class _DiesHalfWay:
    """A file whose write puts half the text on disk and then fails."""

    def __init__(self, real, error: BaseException) -> None:
        self._real = real
        self._error = error

    def write(self, text: str) -> int:
        self._real.write(text[: len(text) // 2])
        self._real.flush()
        raise self._error

    def __enter__(self):
        return self

    def __exit__(self, *exc: object) -> None:
        self._real.close()


@pytest.mark.parametrize(
    "error", [OSError(28, "No space left on device"), KeyboardInterrupt()], ids=["full", "int"]
)
def test_a_write_that_dies_half_way_leaves_the_old_report(hostile, tmp_path, capsys,
                                                          monkeypatch, error):  # fmt: skip
    out = tmp_path / "reports" / "report.html"
    _report(hostile, out, capsys)
    old = out.read_bytes()
    with storage.open(hostile, create=False) as store:
        reports_before = len(store.reports())
    real_fdopen = os.fdopen
    calls: list[str] = []

    def fdopen(fd, *args, **kwargs):
        calls.append(str(fd))
        return _DiesHalfWay(real_fdopen(fd, *args, **kwargs), error)

    monkeypatch.setattr(files.os, "fdopen", fdopen)  # the one writer (study.run.files)
    code, _, err = run_cli(["report", NAME, "-o", str(out), "--storage", hostile], capsys)
    monkeypatch.undo()
    assert calls, "the report was not written through the atomic writer"
    if isinstance(error, KeyboardInterrupt):
        assert code == 130 and len(err.strip().splitlines()) == 1, err
        assert "interrupted" in err and "Traceback" not in err
    else:
        assert code != 0 and len(err.strip().splitlines()) == 1, err
        assert "No space left" in err and "Traceback" not in err
    assert out.read_bytes() == old  # the previous report, whole
    assert sorted(p.name for p in out.parent.iterdir()) == ["report.html"]  # no leftovers
    with storage.open(hostile, create=False) as store:
        assert len(store.reports()) == reports_before  # a report not written is not recorded
