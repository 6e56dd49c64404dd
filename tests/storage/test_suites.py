"""Suites in the store (revision 0004): create, resume or refuse, read back in order, their
reports newest first, racing creators, the read-only door, and the upgrade from revision 0003;
on every backend."""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from sqlalchemy import create_engine, inspect, text

import storage
from storage import migrations
from storage.engine import engine_kwargs
from storage.schema import DYNL2_TABLES, SCHEMA_VERSION
from tests.reliability.helpers import store_fingerprint
from tests.storage.backends import statements
from tests.storage.legacy import EXPERIMENT, build_legacy_store
from tests.storage.readers import reader_role

SUITE_TABLES = ("dynl2_suites", "dynl2_suite_experiments", "dynl2_suite_reports")
DEFINITION: dict[str, Any] = {
    "suite": {"name": "when"},
    "base": {"experiment": {"seed": 0}, "data": {"dataset": "mnist1d"}},
    # Not in sorted order: the matrix's order makes the names, and must come back as it went.
    "matrix": {"train.epochs": [30, 100], "data.dataset": ["mnist1d", "digits"]},
}
MEMBERS: list[tuple[str, dict[str, Any]]] = [
    ("when-30-mnist1d", {"train.epochs": 30, "data.dataset": "mnist1d"}),
    ("when-30-digits", {"train.epochs": 30, "data.dataset": "digits"}),
    ("when-100-mnist1d", {"train.epochs": 100, "data.dataset": "mnist1d"}),
    ("when-100-digits", {"train.epochs": 100, "data.dataset": "digits", "model": {"k": [1]}}),
]
CONFLICT = (
    "Suite 'when' already exists with a different definition; run it with its original file "
    "or choose a new suite name."
)
_OPTUNA_VERSION_TABLE = re.compile(r"\balembic_version\b")  # not dynl2_alembic_version


def _members(info: storage.SuiteInfo) -> list[tuple[int, str, dict[str, Any]]]:
    return [(m.position, m.experiment, m.factors) for m in info.members]


def _expected(members: list[tuple[str, dict[str, Any]]]) -> list[tuple[int, str, Any]]:
    return [(position, name, factors) for position, (name, factors) in enumerate(members)]


def _rows(url: str, sql: str) -> list[tuple[Any, ...]]:
    engine = create_engine(url, **engine_kwargs(url))
    try:
        with engine.connect() as connection:
            return [tuple(row) for row in connection.execute(text(sql))]
    finally:
        engine.dispose()


def _tables(url: str) -> set[str]:
    engine = create_engine(url, **engine_kwargs(url))
    try:
        return set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def _migrate(url: str, step: Callable[[Any], None]) -> None:
    engine = create_engine(url, **engine_kwargs(url))
    try:
        with migrations.transaction(url, engine) as connection:
            step(connection)
    finally:
        engine.dispose()


# ------------------------------------------------------------------- create and resume


def test_a_suite_keeps_its_definition_and_members_in_order(store: storage.Store) -> None:
    created = store.create_suite("when", DEFINITION, MEMBERS)
    assert created.name == "when"
    assert created.created.tzinfo is not None
    assert created.definition == DEFINITION
    assert list(created.definition["matrix"]) == ["train.epochs", "data.dataset"]
    assert _members(created) == _expected(MEMBERS)
    assert [list(m.factors) for m in created.members] == [list(f) for _, f in MEMBERS]
    read = store.suite("when")
    assert read == created
    assert list(read.definition["matrix"]) == ["train.epochs", "data.dataset"]
    assert [list(m.factors) for m in read.members] == [list(f) for _, f in MEMBERS]
    assert store.suites() == [created]


def test_creating_it_again_resumes_it(store: storage.Store) -> None:
    first = store.create_suite("when", DEFINITION, MEMBERS)
    again = store.create_suite("when", dict(DEFINITION), [(n, dict(f)) for n, f in MEMBERS])
    assert again == first  # the stored one, created when it was first made
    assert len(_rows(store.url, "SELECT id FROM dynl2_suites")) == 1
    assert len(_rows(store.url, "SELECT position FROM dynl2_suite_experiments")) == len(MEMBERS)


@pytest.mark.parametrize(
    ("definition", "members"),
    [
        pytest.param({**DEFINITION, "exclude": [{"train.epochs": 30}]}, MEMBERS, id="definition"),
        pytest.param(
            {**DEFINITION, "matrix": dict(reversed(DEFINITION["matrix"].items()))},
            MEMBERS,
            id="matrix-order",
        ),
        pytest.param(DEFINITION, MEMBERS[:-1], id="fewer-members"),
        pytest.param(DEFINITION, [*MEMBERS, ("when-extra", {})], id="more-members"),
        pytest.param(DEFINITION, MEMBERS[::-1], id="member-order"),
        pytest.param(
            DEFINITION, [*MEMBERS[:-1], (MEMBERS[-1][0], {"train.epochs": 7})], id="factors"
        ),
        pytest.param(DEFINITION, [*MEMBERS[:-1], ("when-renamed", {})], id="member-name"),
    ],
)
def test_another_definition_under_the_name_is_a_conflict(
    store: storage.Store, definition: dict[str, Any], members: list[Any]
) -> None:
    created = store.create_suite("when", DEFINITION, MEMBERS)
    with pytest.raises(storage.SuiteConflict) as info:
        store.create_suite("when", definition, members)
    assert str(info.value) == CONFLICT
    assert isinstance(info.value, storage.StorageError)
    assert store.suite("when") == created  # nothing of the refused call stayed
    assert len(_rows(store.url, "SELECT position FROM dynl2_suite_experiments")) == len(MEMBERS)


def test_suites_are_listed_oldest_first_and_deleted_with_their_rows(store: storage.Store) -> None:
    assert store.suites() == []
    names = ["b-suite", "a-suite", "c-suite"]
    for name in names:
        store.create_suite(name, {"suite": {"name": name}}, [(f"{name}-1", {"x": 1})])
        store.record_suite_report(name, f"{name}.html", {}, "<p></p>")
    assert [s.name for s in store.suites()] == names
    with store.engine.begin() as connection:
        connection.execute(text("DELETE FROM dynl2_suites WHERE name = 'a-suite'"))
    assert [s.name for s in store.suites()] == ["b-suite", "c-suite"]
    assert len(_rows(store.url, "SELECT * FROM dynl2_suite_experiments")) == 2  # cascaded
    assert list(store.suite_reports()["suite"]) == ["c-suite", "b-suite"]


BAD_CREATES = [
    ("", DEFINITION, MEMBERS, "`suite` must be a non-empty string"),
    ("a/b", DEFINITION, MEMBERS, "`suite` must not contain '/'"),
    (" when", DEFINITION, MEMBERS, "`suite` must be a non-empty string"),
    ("when", [1, 2], MEMBERS, "`definition` must be a mapping, but got list"),
    ("when", {"x": float("inf")}, MEMBERS, "`definition` must be JSON-serialisable"),
    ("when", DEFINITION, [], "`members` must list at least one experiment"),
    ("when", DEFINITION, "when-1", "`members` must be a sequence of .* but got str"),
    ("when", DEFINITION, [("when-1",)], r"`members\[0\]` must be an .* tuple of length 1"),
    ("when", DEFINITION, [("when-1", {}), ("", {})], r"`members\[1\]\[0\]` must be a non-empty"),
    ("when", DEFINITION, [("e/f", {})], r"`members\[0\]\[0\]` must not contain '/'"),
    ("when", DEFINITION, [("e", {}), ("e", {})], r"names experiment 'e', as `members\[0\]\[0\]`"),
    ("when", DEFINITION, [("e", None)], r"`members\[0\]\[1\]` must be a mapping"),
    ("when", DEFINITION, [("e", {"k": object()})], r"`members\[0\]\[1\]` must be JSON"),
]


@pytest.mark.parametrize(("name", "definition", "members", "message"), BAD_CREATES)
def test_bad_suites_are_refused_before_any_sql(
    sqlite_store: storage.Store, name: Any, definition: Any, members: Any, message: str
) -> None:
    with pytest.raises(storage.InvalidRecord, match=message) as info:
        sqlite_store.create_suite(name, definition, members)
    assert "\n" not in str(info.value)
    assert sqlite_store.suites() == []


def test_an_unknown_suite_names_the_ones_there_are(store: storage.Store) -> None:
    where = re.escape(store._where())
    with pytest.raises(
        storage.SuiteNotFound, match=f"^No suite named 'x' in {where}; no suites yet$"
    ):
        store.suite("x")
    store.create_suite("when", DEFINITION, MEMBERS)
    store.create_suite("why", {}, [("why-1", {})])
    with pytest.raises(storage.SuiteNotFound) as info:
        store.suite("x")
    assert str(info.value) == f"No suite named 'x' in {store._where()}; suites: when, why"
    assert isinstance(info.value, LookupError)
    for call in (
        lambda: store.latest_suite_report("x"),
        lambda: store.suite_reports("x"),
        lambda: store.record_suite_report("x", "p", {}, ""),
    ):
        with pytest.raises(storage.SuiteNotFound, match="suites: when, why"):
            call()


# ----------------------------------------------------------------------------- reports


def test_suite_reports_newest_first_and_the_latest_recovered(store: storage.Store) -> None:
    store.create_suite("when", DEFINITION, MEMBERS)
    store.create_suite("why", {}, [("why-1", {})])
    assert store.suite_reports().empty
    assert list(store.suite_reports().columns) == ["id", "suite", "created", "path", "summary"]
    with pytest.raises(storage.ReportNotFound) as info:
        store.latest_suite_report("when")
    assert str(info.value) == (
        f"No report of suite 'when' is stored in {store._where()}; "
        "make one with: dynl2 suite report when"
    )
    first = store.record_suite_report("when", "/tmp/a.html", {"pooled": 0.1}, "<html>1</html>")
    other = store.record_suite_report("why", "/tmp/w.html", {}, "<p>why</p>")
    second = store.record_suite_report("when", "/tmp/b.html", {"pooled": 0.2}, "<p>2</p>" * 1000)
    assert first < other < second
    frame = store.suite_reports("when")
    assert list(frame["id"]) == [second, first]
    assert list(frame["suite"]) == ["when", "when"]
    assert list(frame["summary"]) == [{"pooled": 0.2}, {"pooled": 0.1}]
    assert "html" not in frame.columns
    assert list(store.suite_reports()["id"]) == [second, other, first]
    assert store.latest_suite_report("when") == ("<p>2</p>" * 1000, "/tmp/b.html")
    assert store.latest_suite_report("why") == ("<p>why</p>", "/tmp/w.html")
    assert store.reports().empty  # experiment reports are another table


# ------------------------------------------------------------------------- concurrency


def _race(url: str, calls: list[tuple[dict[str, Any], list[Any]]]) -> list[Any]:
    """Each call's create_suite('when', ...) from its own thread and store, at one moment."""
    barrier = threading.Barrier(len(calls))
    outcomes: list[Any] = [None] * len(calls)

    def create(index: int, definition: dict[str, Any], members: list[Any]) -> None:
        with storage.open(url) as store:
            barrier.wait(timeout=60)
            try:
                outcomes[index] = store.create_suite("when", definition, members)
            except storage.StorageError as exc:
                outcomes[index] = exc

    threads = [threading.Thread(target=create, args=(i, d, m)) for i, (d, m) in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(thread.is_alive() for thread in threads)
    return outcomes


def test_creators_racing_with_the_same_suite_all_get_it_once(prepared_url: str) -> None:
    outcomes = _race(prepared_url, [(DEFINITION, MEMBERS)] * 3)
    assert all(isinstance(o, storage.SuiteInfo) for o in outcomes), outcomes
    assert outcomes[0] == outcomes[1] == outcomes[2]
    assert len(_rows(prepared_url, "SELECT id FROM dynl2_suites")) == 1
    stored = _rows(prepared_url, "SELECT position FROM dynl2_suite_experiments ORDER BY 1")
    assert stored == [(i,) for i in range(len(MEMBERS))]


def test_creators_racing_with_different_suites_one_wins_whole(prepared_url: str) -> None:
    other: list[tuple[str, dict[str, Any]]] = [
        ("when-a", {"x": 1}),
        ("when-b", {"x": 2}),
        *MEMBERS,
    ]  # more members, other names
    outcomes = _race(prepared_url, [(DEFINITION, MEMBERS), (DEFINITION, other)])
    won = [o for o in outcomes if isinstance(o, storage.SuiteInfo)]
    lost = [o for o in outcomes if not isinstance(o, storage.SuiteInfo)]
    assert len(won) == 1 and len(lost) == 1, outcomes
    assert isinstance(lost[0], storage.SuiteConflict) and str(lost[0]) == CONFLICT
    with storage.open(prepared_url) as store:
        assert store.suite("when") == won[0]
    assert _members(won[0]) in (_expected(MEMBERS), _expected(other))
    assert len(_rows(prepared_url, "SELECT id FROM dynl2_suites")) == 1
    count = len(_rows(prepared_url, "SELECT position FROM dynl2_suite_experiments"))
    assert count == len(won[0].members)


# ------------------------------------------------------------------------ the sql door


def test_the_read_only_door_reads_the_suite_tables(prepared_url: str) -> None:
    with storage.open(prepared_url) as store:
        store.create_suite("when", DEFINITION, MEMBERS)
        store.record_suite_report("when", "r.html", {"pooled": 1}, "<p>r</p>")
    with _reader(prepared_url):
        suites = storage.run_readonly(prepared_url, "select * from dynl2_suites")
        members = storage.run_readonly(
            prepared_url,
            "SELECT s.name, m.position, m.experiment FROM dynl2_suite_experiments m "
            "JOIN dynl2_suites s ON s.id = m.suite_id ORDER BY m.position",
        )
        reports = storage.run_readonly(prepared_url, "SELECT path FROM dynl2_suite_reports")
    assert suites.columns == ("id", "name", "created", "definition")
    assert [row[1] for row in suites.rows] == ["when"]
    assert [row[2] for row in members.rows] == [name for name, _ in MEMBERS]
    assert reports.rows == (("r.html",),)


@contextmanager
def _reader(url: str) -> Iterator[None]:
    """PostgreSQL: the reader role ``dynl2 sql-setup`` makes, dropped afterwards; SQLite needs
    none."""
    if storage.sqlite_path(url) is not None:
        yield
        return
    with reader_role(url):
        yield


# ----------------------------------------------------------------------- the migration


def test_the_suite_tables_are_dynl2_tables() -> None:
    names = {table.name for table in DYNL2_TABLES}
    assert set(SUITE_TABLES) <= names
    assert all(name.startswith("dynl2_") for name in names)
    assert migrations.head() == "0004" and migrations.SCHEMA_VERSIONS["0004"] == SCHEMA_VERSION


def test_a_store_at_revision_0003_reads_without_suites_and_upgrades(store_url: str) -> None:
    legacy = build_legacy_store(store_url, 3)  # revision 0002, as an older dynl2 left it
    _migrate(store_url, lambda connection: migrations.replay(connection, "0003"))
    assert _rows(store_url, "SELECT version_num FROM dynl2_alembic_version") == [("0003",)]
    assert not set(SUITE_TABLES) & _tables(store_url)

    before = store_fingerprint(store_url)
    with storage.open(store_url, create=False) as old:  # read as it is, never upgraded
        assert old.suites() == []
        assert old.suite_reports().empty
        with pytest.raises(storage.SuiteNotFound, match="no suites yet"):
            old.suite("when")
        with pytest.raises(storage.SuiteNotFound, match="no suites yet"):
            old.latest_suite_report("when")
        with pytest.raises(storage.SuiteNotFound, match="no suites yet"):
            old.suite_reports("when")
        with pytest.raises(storage.StorageError, match="create=True") as refused:
            old.create_suite("when", DEFINITION, MEMBERS)
        assert "\n" not in str(refused.value)
        assert list(old.experiments()["name"]) == [EXPERIMENT]
    assert store_fingerprint(store_url) == before

    with storage.open(store_url) as store:  # writable: upgraded to 0004
        assert list(store.experiments()["name"]) == [EXPERIMENT]
        assert list(store.reports(EXPERIMENT)["path"]) == ["r.html"]
        created = store.create_suite("when", DEFINITION, MEMBERS)
        store.record_suite_report("when", "s.html", {}, "<p>s</p>")
        assert store.suite("when") == created
    assert _rows(store_url, "SELECT version_num FROM dynl2_alembic_version") == [("0004",)]
    assert _rows(store_url, "SELECT value FROM dynl2_meta WHERE key = 'schema_version'") == [
        (str(SCHEMA_VERSION),)
    ]
    assert set(SUITE_TABLES) <= _tables(store_url)
    assert _rows(store_url, "SELECT version_num FROM alembic_version") == [
        (legacy.optuna_revision,)
    ]


def test_going_back_to_0003_drops_the_suite_tables_and_nothing_else(store_url: str) -> None:
    with storage.open(store_url) as store:
        store.create_experiment("exp", {"a": 1})
        store.create_suite("when", DEFINITION, MEMBERS)
        store.record_suite_report("when", "s.html", {}, "<p>s</p>")
    tables = _tables(store_url)
    _migrate(store_url, lambda connection: migrations.downgrade(connection, "0003"))
    assert _tables(store_url) == tables - set(SUITE_TABLES)
    assert _rows(store_url, "SELECT version_num FROM dynl2_alembic_version") == [("0003",)]
    assert _rows(store_url, "SELECT value FROM dynl2_meta WHERE key = 'schema_version'") == [
        ("4",)
    ]
    with storage.open(store_url) as store:  # and up again, empty
        assert list(store.experiments()["name"]) == ["exp"]
        assert store.suites() == []


def test_the_revision_never_touches_optunas_version_table(store_url: str) -> None:
    """dynl2 keeps its revision in dynl2_alembic_version: going to 0004 and back neither reads
    nor writes Optuna's alembic_version, in the same database."""
    storage.open(store_url).close()
    _migrate(store_url, lambda connection: migrations.downgrade(connection, "0003"))
    optuna_revision = _rows(store_url, "SELECT version_num FROM alembic_version")
    assert len(optuna_revision) == 1

    def upgrade(connection: Any) -> None:
        migrations.upgrade(connection, migrations.read_state(connection))

    with statements() as seen:
        _migrate(store_url, upgrade)
        _migrate(store_url, lambda connection: migrations.downgrade(connection, "0003"))
        _migrate(store_url, upgrade)
    assert any("dynl2_suites" in statement for statement in seen)
    assert [s for s in seen if _OPTUNA_VERSION_TABLE.search(s)] == []
    assert _rows(store_url, "SELECT version_num FROM alembic_version") == optuna_revision
    assert _rows(store_url, "SELECT version_num FROM dynl2_alembic_version") == [("0004",)]
