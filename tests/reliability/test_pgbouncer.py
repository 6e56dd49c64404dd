"""dynl2 through PgBouncer in transaction pooling mode (``$DYNL2_PGBOUNCER=1``): a run with two
workers ends with exact trial counts, ``dynl2 status`` and ``dynl2 report`` work, and the named
lock holds across server connections and dies with its holder (docs/connections.md).

Skipped when pgbouncer is not installed, unless ``DYNL2_REQUIRE_PGBOUNCER=1`` (CI): then it
fails."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import sqlalchemy as sa

from storage import make_engine
from storage.locks import named_lock, try_named_lock
from tests.storage.backends import libpq_url, require_postgres, scratch_postgres_database

from .helpers import ARMS, assert_exact_results, finish, spawn, wait_until, write_config
from .pgbouncer import PgBouncer, pgbouncer_path

pytestmark = [pytest.mark.reliability, pytest.mark.slow]

REQUIRE_ENV = "DYNL2_REQUIRE_PGBOUNCER"
POOL = 4  # PgBouncer's server connections: the most one dynl2 process needs at once


@pytest.fixture
def bounced(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, str, PgBouncer]]:
    """(direct URL, URL through PgBouncer, PgBouncer) of a scratch database."""
    if pgbouncer_path() is None:
        if os.environ.get(REQUIRE_ENV) == "1":
            pytest.fail(f"{REQUIRE_ENV}=1 but pgbouncer is not installed (apt install pgbouncer)")
        pytest.skip("pgbouncer is not installed")
    server = require_postgres()
    parsed = sa.make_url(server)
    with (
        scratch_postgres_database(server) as url,
        PgBouncer(parsed.host or "127.0.0.1", parsed.port or 5432, pool_size=POOL) as bouncer,
    ):
        monkeypatch.setenv("DYNL2_PGBOUNCER", "1")
        yield url, bouncer.url(url), bouncer


def test_a_run_with_two_workers_through_pgbouncer(bounced, tmp_path: Path):
    url, through, bouncer = bounced
    epochs, n_trials = 3, 2
    config = write_config(tmp_path, "bounced", epochs=epochs, n_trials=n_trials)
    env = {"DYNL2_STORAGE": through, "DYNL2_PGBOUNCER": "1"}
    run = spawn(["run", str(config), "--workers", "2", "--quiet"], **env)
    code, _, err = finish(run, 600)
    assert code == 0, err + bouncer.log()[-3000:]
    assert "Traceback" not in err, err
    assert_exact_results(url, "bounced", n_trials, epochs, ARMS)

    status = spawn(["status", "bounced"], **env)
    code, out, err = finish(status, 120)
    assert code == 0, err
    assert all(f"{n_trials} done ({n_trials} complete" in out for _ in ARMS), out
    report = tmp_path / "report.html"
    made = spawn(["report", "bounced", "-o", str(report)], **env)
    code, out, err = finish(made, 300)
    assert code == 0, err
    assert report.is_file() and str(report) in out


def test_the_named_lock_through_pgbouncer(bounced):
    """Two processes' connections share PgBouncer's few server connections: a lock taken on
    one must still exclude the other, be released by its holder, and die with a holder that
    vanishes mid-hold (a session lock would stay on the pooled server connection)."""
    _, through, _ = bounced
    first, second = (make_engine(through), make_engine(through))
    try:
        with (
            named_lock(through, first, "claim:x"),
            try_named_lock(through, second, "claim:x") as got,
        ):
            assert got is False
        with try_named_lock(through, second, "claim:x") as got:
            assert got is True  # released with its transaction
        # A holder that vanishes: its transaction (and the lock) ends with its connection.
        holder = psycopg.connect(libpq_url(through), prepare_threshold=None)
        holder.execute("SELECT pg_advisory_xact_lock(%s)", [_key("claim:y")])
        with try_named_lock(through, second, "claim:y") as got:
            assert got is False
        holder.close()

        def free() -> bool:
            with try_named_lock(through, second, "claim:y") as got:
                return got

        wait_until(free, 60, "the lock of a holder that vanished to be free")
    finally:
        first.dispose()
        second.dispose()


def _key(name: str) -> int:
    from storage.locks import _key as key

    return key(name)
