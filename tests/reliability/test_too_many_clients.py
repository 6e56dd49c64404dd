"""A PostgreSQL server that refuses connections for want of slots ("too many connections", SQLSTATE
53300) is an outage, not a failure: a worker started while every slot is taken waits under
``$DYNL2_DB_PATIENCE``, says so, and once slots free up trains the experiment to exact counts.

The slots are a login's ``CONNECTION LIMIT`` (superusers pass every limit, so the store belongs
to a role of the test's own), filled with connections the test holds."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import sqlalchemy as sa
from psycopg import sql

from storage.engine import PROCESS_CONNECTIONS
from study.search.keys import Heartbeat
from study.search.resilience import is_transient, slots_full
from tests.storage.backends import libpq_url, require_postgres, scratch_postgres_database

from .helpers import (
    ARMS,
    TEST_ROLE_PREFIX,
    assert_exact_results,
    create_experiment,
    start_worker,
    wait_until,
    write_config,
)

pytestmark = [pytest.mark.reliability, pytest.mark.slow]

# The role's connection limit, all held by the test while the worker starts: a worker's whole
# budget, so that once the test lets go the worker has the slots it needs.
SLOTS = PROCESS_CONNECTIONS


@pytest.fixture
def limited() -> Iterator[tuple[str, str]]:
    """(superuser URL, URL of a role owning the database) of a scratch database."""
    server = require_postgres()
    role = f"{TEST_ROLE_PREFIX}{uuid.uuid4().hex[:10]}"
    with psycopg.connect(libpq_url(server), autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE ROLE {} LOGIN NOSUPERUSER").format(sql.Identifier(role)))
    try:
        with scratch_postgres_database(server) as url:
            with psycopg.connect(libpq_url(url), autocommit=True) as admin:
                database = sql.Identifier(sa.make_url(url).database or "")
                admin.execute(
                    sql.SQL("ALTER DATABASE {} OWNER TO {}").format(database, sql.Identifier(role))
                )
            yield url, sa.make_url(url).set(username=role).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(libpq_url(server), autocommit=True) as admin:
            admin.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))


def _limit(url: str, role_url: str, slots: int) -> None:
    role = sql.Identifier(sa.make_url(role_url).username or "")
    with psycopg.connect(libpq_url(url), autocommit=True) as admin:
        admin.execute(sql.SQL("ALTER ROLE {} CONNECTION LIMIT {}").format(role, slots))


@pytest.mark.parametrize(
    "message",
    [
        "sorry, too many clients already",
        'too many connections for role "r"',
        'too many connections for database "d"',
        "remaining connection slots are reserved for non-replication superuser connections",
    ],
)
def test_a_refusal_for_want_of_slots_is_an_outage(message):
    refusal = sa.exc.OperationalError("connect", {}, psycopg.OperationalError(message))
    assert is_transient(refusal) and slots_full(refusal)
    other = sa.exc.OperationalError("connect", {}, psycopg.OperationalError("server closed"))
    assert is_transient(other) and not slots_full(other)
    assert is_transient(sa.exc.TimeoutError("QueuePool limit of size 2 overflow 0 reached"))


def test_a_worker_refused_for_want_of_slots_waits_then_finishes(limited, tmp_path: Path):
    url, role_url = limited
    epochs, n_trials = 3, 2
    config = write_config(tmp_path, "slots", epochs=epochs, n_trials=n_trials)
    create_experiment(role_url, config, Heartbeat(1, 15))
    _limit(url, role_url, SLOTS)
    held = [psycopg.connect(libpq_url(role_url)) for _ in range(SLOTS)]
    try:
        with pytest.raises(psycopg.OperationalError, match="too many connections"):
            psycopg.connect(libpq_url(role_url)).close()  # the slots are all taken
        worker = start_worker(
            "slots", role_url, 0, quiet=False, DYNL2_HEARTBEAT="1,15", DYNL2_DB_PATIENCE="600"
        )
        err: list[str] = []
        reader = threading.Thread(
            target=lambda: err.extend(worker.stderr or ()), daemon=True
        )  # stderr as it comes: the worker's refusal is a state to wait for, not a delay
        reader.start()

        def refused() -> bool:
            if worker.poll() is not None:
                pytest.fail(f"the worker ended while refused: {''.join(err)}")
            return any("had no connection free" in line for line in err)

        wait_until(refused, 300, "the worker to say it was refused a connection")
        assert any("too many connections" in line for line in err), err
    finally:
        for connection in held:
            connection.close()
    code = worker.wait(600)  # an upper bound on a hang; the reader drains stderr meanwhile
    out = worker.stdout.read() if worker.stdout else ""
    reader.join(60)
    said = "".join(err)
    assert code == 0, said
    assert "Traceback" not in said, said
    assert "the database answers again" in said, said
    assert "dynl2 worker: done" in out
    assert_exact_results(url, "slots", n_trials, epochs, ARMS)
