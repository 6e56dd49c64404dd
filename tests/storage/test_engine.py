from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from sqlalchemy import Engine, text

import storage
from storage.engine import SQLITE_BUSY_TIMEOUT_S, make_engine


def _pragma(engine: Engine, name: str) -> object:
    with engine.connect() as connection:
        return connection.execute(text(f"PRAGMA {name}")).scalar()


def test_sqlite_engine_sets_pragmas_and_creates_the_folder(tmp_path: Path) -> None:
    path = tmp_path / "new" / "folder" / "x.db"
    engine = make_engine(f"sqlite:///{path}")
    try:
        assert path.parent.is_dir()
        assert _pragma(engine, "journal_mode") == "wal"
        assert _pragma(engine, "foreign_keys") == 1
        assert _pragma(engine, "busy_timeout") == SQLITE_BUSY_TIMEOUT_S * 1000
        assert _pragma(engine, "synchronous") == 1  # NORMAL
    finally:
        engine.dispose()


def test_make_engine_without_create_dirs_leaves_disk_alone(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'absent' / 'x.db'}", create_dirs=False)
    engine.dispose()
    assert not (tmp_path / "absent").exists()


def test_optuna_storage_gets_the_same_sqlite_pragmas(sqlite_url: str) -> None:
    with storage.open(sqlite_url) as store:
        rdb = store.optuna_storage()
        assert _pragma(rdb.engine, "foreign_keys") == 1
        assert _pragma(rdb.engine, "journal_mode") == "wal"
        assert _pragma(rdb.engine, "busy_timeout") == SQLITE_BUSY_TIMEOUT_S * 1000


@pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")
def test_optuna_storage_is_cached_per_heartbeat_setting(sqlite_url: str) -> None:
    with storage.open(sqlite_url) as store:
        default = store.optuna_storage()
        assert store.optuna_storage() is default
        beating = store.optuna_storage(heartbeat_interval=60, grace_period=180)
        assert beating is not default
        assert (beating.heartbeat_interval, beating.grace_period) == (60, 180)
        assert isinstance(beating, optuna.storages.RDBStorage)


def test_postgres_engine_pings_the_pool(postgres_url: str) -> None:
    engine = make_engine(postgres_url)
    try:
        assert engine.dialect.driver == "psycopg"
        assert engine.pool._pre_ping
        with engine.connect() as connection:
            assert connection.execute(text("SELECT 1")).scalar() == 1
    finally:
        engine.dispose()


class _Boom(KeyboardInterrupt):
    """A stop signal, as dynl2's are: a KeyboardInterrupt."""


@pytest.mark.parametrize("raised", [_Boom, RuntimeError])
def test_an_interrupt_while_the_pool_takes_a_connection_back_logs_no_traceback(
    tmp_path: Path, raised: type[BaseException], capsys: pytest.CaptureFixture[str]
) -> None:
    """A stop landing while SQLAlchemy's pool resets a returned connection goes on to the code
    that handles stops, without the pool's "Exception during reset or similar" and its
    traceback on stderr; an ordinary exception there is still logged (and swallowed)."""
    import logging

    from sqlalchemy import event

    engine = make_engine(f"sqlite:///{tmp_path / 'x.db'}")

    @event.listens_for(engine, "reset")
    def boom(*args: object) -> None:
        raise raised("in the pool's reset")

    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    logging.getLogger().addHandler(handler)  # what reaches the root: what stderr would show
    try:
        conn = engine.connect()
        conn.execute(text("select 1"))
        if raised is _Boom:
            with pytest.raises(_Boom):
                conn.close()
        else:
            conn.close()  # logged, then swallowed by SQLAlchemy
    finally:
        logging.getLogger().removeHandler(handler)
        engine.dispose()
    resets = [r for r in records if "Exception during reset" in r.getMessage()]
    assert len(resets) == (0 if raised is _Boom else 1), [r.getMessage() for r in records]
