"""Issue 6, item 3: the database goes away while workers train (PostgreSQL behind a relay whose
port is closed for a few seconds: every connection dropped, new ones refused). Workers wait with
backoff and carry on; a database gone for longer than the patience ends a worker with one line
and exit status 1, and the trial it held is retried by the next worker."""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Iterator
from typing import IO

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from study.config.experiment import load_experiment
from study.search.keys import Heartbeat
from tests.storage.backends import require_postgres, scratch_postgres_database

from .helpers import (
    ARMS,
    assert_exact_results,
    create_experiment,
    early_in_flight,
    finish,
    start_worker,
    trials,
    wait_until,
    whole,
    write_config,
)
from .proxy import PortProxy

pytestmark = [pytest.mark.reliability, pytest.mark.slow]


@pytest.fixture
def postgres() -> Iterator[tuple[str, PortProxy, str]]:
    """(direct URL, relay, URL through the relay) of a scratch database."""
    server = require_postgres()
    with scratch_postgres_database(server) as url:
        parsed = make_url(url)
        with PortProxy(parsed.host or "127.0.0.1", parsed.port or 5432) as proxy:
            relayed = parsed.set(host="127.0.0.1", port=proxy.port)
            yield url, proxy, relayed.render_as_string(hide_password=False)


class Streams:
    """What a process writes to stdout and stderr, read as it comes (two threads), so a test
    can wait for a line while the process runs."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc = proc
        self.out: list[str] = []
        self.err: list[str] = []
        self._threads = [
            threading.Thread(target=self._read, args=(stream, lines), daemon=True)
            for stream, lines in ((proc.stdout, self.out), (proc.stderr, self.err))
        ]
        for thread in self._threads:
            thread.start()

    @staticmethod
    def _read(stream: IO[str] | None, lines: list[str]) -> None:
        assert stream is not None
        for line in stream:
            lines.append(line)

    def said(self, text: str) -> bool:
        if self.proc.poll() is not None:
            pytest.fail(f"the worker ended early: {''.join(self.err)}")
        return any(text in line for line in self.err)

    def finish(self, timeout: float) -> tuple[int, str, str]:
        code = self.proc.wait(timeout)
        for thread in self._threads:
            thread.join(timeout)
        return code, "".join(self.out), "".join(self.err)


def _connected(url: str, names: set[str]) -> bool:
    """Every application name of ``names`` has a session on the server (``$PGAPPNAME``)."""
    engine = sa.create_engine(url, poolclass=sa.NullPool)
    try:
        with engine.connect() as connection:
            query = sa.text("SELECT DISTINCT application_name FROM pg_stat_activity")
            return names <= set(connection.execute(query).scalars())
    finally:
        engine.dispose()


def test_workers_ride_out_a_database_outage(postgres, tmp_path):
    """Two workers start while the database is away (each says so and waits), then, once both
    are connected and a trial is early in flight, every connection is dropped and new ones
    refused for 4 s. Both carry on: the trials in flight finish, none is lost or counted
    twice."""
    url, proxy, relayed = postgres
    epochs, n_trials = 400, 2  # a trial trains for seconds
    config = write_config(tmp_path, "outage", epochs=epochs, n_trials=n_trials)
    searched = load_experiment(config).searched
    # Grace 15 s: longer than the outage plus the longest backoff, so a trial in flight
    # during the outage keeps its heartbeat alive and must finish (none lost).
    create_experiment(url, config, Heartbeat(1, 15))
    env = {"DYNL2_HEARTBEAT": "1,15", "DYNL2_DB_PATIENCE": "600"}
    names = {f"dynl2-outage-{i}" for i in range(2)}
    proxy.cut()  # away before the workers start: their first connection waits for it
    workers = [
        Streams(start_worker("outage", relayed, i, quiet=False, PGAPPNAME=f"dynl2-outage-{i}",
                             **env))
        for i in range(2)
    ]  # fmt: skip
    for worker in workers:
        wait_until(lambda w=worker: w.said("did not answer while connecting"), 600, "a retry")
    proxy.restore()
    assert {len(searched(arm)) for arm in ARMS} == {2}  # lr and the arm's strength
    wait_until(
        lambda: early_in_flight(url, 2, epochs) >= 1 and _connected(url, names),
        600,
        "both workers connected and a trial early in flight",
    )
    dropped = proxy.cut()
    before = trials(url, "outage")  # read directly, not through the relay
    in_flight = set(
        before.loc[(before["state"] == "RUNNING") & whole(before, searched), "trial_id"]
    )
    assert dropped >= 2  # each worker had at least one connection through the relay
    time.sleep(4)  # the outage's length, not a wait for a state
    proxy.restore()
    for worker in workers:
        code, out, err = worker.finish(600)
        assert code == 0, err
        assert "Traceback" not in err, err
        assert "the database answers again" in err, err
        assert "dynl2 worker: done" in out
    frame = assert_exact_results(url, "outage", n_trials, epochs)
    state = frame.set_index("trial_id")["state"]
    assert in_flight and all(state[t] == "COMPLETE" for t in in_flight)  # they carried on
    # A claim cut off halfway (a trial created, its parameters not yet written) leaves that
    # trial to fail and be retried like a dead worker's; nothing else may fail.
    failed = frame[frame["state"] == "FAIL"]
    assert not (set(failed["trial_id"]) & in_flight)
    assert not whole(failed, searched).any(), failed


def test_a_database_gone_for_good_ends_the_worker_with_one_line(postgres, tmp_path):
    url, proxy, relayed = postgres
    epochs = 20
    config = write_config(tmp_path, "gone", epochs=epochs, n_trials=1)
    create_experiment(url, config, Heartbeat(1, 2))
    env = {"DYNL2_HEARTBEAT": "1,2", "DYNL2_DB_PATIENCE": "3"}
    worker = start_worker("gone", relayed, 0, **env)
    wait_until(lambda: (trials(url, "gone")["state"] == "RUNNING").any(), 60, "a trial")
    proxy.cut()
    started = time.monotonic()
    code, _, err = finish(worker, 60)
    waited = time.monotonic() - started
    assert code == 1, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("dynl2 worker: failed: the database did not answer for")
    assert "DYNL2_DB_PATIENCE=3" in lines[0]
    assert waited >= 3  # it did wait (the patience), and then stopped

    # The trial it held went stale; the next worker retries it and finishes the budget.
    rescuer = start_worker("gone", url, 1, **env)
    code, _, err = finish(rescuer, 120)
    assert code == 0, err
    frame = assert_exact_results(url, "gone", 1, epochs)
    assert (frame["state"] == "FAIL").sum() >= 1  # the abandoned trial, not counted
