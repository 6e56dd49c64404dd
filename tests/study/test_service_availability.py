"""``dynl2 serve`` when the store is not what it should be, and the requests that test its
bounds (the service issue's items 6-10): real server processes on SQLite and PostgreSQL.

A stored config that is damaged or no longer validates leaves the rest listed, that one marked
unreadable with the reason (never a 400); a store dropped, closed to connections, moved away or
replaced under the server answers every endpoint 503 in one line, with no traceback in its log;
report ids past 64 bits and over-long names are a 404 or a 400 in one line; a name conflict on
submission is a 409; and the read cache keeps a bounded number of keys while it computes an
experiment's trials once per freshness window for every page, sort and arm asked of it.
"""

from __future__ import annotations

import gc
import json
import os
import subprocess
import threading
import tracemalloc
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

import storage
from study.cli.dispatch import main
from study.config.experiment import parse_experiment
from study.config.reader import parse_config_text
from study.run.queries import frame_csv, frame_json
from tests.reliability.helpers import wait_until
from tests.storage.backends import BACKENDS, empty_url, libpq_url, require_postgres
from tests.study.test_service import Answer, Server, start_server
from tests.tiny import tiny_config, write_tiny

GOOD = "good"
ARMS = ("fixed", "none")
TOKEN = "avail-token"
AUTH = {"Content-Type": "application/toml", "Authorization": f"Bearer {TOKEN}"}
MAX_LINE = 600  # characters an error line may have: it names the problem, never echoes a page


# --------------------------------------------------------------------------------- helpers


@dataclass
class Running:
    """A server whose stderr a thread drains (a server that logged tracebacks on a pipe
    nobody read would block on its writes), and the store it serves."""

    server: Server
    err: list[str]
    reader: threading.Thread

    def stop(self) -> str:
        """SIGTERM it; its whole stderr, checked to hold no traceback."""
        proc = self.server.proc
        assert proc.poll() is None, f"the server had stopped: {proc.returncode}"
        proc.terminate()
        try:  # not communicate(): the thread reads stderr, and it alone
            code = proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            code = proc.wait(30)
        self.reader.join(30)
        err = "".join(self.err)
        assert code == 143, err[-3000:]
        assert "Traceback" not in err, err[-3000:]
        assert err.strip().splitlines()[-1] == "dynl2 serve: terminated (SIGTERM)", err[-3000:]
        return err


def serve(url: str, *extra: str) -> Running:
    server = start_server(url, *extra)
    assert server.proc.stderr is not None
    err: list[str] = []
    reader = threading.Thread(target=lambda: err.extend(server.proc.stderr), daemon=True)  # type: ignore[arg-type]
    reader.start()
    return Running(server, err, reader)


def one_line(answer: Answer, path: str) -> str:
    """The answer's one line: ``{"error": ...}`` under /api and /healthz, a page's message
    elsewhere."""
    if path.startswith(("/api/", "/healthz")):
        assert answer.headers["content-type"].startswith("application/json"), answer.headers
        line = answer.error
    else:
        assert answer.headers["content-type"].startswith("text/html"), answer.headers
        page = answer.body.decode()
        assert "Traceback" not in page
        start = page.index('<p class="error">') + len('<p class="error">')
        line = page[start : page.index("</p>", start)]
        assert line and "\n" not in line
    assert len(line) <= MAX_LINE, line[:2000]
    return line


def write_config(store: storage.Store, name: str, *, n_trials: int = 3) -> dict[str, Any]:
    """Store experiment ``name`` (the tiny study, not run): what the config's TOML says."""
    text = tiny_config(name, epochs=1, n_trials=n_trials, seeds=1, arms=ARMS)
    config = parse_experiment(parse_config_text(text, name))
    store.create_experiment(name, config.to_dict())
    return config.to_dict()


def set_config_text(url: str, name: str, text: str) -> None:
    """Overwrite the stored config text of ``name`` with SQL, as a hand edit would."""
    engine = sa.create_engine(url, poolclass=sa.NullPool)
    try:
        with engine.begin() as connection:
            done = connection.execute(
                sa.text("UPDATE dynl2_experiments SET config = :c WHERE name = :n"),
                {"c": text, "n": name},
            )
            assert done.rowcount == 1
    finally:
        engine.dispose()


# How a stored config is damaged, and what the reason given for it says.
def _invalid(config: dict[str, Any]) -> str:
    config["train"]["epochs"] = 0  # valid JSON, no longer a valid config
    return json.dumps(config)


def _truncated(config: dict[str, Any]) -> str:
    return json.dumps(config)[:40]  # a write cut off: not JSON


def _someone_elses(config: dict[str, Any]) -> str:
    return json.dumps({**config, "experiment": {"name": "someone-else", "seed": 0}})


DAMAGES: dict[str, tuple[Callable[[dict[str, Any]], str], str]] = {
    "invalid": (_invalid, "train.epochs"),
    "truncated": (_truncated, "not valid JSON"),
    "someone-elses": (_someone_elses, "not an experiment's config"),
}


@pytest.fixture(scope="module", params=BACKENDS)
def damaged(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Running]:
    """A store with one experiment run to the end (``good``) and one experiment of each kind
    of damage, named for it, served with a token."""
    directory = tmp_path_factory.mktemp(f"avail-{request.param}")
    token_file = directory / "token"
    token_file.write_text(TOKEN)
    with empty_url(request.param, directory) as url:
        config = write_tiny(directory, GOOD, epochs=1, n_trials=3, seeds=1, arms=ARMS)
        with pytest.MonkeyPatch.context() as patch:
            patch.chdir(directory)  # the report goes to ./dynl2-workspace/reports/
            assert main(["run", str(config), "--storage", url, "--quiet"]) == 0
        with storage.open(url) as store:
            stored = {name: write_config(store, name) for name in DAMAGES}
        for name, (damage, _) in DAMAGES.items():
            set_config_text(url, name, damage(stored[name]))
        running = serve(url, "--token-file", str(token_file))
        try:
            yield running
        finally:
            running.stop()


# ------------------------------------------------------------------- 7: unreadable configs


@pytest.mark.parametrize("kind", DAMAGES)
def test_the_overview_lists_the_rest_and_marks_the_unreadable_one(
    damaged: Running, kind: str
) -> None:
    _, reason = DAMAGES[kind]
    listing = damaged.server.request("/api/experiments")
    assert listing.status == 200, listing.body[:2000]
    entries = {e["name"]: e for e in listing.json()["experiments"]}  # type: ignore[index]
    assert set(entries) == {GOOD, *DAMAGES}
    good = entries[GOOD]
    assert good["state"] == "done" and good["unreadable"] is None
    assert good["results"] == good["budget"] > 0 and good["verdict"]
    entry = entries[kind]
    assert entry["state"] == "unreadable" and entry["created"]
    assert isinstance(entry["unreadable"], str) and "\n" not in entry["unreadable"]
    assert reason in entry["unreadable"]  # the entry is the experiment's: its name is there

    page = damaged.server.request("/")
    assert page.status == 200, page.body[:2000]
    row = page.body.decode().split(f'data-experiment="{kind}"')[1].split("</tr>")[0]
    assert "unreadable" in row and reason.replace("'", "&#39;") in row


def test_the_server_is_healthy_beside_unreadable_experiments(damaged: Running) -> None:
    health = damaged.server.request("/healthz")
    assert health.status == 200 and health.json()["status"] == "ok"  # type: ignore[index]


@pytest.mark.parametrize("kind", DAMAGES)
@pytest.mark.parametrize(
    "path",
    [
        "/api/experiments/{}",
        "/experiments/{}",
        "/api/experiments/{}/trials",
        "/experiments/{}/trials",
        "/api/experiments/{}/reports",
    ],
)
def test_an_unreadable_experiment_is_never_a_bad_request(
    damaged: Running, kind: str, path: str
) -> None:
    """The request is fine; the store cannot give what it asks: a 503 naming the experiment
    and the reason, in one line."""
    _, reason = DAMAGES[kind]
    answer = damaged.server.request(path.format(kind))
    assert answer.status == 503, answer.body[:2000]
    line = one_line(answer, path)
    if not path.startswith("/api/"):
        line = line.replace("&#39;", "'")
    assert kind in line and reason in line, line


# ------------------------------------------------------------------------- 9: bounded ids

HUGE = "9" * 5000


@pytest.mark.parametrize(
    ("path", "status", "fragment"),
    [
        ("/reports/99999999999999999999", 404, "No report with id 99999999999999999999 "),
        ("/api/reports/99999999999999999999", 404, "No report with id 99999999999999999999 "),
        ("/api/reports/9223372036854775808", 404, "No report with id 9223372036854775808 "),
        ("/api/reports/18446744073709551616", 404, "No report with id 18446744073709551616 "),
        ("/api/reports/0", 404, "No report with id 0 "),
        (f"/api/reports/{HUGE}", 404, "No report with id 99999"),
        (f"/reports/{HUGE}", 404, "No report with id 99999"),
        ("/api/experiments/" + "a" * 65, 400, "an experiment name is 1 to 64"),
        ("/api/experiments/" + "a" * 5000, 400, "an experiment name is 1 to 64"),
        ("/experiments/" + "a" * 5000, 400, "an experiment name is 1 to 64"),
        ("/api/experiments/" + "a" * 5000 + "/trials", 400, "an experiment name is 1 to 64"),
        ("/api/experiments/%FF%FE", 400, "an experiment name is 1 to 64"),
        ("/api/experiments/a%00b", 400, "an experiment name is 1 to 64"),
        (f"/api/experiments/{GOOD}/trials?arm=" + "x" * 5000, 400, "arm: no arm 'xxx"),
        (f"/api/experiments/{GOOD}/trials?sort=" + "x" * 5000, 400, "sort: no column 'xxx"),
        (f"/api/experiments/{GOOD}/trials?order=" + "x" * 5000, 400, "order: expected one of"),
        (f"/api/experiments/{GOOD}/trials?format=" + "x" * 5000, 400, "format: expected one"),
        (f"/api/experiments/{GOOD}/trials?{'x' * 5000}=1", 400, "unknown parameter"),
        (f"/api/experiments/{GOOD}/trials?offset=" + "9" * 5000, 400, "offset: expected"),
        ("/api/reports/abc", 404, "no such address: /api/reports/abc"),
        ("/api/reports/" + "x" * 5000, 404, "no such address: /api/reports/xxx"),
        ("/api/" + "x" * 5000, 404, "no such address: /api/xxx"),
        ("/" + "x" * 5000, 404, "no such address: /xxx"),
    ],
    ids=lambda value: value[:40] if isinstance(value, str) else str(value),
)
def test_path_parameters_are_bounded(
    damaged: Running, path: str, status: int, fragment: str
) -> None:
    answer = damaged.server.request(path)
    assert answer.status == status, answer.body[:2000]
    line = one_line(answer, path)
    assert fragment in line.replace("&#39;", "'"), line


def test_a_report_past_64_bits_is_the_same_404_as_an_unknown_one(damaged: Running) -> None:
    unknown = damaged.server.request("/api/reports/999999").error
    huge = damaged.server.request("/api/reports/99999999999999999999").error
    assert huge == unknown.replace("999999", "99999999999999999999")


# ------------------------------------------------------------------------- 10: conflicts


def post(running: Running, text: str) -> Answer:
    return running.server.request(
        "/api/experiments", method="POST", body=text.encode(), headers=AUTH
    )


STORED = tiny_config(GOOD, epochs=1, n_trials=3, seeds=1, arms=ARMS)
CONFLICTS = {
    "more trials": STORED.replace("n_trials = 3", "n_trials = 4"),
    "an arm fewer": tiny_config(GOOD, epochs=1, n_trials=3, seeds=1, arms=ARMS[:1]),
    "another seed": STORED.replace("seed = 0", "seed = 7"),
}


@pytest.mark.parametrize("conflict", CONFLICTS)
def test_a_name_conflict_is_409(damaged: Running, conflict: str) -> None:
    assert CONFLICTS[conflict] != STORED
    answer = post(damaged, CONFLICTS[conflict])
    assert answer.status == 409, answer.body[:2000]
    assert "already exists with a different config" in answer.error and GOOD in answer.error
    same = post(damaged, STORED)  # the stored config itself resumes
    assert same.status == 200 and same.json()["created"] is False  # type: ignore[index]


@pytest.mark.parametrize("kind", DAMAGES)
def test_submitting_over_an_unreadable_experiment_is_no_bad_request(
    damaged: Running, kind: str
) -> None:
    """The store cannot say whether it is the same experiment: a 503 naming it, as a read."""
    _, reason = DAMAGES[kind]
    answer = post(damaged, tiny_config(kind, epochs=1, n_trials=3, seeds=1, arms=ARMS))
    assert answer.status == 503, answer.body[:2000]
    assert kind in answer.error and reason in answer.error


def test_a_bad_submission_is_still_a_bad_request(damaged: Running) -> None:
    text = tiny_config("fresh", epochs=1, n_trials=3, seeds=1, arms=ARMS)
    answer = post(damaged, text.replace("epochs = 1", "epochs = 0"))
    assert answer.status == 400 and "train.epochs" in answer.error


# --------------------------------------------------------------------- 8: a store that goes


def _drop_postgres(url: str) -> None:
    """DROP DATABASE ... WITH (FORCE) through an admin connection: the server's sessions are
    ended and its database is gone."""
    name = make_url(url).database
    with psycopg.connect(libpq_url(require_postgres()), autocommit=True) as admin:
        admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


def _refuse_postgres(url: str) -> None:
    """The database takes no connections and the server's are ended: unreachable, as behind
    a network that went down (waits until PostgreSQL lists none of them any more)."""
    name = make_url(url).database
    with psycopg.connect(libpq_url(require_postgres()), autocommit=True) as admin:
        admin.execute(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS false')
        sessions = "FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()"
        admin.execute(f"SELECT pg_terminate_backend(pid) {sessions}", (name,))

        def ended() -> bool:
            found = admin.execute(f"SELECT count(*) {sessions}", (name,)).fetchone()
            return found is not None and found[0] == 0

        wait_until(ended, 30, f"the sessions on {name} to end")


def _move_sqlite(url: str) -> None:
    path = storage.sqlite_path(url)
    assert path is not None
    os.replace(path, path.with_name("moved-away.db"))


def _replace_sqlite(url: str) -> None:
    path = storage.sqlite_path(url)
    assert path is not None
    other = path.with_name("other.db")
    storage.open(f"sqlite:///{other}").close()  # another store, empty
    os.replace(other, path)


FAILURES: dict[str, tuple[str, Callable[[str], None]]] = {
    "dropped": ("postgresql", _drop_postgres),
    "refused": ("postgresql", _refuse_postgres),
    "moved": ("sqlite", _move_sqlite),
    "replaced": ("sqlite", _replace_sqlite),
}

ENDPOINTS = [
    "/",
    "/api/experiments",
    "/healthz",
    f"/api/experiments/{GOOD}",
    f"/experiments/{GOOD}",
    f"/api/experiments/{GOOD}/trials",
    f"/api/experiments/{GOOD}/trials?format=csv&sort=value",
    f"/experiments/{GOOD}/trials",
    f"/api/experiments/{GOOD}/reports",
    "/api/reports/{report}",
    "/reports/{report}",
    "POST /api/experiments",
]


@dataclass
class Gone:
    running: Running
    report: int


@pytest.fixture(scope="module", params=FAILURES)
def gone(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Gone]:
    """A store with an experiment and a report, served (with a token) and read once, then
    taken away from under the server."""
    backend, take_away = FAILURES[request.param]
    directory = tmp_path_factory.mktemp(f"gone-{request.param}")
    token_file = directory / "token"
    token_file.write_text(TOKEN)
    with empty_url(backend, directory) as url:
        with storage.open(url) as store:
            write_config(store, GOOD)
            report = store.record_report(GOOD, "r.html", {"sentence": "fine"}, "<p>fine</p>")
        running = serve(url, "--token-file", str(token_file))
        try:
            for path in ENDPOINTS:  # every endpoint has run once: the pools hold connections
                method, _, path = path.rpartition(" ")
                if not method:
                    answer = running.server.request(path.format(report=report))
                    assert answer.status == 200, (path, answer.body[:2000])
            resumed = post(running, STORED)
            assert resumed.status == 200, resumed.body[:2000]
            take_away(url)
            yield Gone(running, report)
        finally:
            running.stop()


def _ask(gone: Gone, endpoint: str) -> tuple[str, Answer]:
    method, _, path = endpoint.rpartition(" ")
    path = path.format(report=gone.report)
    if method == "POST":
        text = tiny_config("another", epochs=1, n_trials=2, seeds=1, arms=ARMS)
        body = text.encode()
        return path, gone.running.server.request(path, method="POST", body=body, headers=AUTH)
    return path, gone.running.server.request(path)


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_a_store_gone_is_503_in_one_line(gone: Gone, endpoint: str) -> None:
    path, answer = _ask(gone, endpoint)
    assert answer.status == 503, answer.body[:3000]
    assert one_line(answer, path)


def test_a_store_gone_leaves_no_traceback_in_the_log(gone: Gone) -> None:
    for endpoint in ENDPOINTS:  # each asked here too, whichever tests ran on this server
        for _ in range(2):
            path, answer = _ask(gone, endpoint)
            assert answer.status == 503, (path, answer.body[:3000])
    log = "".join(gone.running.err)
    assert "Traceback" not in log and "OperationalError" not in log, log[-3000:]


# --------------------------------------------------------------------------- 6: the cache


class Counting:
    """A store that counts the trials reads asked of it."""

    def __init__(self, store: storage.Store) -> None:
        self.store = store
        self.trial_reads = 0

    def trials(self, *args: Any, **kwargs: Any) -> Any:
        self.trial_reads += 1
        return self.store.trials(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)


QUERIES = [
    {"offset": 0, "limit": 2},
    {"offset": 2, "limit": 2},
    {"offset": 4, "limit": 100},
    {"offset": 0, "limit": None},
    {"offset": 1, "limit": 3, "sort": "value", "order": "desc"},
    {"offset": 0, "limit": 5, "sort": "value", "order": "asc"},
    {"offset": 0, "limit": 5, "sort": "number"},
    {"offset": 0, "limit": 2, "arm": "fixed"},
    {"offset": 1, "limit": 2, "arm": "fixed", "sort": "value"},
    {"offset": 0, "limit": 100, "arm": "none", "sort": "value", "order": "desc"},
]


def test_the_trials_are_read_once_for_every_page_sort_and_arm(damaged: Running) -> None:
    """Ten requests that differ in page, sort and arm (each its own key before) cost one
    computation of the experiment's trials, and get what each computed on its own would."""
    from study.service.data import experiment_trials, trials_page_of
    from study.service.reads import Reads

    with storage.open(damaged.server.url, read_only=True) as store:
        counting = Counting(store)
        reads = Reads(counting, ttl=600.0)  # type: ignore[arg-type]
        once = 0  # the trials reads of one computation of the experiment's trials
        for query in QUERIES:
            page = reads.trials(GOOD, **{"sort": None, "order": "asc", "arm": None, **query})
            once = once or counting.trial_reads
            expected = trials_page_of(experiment_trials(store, GOOD), **query)  # type: ignore[arg-type]
            assert page.total == expected.total and page.offset == expected.offset
            assert frame_json(page.frame) == frame_json(expected.frame), query
            assert frame_csv(page.frame) == frame_csv(expected.frame), query
        assert once > 0 and counting.trial_reads == once  # shared by ten distinct requests
        reads.forget()  # a new freshness window: read again, once
        for query in QUERIES:
            reads.trials(GOOD, **{"sort": None, "order": "asc", "arm": None, **query})
        assert counting.trial_reads == 2 * once


@pytest.mark.parametrize("bad", [{"arm": "ghost"}, {"sort": "nope"}, {"order": "up"}])
def test_bad_trial_queries_are_refused_from_the_shared_frame(
    damaged: Running, bad: dict[str, str]
) -> None:
    from study.errors import UsageError
    from study.service.reads import Reads

    with storage.open(damaged.server.url, read_only=True) as store:
        reads = Reads(store, ttl=600.0)
        options: dict[str, Any] = {"offset": 0, "limit": 10, "sort": None, "order": "asc"}
        with pytest.raises(UsageError, match=next(iter(bad))):
            reads.trials(GOOD, **{**options, "arm": None, **bad})


def _held(reads: object, keys: range) -> int:
    """Bytes ``reads`` holds after answering ``keys`` once each."""
    from study.service.reads import Reads

    assert isinstance(reads, Reads)
    for key in keys:
        reads._cached(("trials", "x", key), lambda key=key: key)  # type: ignore[misc]
    gc.collect()
    return tracemalloc.get_traced_memory()[0]


def test_the_cache_keeps_a_bounded_number_of_keys() -> None:
    """8,000 distinct queries (``?offset=`` of every value) leave it holding no more than
    1,000 did: at most MAX_CACHED keys, their locks included."""
    from study.service.reads import MAX_CACHED, Reads

    reads = Reads(store=None, ttl=600.0)  # type: ignore[arg-type]
    tracemalloc.start()
    try:
        before = _held(reads, range(1_000))
        after = _held(reads, range(1_000, 9_000))
    finally:
        tracemalloc.stop()
    assert after - before < 64 * 1024, after - before  # one lock a key kept: +1.7 MB
    assert MAX_CACHED <= 1_000
    # The newest keys are the ones kept: asking for the last again computes nothing.
    again = reads._cached(("trials", "x", 8_999), lambda: "computed")
    assert again == 8_999
    oldest = reads._cached(("trials", "x", 0), lambda: "computed")
    assert oldest == "computed"
