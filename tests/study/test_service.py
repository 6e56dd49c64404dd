"""``dynl2 serve`` as a real server process on a free loopback port (no mocked HTTP), over a
store holding one finished experiment, on SQLite and PostgreSQL: every endpoint, every page in
headless Chromium, bad requests answered with one JSON line and the right status, submissions
with and without the token, and ``dynl2 submit``."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

import storage
from study.cli.dispatch import main
from tests.reliability.helpers import ROOT, child_env, finish
from tests.reports.test_in_browser import find_browser
from tests.storage.backends import BACKENDS, empty_url
from tests.tiny import tiny_config, write_tiny

NAME = "served"
ARMS = ("dynamic", "fixed", "none")
HOSTILE = '<img src=x onerror="document.title=1">&amp; </td><script>alert(1)</script>'
OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback, never a proxy


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> object:
        return json.loads(self.body)

    @property
    def error(self) -> str:
        data = self.json()
        assert isinstance(data, dict) and set(data) == {"error"}, data
        line = data["error"]
        assert isinstance(line, str) and line and "\n" not in line and "Traceback" not in line
        return line


@dataclass
class Server:
    proc: subprocess.Popen[str]
    base: str
    url: str  # the store

    def request(
        self,
        path: str,
        *,
        method: str = "GET",
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> Answer:
        req = urllib.request.Request(
            self.base + path, data=body, method=method, headers=headers or {}
        )
        try:
            with OPENER.open(req, timeout=60) as response:
                return Answer(response.status, dict(response.headers), response.read())
        except urllib.error.HTTPError as exc:
            return Answer(exc.code, dict(exc.headers), exc.read())


def start_server(url: str, *extra: str, **env: str) -> Server:
    """``dynl2 serve --port 0``: its first line names the address once it listens."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "study", "serve", "--storage", url, "--port", "0", *extra],
        cwd=ROOT, env=child_env(**env), text=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    assert proc.stdout is not None
    line = proc.stdout.readline()  # blocks until the server listens, or exits
    if not line.startswith("dynl2 serve: http://"):
        proc.kill()
        _, _, err = finish(proc, 30)
        pytest.fail(f"the server did not start: {line!r} {err[-2000:]}")
    base = line.split()[2].rstrip("/")
    return Server(proc, base, url)


def stop_server(server: Server) -> None:
    """SIGTERM: the server finishes its requests and stops with dynl2's line for it."""
    if server.proc.poll() is not None:
        pytest.fail(f"the server had stopped: {server.proc.returncode}")
    server.proc.terminate()
    code, _, err = finish(server.proc, 60)
    assert code == 143 and err.strip() == "dynl2 serve: terminated (SIGTERM)", err[-2000:]


@pytest.fixture(scope="module", params=BACKENDS)
def served(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """A store with one finished experiment (searched, evaluated, reported) and a report
    whose verdict sentence is hostile markup, served read-only."""
    directory = tmp_path_factory.mktemp(f"serve-{request.param}")
    with empty_url(request.param, directory) as url:
        config = write_tiny(directory, NAME, epochs=2, n_trials=3, seeds=3, arms=ARMS)
        with pytest.MonkeyPatch.context() as patch:
            patch.chdir(directory)  # the report goes to ./dynl2-workspace/reports/
            assert main(["run", str(config), "--storage", url, "--quiet"]) == 0
        with storage.open(url) as store:
            store.record_report(NAME, "hostile.html", {"sentence": HOSTILE}, f"<p>{HOSTILE}</p>")
        server = start_server(url)
        try:
            yield server
        finally:
            stop_server(server)


# ----------------------------------------------------------------------------- the API


def test_healthz_and_the_experiment_list(served: Server) -> None:
    health = served.request("/healthz")
    assert health.status == 200 and health.json() == {
        "status": "ok",
        "store": storage.masked_url(storage.resolve_url(served.url)),
    }
    listing = served.request("/api/experiments").json()
    assert isinstance(listing, dict)
    (entry,) = listing["experiments"]
    assert entry["name"] == NAME and entry["state"] == "done"
    assert entry["results"] == entry["budget"] == 3 * 3  # three searched arms (lr in "none")
    assert entry["evaluations"] == entry["planned"] == 3 * len(ARMS)
    assert {a["arm"]: (a["results"], a["budget"]) for a in entry["arms"]} == {
        arm: (3, 3) for arm in ARMS
    }
    assert entry["verdict"] == HOSTILE  # the newest report's sentence, as data


def test_one_experiment_is_what_status_shows(served: Server) -> None:
    from study import experiment_status

    detail = served.request(f"/api/experiments/{NAME}").json()
    assert isinstance(detail, dict)
    status = experiment_status(NAME, storage=served.url)
    assert [s["search"] for s in detail["searches"]] == list(status.counts)
    for row in detail["searches"]:
        counts = status.counts[row["search"]]
        assert (row["complete"], row["pruned"], row["running"]) == (
            counts.complete, counts.pruned, counts.running,
        )  # fmt: skip
        assert row["best"] == pytest.approx(counts.best)
        assert row["best_params"] == status.best[(row["arm"], row["replicate"])]
    assert {e["arm"]: e["runs"] for e in detail["evaluation"]} == {
        s.arm: s.seeds for s in status.summary
    }
    reports = detail["reports"]
    assert len(reports) == 2 and reports[0]["verdict"] == HOSTILE  # newest first
    assert served.request(f"/api/experiments/{NAME}/reports").json() == {"reports": reports}


def test_each_arm_reads_the_same_in_the_page_the_api_the_terminal_and_the_report(
    served: Server,
) -> None:
    """One number everywhere: each arm's mean and interval, in the report's unit, from the
    service's JSON, its page, ``dynl2 status`` and the report (its JSON and its HTML)."""
    import html

    from reports import build_report_data, render_html, summary_json
    from study import experiment_status
    from study.run.runs import stored_experiment

    detail = served.request(f"/api/experiments/{NAME}").json()
    assert isinstance(detail, dict)
    page = served.request(f"/experiments/{NAME}").body.decode()
    with storage.open(served.url, create=False) as store:
        data = build_report_data(store, stored_experiment(store, NAME))
    summary, report = summary_json(data), render_html(data)
    status = {s.arm: s for s in experiment_status(NAME, storage=served.url).summary}
    assert [e["arm"] for e in detail["evaluation"]] == list(ARMS)
    for e in detail["evaluation"]:
        arm = summary["arms"][e["arm"]]
        test = arm["test"]
        assert test["n"] == 3 and test["low"] is not None  # 3 seeds of one search: an interval
        assert (e["mean"], e["low"], e["high"], e["n"]) == (
            pytest.approx(test["mean"]), pytest.approx(test["low"]),
            pytest.approx(test["high"]), test["n"],
        )  # fmt: skip
        assert e["unit"] == summary["unit"] == "points" and 0 <= e["low"] <= e["high"] <= 100
        assert e["text"] == arm["text"] == status[e["arm"]].text
        assert " ± " in e["text"] or "]†" in e["text"]
        cell = f'<td class="num" data-field="result">{html.escape(e["text"])}</td>'
        assert cell in page
        assert f'<td class="num">{html.escape(e["text"])}</td>' in report


def test_best_parameters_read_one_a_line_rounded_as_the_report_rounds(served: Server) -> None:
    detail = served.request(f"/api/experiments/{NAME}").json()
    assert isinstance(detail, dict)
    page = served.request(f"/experiments/{NAME}").body.decode()
    for row in detail["searches"]:
        lines = row["best_params_text"]
        assert len(lines) == len(row["best_params"])
        for line, (key, value) in zip(lines, row["best_params"].items(), strict=True):
            assert line == f"{key}={value:.4g}"
        cell = "".join(f"<div>{line}</div>" for line in lines)
        assert f'class="params">{cell}</td>' in page


def test_trials_page_sort_and_download(served: Server) -> None:
    everything = served.request(f"/api/experiments/{NAME}/trials").json()
    assert isinstance(everything, dict) and everything["total"] == 9
    assert len(everything["rows"]) == 9 and everything["limit"] == 100
    page = served.request(f"/api/experiments/{NAME}/trials?limit=3&offset=2&sort=value&order=desc")
    assert page.headers["x-total-count"] == "9"
    rows = page.json()["rows"]  # type: ignore[index]
    ordered = sorted(everything["rows"], key=lambda r: -r["value"])
    assert [r["trial_id"] for r in rows] == [r["trial_id"] for r in ordered[2:5]]
    only = served.request(f"/api/experiments/{NAME}/trials?arm=fixed").json()
    assert {r["arm"] for r in only["rows"]} == {"fixed"} and only["total"] == 3  # type: ignore[index]
    download = served.request(f"/api/experiments/{NAME}/trials?format=csv")
    assert download.headers["content-type"].startswith("text/csv")
    assert "attachment" in download.headers["content-disposition"]
    table = list(csv.DictReader(io.StringIO(download.body.decode())))
    assert len(table) == 9 and json.loads(table[0]["params"]).keys() >= {"lr"}


def test_a_stored_report_is_served_whole_and_sandboxed(served: Server) -> None:
    with storage.open(served.url, create=False) as store:
        newest, _ = store.latest_report(NAME)
        ids = list(store.reports(NAME)["id"])
    page = served.request(f"/reports/{ids[0]}")
    assert page.status == 200 and page.body.decode() == newest
    assert "sandbox allow-scripts" in page.headers["content-security-policy"]
    entry = served.request(f"/api/reports/{ids[1]}").json()
    assert isinstance(entry, dict) and entry["experiment"] == NAME
    assert entry["summary"]["experiment"] == NAME  # the real report's verdict numbers


BAD = [
    ("/api/experiments/nosuch", 404, "No experiment named 'nosuch'"),
    ("/api/experiments/bad%20name", 400, "an experiment name is"),
    ("/api/experiments/..%2F..%2Fetc%2Fpasswd", 404, "no such address"),
    ("/api/reports/99999", 404, "No report with id 99999"),
    ("/api/reports/abc", 404, "no such address"),
    (f"/api/experiments/{NAME}/trials?limit=0", 400, "limit: expected a whole number from 1"),
    (f"/api/experiments/{NAME}/trials?limit=100000", 400, "limit: expected a whole number"),
    (f"/api/experiments/{NAME}/trials?offset=-1", 400, "offset: expected a whole number"),
    (f"/api/experiments/{NAME}/trials?format=xml", 400, "format: expected one of json, csv"),
    (f"/api/experiments/{NAME}/trials?order=up", 400, "order: expected one of asc, desc"),
    (f"/api/experiments/{NAME}/trials?arm=ghost", 400, "arm: no arm 'ghost'"),
    (f"/api/experiments/{NAME}/trials?sort=value%3B%20DROP%20TABLE%20trials", 400,
     "sort: no column 'value; DROP TABLE trials'"),
    (f"/api/experiments/{NAME}/trials?arm=x'%20OR%20'1'='1", 400, "arm: no arm"),
    (f"/api/experiments/{NAME}/trials?limit=1&limit=2", 400, "limit: given more than once"),
    (f"/api/experiments/{NAME}/trials?page=2", 400, "page: unknown parameter; allowed:"),
    ("/api/nothing", 404, "no such address: /api/nothing"),
]  # fmt: skip


@pytest.mark.parametrize(("path", "status", "fragment"), BAD)
def test_bad_requests_get_one_json_line(
    served: Server, path: str, status: int, fragment: str
) -> None:
    answer = served.request(path)
    assert answer.status == status, answer.body
    assert fragment in answer.error, answer.error


def test_the_store_is_untouched_by_hostile_requests(served: Server) -> None:
    before = served.request(f"/api/experiments/{NAME}/trials?format=csv").body
    for path, _, _ in BAD:
        served.request(path)
    assert served.request("/api/experiments", method="DELETE").status == 405
    refused = served.request(
        "/api/experiments",
        method="POST",
        body=b"[experiment]",
        headers={"Content-Type": "application/toml"},
    )
    assert refused.status == 403 and "read-only" in refused.error
    assert served.request(f"/api/experiments/{NAME}/trials?format=csv").body == before


# ------------------------------------------------------------------------------ pages


def _chromium(url: str, profile: Path) -> tuple[str, str]:
    """--dump-dom of ``url`` after its scripts ran, and Chromium's console log."""
    proc = subprocess.run(
        [
            find_browser(), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--no-proxy-server", f"--user-data-dir={profile}", "--enable-logging=stderr",
            "--v=0", "--virtual-time-budget=8000", "--dump-dom", url,
        ],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout, proc.stderr


def _console_errors(log: str, allowed_source: str | None = None) -> list[str]:
    """Console lines about errors, CSP violations or blocked actions (but those of a page at
    ``allowed_source``: the hostile report, whose scripts the sandbox is expected to stop)."""
    return [
        line
        for line in log.splitlines()
        if "CONSOLE" in line
        and not (allowed_source and f"source: {allowed_source} " in line)
        and any(word in line for word in ("Uncaught", "violates", "blocked", "rror"))
    ]


@pytest.mark.slow
def test_pages_render_in_chromium(served: Server, tmp_path: Path) -> None:
    listing, log = _chromium(served.base + "/", tmp_path / "p1")
    assert not _console_errors(log), _console_errors(log)
    assert NAME in listing
    assert HOSTILE not in listing and "&lt;img src=x" in listing  # the verdict as text

    with storage.open(served.url, create=False) as store:
        hostile, real = (int(i) for i in store.reports(NAME)["id"])  # newest first
    page, log = _chromium(f"{served.base}/experiments/{NAME}", tmp_path / "p2")
    hostile_page = f"{served.base}/reports/{hostile}"
    assert not _console_errors(log, hostile_page), _console_errors(log, hostile_page)
    # The newest report (hostile markup) sits in the frame, where the sandbox stops its script.
    assert f"source: {hostile_page} " in log and "allow-modals" in log
    assert 'data-polled="' in page  # the live script ran under the CSP and read the JSON
    assert "<h1>served</h1>" in page and 'id="state">done<' in page
    assert "<script>alert(1)" not in page

    report, log = _chromium(f"{served.base}/reports/{real}", tmp_path / "p3")
    assert not _console_errors(log), _console_errors(log)
    assert report.count('class="main-svg"') >= 2  # plotly drew its figures in the sandbox

    trials, log = _chromium(
        f"{served.base}/experiments/{NAME}/trials?limit=4&sort=value", tmp_path / "p4"
    )
    assert not _console_errors(log), _console_errors(log)
    assert trials.count("<tr>") == 1 + 4 and "next →" in trials

    missing, _ = _chromium(f"{served.base}/experiments/nosuch", tmp_path / "p5")
    assert "404" in missing and "No experiment named" in missing


# ---------------------------------------------------------------------------- submitting


@pytest.mark.parametrize("backend", BACKENDS)
def test_submissions_need_the_token_and_a_valid_config(backend: str, tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("s3cret-token\n")
    with empty_url(backend, tmp_path) as url:
        server = start_server(url, "--token-file", str(token_file))
        try:
            good = tiny_config("submitted", epochs=2, n_trials=2, seeds=1, arms=("fixed",))
            toml = {"Content-Type": "application/toml"}
            auth = {**toml, "Authorization": "Bearer s3cret-token"}

            def post(body: bytes, headers: dict[str, str]) -> Answer:
                return server.request(
                    "/api/experiments", method="POST", body=body, headers=headers
                )

            assert post(good.encode(), toml).status == 401
            assert post(good.encode(), {**toml, "Authorization": "Bearer nope"}).status == 403
            assert post(good.encode(), {**auth, "Content-Type": "application/json"}).status == 415
            assert post(b"x" * (256 * 1024 + 1), auth).status == 413
            bad = good.replace("epochs = 2", "epochs = 0")
            answer = post(bad.encode(), auth)
            assert answer.status == 400 and "train.epochs" in answer.error
            assert post(b"[experiment\n", auth).status == 400
            assert server.request("/api/experiments").json()["experiments"] == []  # type: ignore[index]

            created = post(good.encode(), auth)
            assert created.status == 201 and created.json() == {
                "experiment": "submitted", "created": True, "url": "/experiments/submitted",
            }  # fmt: skip
            again = post(good.encode(), auth)
            assert again.status == 200 and again.json()["created"] is False  # type: ignore[index]
            (entry,) = server.request("/api/experiments").json()["experiments"]  # type: ignore[index]
            assert entry["name"] == "submitted" and entry["state"] == "searching"
            changed = post(good.replace("seed = 0", "seed = 1").encode(), auth)
            assert changed.status == 409 and "submitted" in changed.error  # the name is taken

            # Two agents run the submission to the end; the server shows it done, with its
            # verdict and report, and exact counts.
            agents = [
                subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "study",
                        "agent",
                        "--storage",
                        url,
                        "--once",
                        "--quiet",
                        "--poll",
                        "0.2",
                        "--index",
                        str(i),
                    ],
                    cwd=ROOT,
                    env=child_env(),
                    text=True,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                )
                for i in range(2)
            ]
            for agent in agents:
                code, _, err = finish(agent, 600)
                assert code == 0, err[-2000:]
            detail = server.request("/api/experiments/submitted").json()
            assert isinstance(detail, dict)
            assert detail["state"] == "done" and detail["results"] == detail["budget"] == 2
            assert detail["evaluations"] == detail["planned"] == 1
            assert detail["verdict"] and len(detail["reports"]) >= 1
        finally:
            stop_server(server)


def test_dynl2_submit(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    monkeypatch.setenv("DYNL2_SERVE_TOKEN", "tok")
    url = f"sqlite:///{tmp_path / 'store.db'}"
    server = start_server(url, DYNL2_SERVE_TOKEN="tok")
    try:
        path = write_tiny(tmp_path, "sent", epochs=2, n_trials=2, seeds=1, arms=("fixed",))
        assert main(["submit", str(path), "--server", server.base]) == 0
        assert (
            capsys.readouterr().out.strip()
            == f"experiment sent created: {server.base}/experiments/sent"
        )
        monkeypatch.setenv("DYNL2_SERVE_TOKEN", "wrong")
        assert main(["submit", str(path), "--server", server.base]) == 2
        err = capsys.readouterr().err.strip()
        assert err == "dynl2 submit: error: the bearer token is not this server's (HTTP 403)"
    finally:
        stop_server(server)


def test_serve_refuses_what_it_cannot_do_safely(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'none.db'}"
    cases = [
        (["--host", "0.0.0.0"], 2, "--host: 0.0.0.0 is not a loopback address"),
        (["--token-file", str(tmp_path / "missing")], 2, "--token-file: cannot read"),
        (["--port", "70000"], 2, "--port: expected a port from 0 to 65535, got '70000'"),
        ([], 1, "There is no dynl2 database at"),  # as every reading verb says it
    ]
    for flags, status, fragment in cases:
        code = main(["serve", "--storage", url, *flags])
        err = capsys.readouterr().err.strip()
        assert code == status and fragment in err and "\n" not in err, (flags, code, err)
    assert not (tmp_path / "none.db").exists()  # nothing written


def test_reads_are_computed_once_per_key_while_fresh() -> None:
    from study.service.reads import Reads

    calls: list[int] = []
    release = threading.Event()

    def compute() -> list[int]:
        calls.append(1)
        release.wait(30)
        return [len(calls)]

    reads = Reads(store=None, ttl=60.0)  # type: ignore[arg-type]
    answers: list[object] = []
    threads = [
        threading.Thread(target=lambda: answers.append(reads._cached(("k",), compute)))
        for _ in range(20)
    ]
    for t in threads:
        t.start()
    release.set()
    for t in threads:
        t.join(30)
    assert len(calls) == 1 and answers == [[1]] * 20  # one computation, shared
    assert reads._cached(("other",), compute) == [2]  # another key computes its own
    reads.forget()
    assert reads._cached(("k",), compute) == [3]  # forgotten: computed again
    stale = Reads(store=None, ttl=0.0)  # type: ignore[arg-type]
    assert stale._cached(("k",), compute) == [4] and stale._cached(("k",), compute) == [5]
