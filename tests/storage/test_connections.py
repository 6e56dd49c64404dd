"""The connection budget of docs/connections.md: every dynl2 connection to PostgreSQL names its
process (``application_name``), and no process holds more than
:data:`storage.engine.PROCESS_CONNECTIONS`, counted in ``pg_stat_activity`` while a run with
three worker processes trains."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
import sqlalchemy as sa

import storage
from storage.engine import (
    PGBOUNCER_ENV,
    PROCESS_CONNECTIONS,
    application_name,
    engine_kwargs,
    pool_kwargs,
    set_process_kind,
)
from tests.tiny import write_tiny

ROOT = Path(__file__).resolve().parents[2]
ARMS = ("dynamic", "fixed")

_BY_PROCESS = sa.text(
    "SELECT application_name, count(*) FROM pg_stat_activity "
    "WHERE datname = current_database() AND application_name LIKE 'dynl2 %' "
    "GROUP BY application_name"
)
_RUNNING = sa.text("SELECT count(*) FROM trials WHERE state = 'RUNNING'")


def test_application_name_names_the_process_without_secrets(monkeypatch):
    monkeypatch.delenv("PGAPPNAME", raising=False)
    set_process_kind("serve")
    try:
        name = application_name()
        assert name.startswith("dynl2 serve ") and name.endswith(f":{os.getpid()}")
        assert len(name.encode()) <= 63
        url = "postgresql+psycopg://u:secret@h/db"
        assert engine_kwargs(url)["connect_args"]["application_name"] == name
        assert "secret" not in name
    finally:
        set_process_kind(None)
    # The user's own name wins: in the URL, or libpq's $PGAPPNAME.
    assert "application_name" not in engine_kwargs(url + "?application_name=mine")["connect_args"]
    monkeypatch.setenv("PGAPPNAME", "mine")
    assert "application_name" not in engine_kwargs(url)["connect_args"]


def test_pgbouncer_mode_keeps_nothing_beyond_a_transaction(monkeypatch):
    url = "postgresql+psycopg://u@h/db"
    monkeypatch.delenv(PGBOUNCER_ENV, raising=False)
    direct = engine_kwargs(url, read_only=True)
    assert "prepare_threshold" not in direct["connect_args"]
    assert "default_transaction_read_only" in direct["connect_args"]["options"]
    monkeypatch.setenv(PGBOUNCER_ENV, "1")
    pooled = engine_kwargs(url, read_only=True)
    assert pooled["connect_args"]["prepare_threshold"] is None
    assert "options" not in pooled["connect_args"]  # PgBouncer refuses the startup option
    assert pooled["execution_options"] == {"postgresql_readonly": True}  # BEGIN READ ONLY
    monkeypatch.setenv(PGBOUNCER_ENV, "yes")
    with pytest.raises(storage.StorageURLError, match=PGBOUNCER_ENV):
        engine_kwargs(url)


def test_each_pool_is_bounded():
    bounds = pool_kwargs("postgresql+psycopg://u@h/db")
    assert bounds["pool_size"] + bounds["max_overflow"] == PROCESS_CONNECTIONS // 2
    assert pool_kwargs("sqlite:////tmp/x.db") == {}


def test_the_store_names_its_connections(postgres_url, monkeypatch):
    monkeypatch.delenv("PGAPPNAME", raising=False)
    set_process_kind("test")
    try:
        with storage.open(postgres_url) as store, store.engine.connect() as connection:
            names = connection.execute(
                sa.text(
                    "SELECT application_name FROM pg_stat_activity WHERE pid = pg_backend_pid()"
                )
            ).scalar()
    finally:
        set_process_kind(None)
    assert names == application_name("test")


def test_no_process_holds_more_than_its_budget(postgres_url, tmp_path):
    """``dynl2 run --workers 3`` (heartbeats every second): sampled from the first RUNNING trial
    to the end of the search, no dynl2 process holds more than its budget, and each of the
    three workers is seen under its own name."""
    config = write_tiny(tmp_path, "budget", epochs=40, n_trials=3, seeds=1, arms=ARMS)
    env = {**os.environ, "DYNL2_THREADS": "1", "DYNL2_HEARTBEAT": "1,30"}
    env.pop("PGAPPNAME", None)
    run = subprocess.Popen(
        [sys.executable, "-m", "study", "run", str(config), "--workers", "3", "--quiet",
         "--storage", postgres_url],
        cwd=tmp_path, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    engine = sa.create_engine(postgres_url, poolclass=sa.NullPool)
    most: Counter[str] = Counter()
    try:
        deadline = time.monotonic() + 600  # an upper bound on a hang, never a wait for time
        seen_running = False
        with engine.connect() as connection:
            while run.poll() is None and time.monotonic() < deadline:
                try:
                    running = connection.execute(_RUNNING).scalar() or 0
                except sa.exc.ProgrammingError:  # the tables are not there yet
                    connection.rollback()
                    running = 0
                seen_running = seen_running or running > 0
                if seen_running:
                    for name, count in connection.execute(_BY_PROCESS).all():
                        most[name] = max(most[name], count)
                connection.rollback()  # a fresh snapshot of pg_stat_activity each time
                time.sleep(0.05)
        _, err = run.communicate(timeout=600)
    finally:
        if run.poll() is None:
            run.kill()
            run.communicate()
        engine.dispose()
    assert run.returncode == 0, err
    assert seen_running, "no trial was seen RUNNING"
    workers = [name for name in most if name.startswith("dynl2 worker ")]
    assert len(workers) == 3, most
    over = {name: count for name, count in most.items() if count > PROCESS_CONNECTIONS}
    assert not over, f"over the budget of {PROCESS_CONNECTIONS}: {over} (all: {dict(most)})"
