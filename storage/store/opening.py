"""Opening the store: :func:`open` (exported as ``storage.open``) brings dynl2's tables to this
code's schema (:mod:`storage.migrations`) or, read-only, only checks them, and hands back a
:class:`Store`, put together from its reads and its writes."""

from __future__ import annotations

import errno
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from sqlalchemy.exc import OperationalError, SQLAlchemyError

from storage.engine import make_engine
from storage.errors import StorageError, StorageUnavailable
from storage.schema import SCHEMA_VERSION, Meta
from storage.store.base import StoreVanished
from storage.store.reads import StoreReads
from storage.store.writes import StoreWrites
from storage.urls import ENV_VAR, first_line, resolve_url, sqlite_path

if TYPE_CHECKING:
    from storage import migrations

__all__ = ["Store", "StoreVanished", "open"]

_SCHEMA_LOCK = "dynl2:schema"  # the named lock held while dynl2's tables are created/upgraded


def open(url: str | None = None, *, create: bool = True, read_only: bool = False) -> Store:
    """Open the dynl2 store at ``url`` (see :func:`storage.urls.resolve_url`).

    With ``create`` (the default) missing tables are created: Optuna's first, then ours; a
    store an older dynl2 wrote is upgraded to this code's schema (:mod:`storage.migrations`).
    With ``create=False`` nothing is written: a missing SQLite file or a database without
    dynl2 tables raises :class:`~storage.errors.StorageUnavailable` /
    :class:`~storage.errors.StorageError`, which is what read-only commands want, and an
    older store is read as it is. A store newer than this code is refused either way.
    ``read_only`` (which implies ``create=False``) goes further: the database itself refuses
    every write on the store's connections (:func:`storage.engine.engine_kwargs`), the door a
    process that only shows the store (``dynl2 serve``) reads through.
    """
    create = create and not read_only
    canonical = resolve_url(url)
    path = sqlite_path(canonical)
    if path is not None and not create and not path.is_file():
        raise StorageUnavailable(
            f"There is no dynl2 database at {path}; check the storage URL or ${ENV_VAR}, "
            "or run an experiment first to create it."
        ) from FileNotFoundError(errno.ENOENT, "No such file", str(path))  # not worth a retry
    store = Store(
        canonical,
        make_engine(canonical, create_dirs=create, read_only=read_only),
        read_only=read_only,
    )
    try:
        store._check_connection()
        if create:
            store.optuna_storage()  # creates Optuna's tables, which ours reference
            store._create_schema()
        store._check_schema_version()
        store._remember_file()
    except BaseException:
        store.close()
        raise
    return store


class Store(StoreWrites, StoreReads):
    """dynl2's tables plus Optuna's RDBStorage on one database; use :func:`storage.open`.

    Every method runs in one transaction (see :mod:`storage.store.base`); callers get frozen
    dataclasses and DataFrames, never live ORM rows.
    """

    def _create_schema(self) -> None:
        """Bring dynl2's tables to this code's schema: create them in a new database, upgrade
        a store an older dynl2 wrote (:func:`storage.migrations.upgrade`).

        Workers often open one store at the same moment. A store that is already current
        costs one read and no lock; otherwise the change runs under the store's named lock,
        in one transaction, and the state is read again inside it: whoever waited for the
        lock finds the work done.
        """
        from storage import migrations  # imports alembic: only code that opens a store pays

        if self._schema_state().current:
            return
        with (
            self._schema_errors(),
            self.lock(_SCHEMA_LOCK),
            migrations.transaction(self._url, self._engine) as connection,
        ):
            state = migrations.read_state(connection)
            self._refuse_newer(state)
            if not state.current:
                migrations.upgrade(connection, state)

    def _check_schema_version(self) -> None:
        state = self._schema_state()
        if Meta.__tablename__ not in state.tables:
            raise StorageError(
                f"{self._where()} has no dynl2 tables; check the storage URL or ${ENV_VAR}, "
                "or run an experiment first to create them."
            )

    def _schema_state(self) -> migrations.SchemaState:
        """Where dynl2's tables stand (reads only); a store newer than this code is refused."""
        from storage import migrations

        with self._schema_errors(), self._engine.connect() as connection:
            state = migrations.read_state(connection)
        self._refuse_newer(state)
        return state

    def _refuse_newer(self, state: migrations.SchemaState) -> None:
        from storage import migrations

        if state.unknown_revision:
            raise StorageError(
                f"{self._where()} is at dynl2 schema revision {state.revision!r}, which this "
                f"dynl2 does not know (its newest is {migrations.head()!r}); upgrade dynl2 "
                "to use it."
            )
        if state.newer:
            raise StorageError(
                f"{self._where()} uses dynl2 schema version {state.schema_version}, newer than "
                f"the {SCHEMA_VERSION} this dynl2 understands; upgrade dynl2 to use it."
            )

    @contextmanager
    def _schema_errors(self) -> Iterator[None]:
        """Driver errors while reading or changing the schema, as one line naming the store."""
        try:
            yield
        except OperationalError as exc:
            raise StorageUnavailable(
                f"The database in {self._where()} could not check or upgrade dynl2's tables: "
                f"{first_line(exc.orig)}"
            ) from exc
        except SQLAlchemyError as exc:
            raise StorageError(
                f"The database in {self._where()} refused to check or upgrade dynl2's tables: "
                f"{first_line(exc)}"
            ) from exc
