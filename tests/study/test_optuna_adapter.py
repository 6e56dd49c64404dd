"""study.search.optuna_adapter holds every private Optuna name dynl2 uses: each one listed in
PRIVATE_NAMES still exists in the installed Optuna, the list is what the adapter touches, and no
other module of the packages touches one."""

from __future__ import annotations

import ast
import importlib
import inspect
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest

from study.search.optuna_adapter import PRIVATE_NAMES, PrivateName

ROOT = Path(__file__).resolve().parents[2]
ADAPTER = Path("study/search/optuna_adapter")  # the package that may use them
PACKAGES = ("study", "storage", "reports", "trainers")


def _private_parts(dotted: str) -> set[str]:
    return {part for part in dotted.split(".") if _is_private(part)}


def _is_private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


# every private name in the registry, as a module would spell the attribute, import or getattr
REGISTERED = set().union(*(_private_parts(f"{e.where}.{e.path}") for e in PRIVATE_NAMES))


# ------------------------------------------------------------------ the names exist in Optuna


@pytest.fixture(scope="module")
def samples(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, object]]:
    """An object of each class whose instances carry a listed name: a study on an RDBStorage
    (as dynl2's are, so its storage is Optuna's cache around it), a trial asked of it."""
    path = tmp_path_factory.mktemp("optuna") / "optuna.db"
    rdb = optuna.storages.RDBStorage(f"sqlite:///{path}")
    study = optuna.create_study(storage=rdb)
    trial = study.ask()
    yield {
        "optuna.Study": study,
        "optuna.trial.Trial": trial,
        "optuna.trial.FrozenTrial": study.get_trials()[0],
    }
    rdb.remove_session()
    rdb.engine.dispose()


def _holder(where: str) -> object:
    """The module or class named by ``where`` (ImportError, AttributeError if none)."""
    parts = where.split(".")
    for n in range(len(parts), 0, -1):
        try:
            found: object = importlib.import_module(".".join(parts[:n]))
        except ImportError:
            continue
        for part in parts[n:]:
            found = getattr(found, part)
        return found
    raise ImportError(where)


def _missing(entry: PrivateName, samples: dict[str, object]) -> str | None:
    """None if the installed Optuna has ``entry`` (taking the parameters it lists), else the
    sentence that says what changed."""
    try:
        found = samples[entry.where] if entry.instance else _holder(entry.where)
        for part in entry.path.split("."):
            found = getattr(found, part)
    except (ImportError, AttributeError):
        return (
            f"optuna {optuna.__version__} no longer has `{entry.name}`, which "
            f"{ADAPTER.as_posix()} uses for {entry.use}"
        )
    if entry.parameters is None:
        return None
    assert callable(found), f"{entry.name} lists parameters but is not callable"
    taken = tuple(name for name in inspect.signature(found).parameters if name != "self")
    if taken == entry.parameters:
        return None
    return (
        f"optuna {optuna.__version__}'s `{entry.name}` takes ({', '.join(taken)}), not "
        f"({', '.join(entry.parameters)}) as {ADAPTER.as_posix()} passes them for {entry.use}"
    )


@pytest.mark.parametrize("entry", PRIVATE_NAMES, ids=lambda e: e.name)
def test_the_installed_optuna_has_each_private_name(
    entry: PrivateName, samples: dict[str, object]
) -> None:
    assert not entry.instance or entry.where in samples, f"no sample object for {entry.where}"
    problem = _missing(entry, samples)
    assert problem is None, problem


GONE = "optuna {version} no longer has `{name}`, which study/search/optuna_adapter uses for a test"
CHANGED = (
    "optuna {version}'s `{name}` takes (study, trial), not ({parameters}) as "
    "study/search/optuna_adapter passes them for a test"
)
FILTER = ("optuna.pruners", "_filter_study", "a test")


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        pytest.param(PrivateName("optuna.pruners", "_gone", "a test"), GONE, id="function"),
        pytest.param(
            PrivateName("optuna.storages._gone_module", "TrialModel", "a test"), GONE, id="module"
        ),
        pytest.param(
            PrivateName("optuna.storages.RDBStorage", "_gone_without_commit", "a test"),
            GONE,
            id="method",
        ),
        pytest.param(
            PrivateName("optuna.Study", "_gone", "a test", instance=True), GONE, id="instance"
        ),
        pytest.param(
            PrivateName("optuna.Study", "_thread_local.gone", "a test", instance=True),
            GONE,
            id="deeper",
        ),
        pytest.param(PrivateName(*FILTER, parameters=("study",)), CHANGED, id="fewer"),
        pytest.param(
            PrivateName(*FILTER, parameters=("study", "trial_id")), CHANGED, id="renamed"
        ),
    ],
)
def test_a_name_gone_or_changed_in_optuna_is_named_with_the_version(
    entry: PrivateName, message: str, samples: dict[str, object]
) -> None:
    parameters = ", ".join(entry.parameters or ())
    expected = message.format(version=optuna.__version__, name=entry.name, parameters=parameters)
    assert _missing(entry, samples) == expected


# ------------------------------------------------------------ the registry is what is used


def _touched(tree: ast.AST) -> list[tuple[int, str]]:
    """``(line, name)`` of each private name the code touches as Optuna's: an attribute (or a
    string, as getattr takes it) in the registry or ending in ``_without_commit``, a private
    part of an ``optuna`` module imported or of an attribute chain from ``optuna``."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute):
            if _is_optuna_private(node.attr) or (_is_private(node.attr) and _from_optuna(node)):
                found.append((node.lineno, node.attr))
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            if _is_optuna_private(node.value):
                found.append((node.lineno, node.value))
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "optuna":
                    found += [(node.lineno, p) for p in sorted(_private_parts(alias.name))]
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "optuna":
            names = [node.module or "", *(alias.name for alias in node.names)]
            found += [(node.lineno, p) for n in names for p in sorted(_private_parts(n))]
    return sorted(found)


def _is_optuna_private(name: str) -> bool:
    return name in REGISTERED or (_is_private(name) and name.endswith("_without_commit"))


def _from_optuna(node: ast.Attribute) -> bool:
    value = node.value
    while isinstance(value, ast.Attribute):
        value = value.value
    return isinstance(value, ast.Name) and value.id == "optuna"


def test_the_registry_lists_exactly_the_private_names_the_adapter_uses() -> None:
    """Every private part of the adapter's attributes, getattr names and imports is listed,
    and every listed one is still used there."""
    trees = [ast.parse(path.read_text(encoding="utf-8")) for path in (ROOT / ADAPTER).glob("*.py")]
    assert len(trees) > 1, "the adapter's modules are not found"
    used: set[str] = set()
    for node in (node for tree in trees for node in ast.walk(tree)):
        if isinstance(node, ast.Attribute) and _is_private(node.attr):
            used.add(node.attr)
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id == "getattr"
            and len(node.args) > 1
            and isinstance(node.args[1], ast.Constant)
            and isinstance(node.args[1].value, str)
        ):
            used |= _private_parts(node.args[1].value)
        elif isinstance(node, ast.ImportFrom) and node.module:
            used |= _private_parts(node.module)
        elif isinstance(node, ast.Import):
            used |= set().union(*(_private_parts(alias.name) for alias in node.names))
    assert sorted(used - REGISTERED) == [], "used in the adapter, not in PRIVATE_NAMES"
    assert sorted(REGISTERED - used) == [], "in PRIVATE_NAMES, no longer used in the adapter"


# -------------------------------------------------------------- nobody else uses any of them


def _leaks(root: Path) -> list[str]:
    """``path:line: name`` of each private Optuna name used in the packages under ``root``,
    outside the adapter."""
    out = []
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            relative = path.relative_to(root)
            if relative.is_relative_to(ADAPTER):
                continue
            tree = ast.parse(path.read_text(encoding="utf-8"))
            out += [f"{relative.as_posix()}:{line}: {name}" for line, name in _touched(tree)]
    return out


def test_no_module_but_the_adapter_uses_a_private_optuna_name() -> None:
    assert _leaks(ROOT) == [], "call study.search.optuna_adapter's accessors instead"


GOOD = '''"""Prose may name trial._trial_id and optuna.pruners._filter_study."""
import optuna
from optuna.trial import TrialState
from study.search.optuna_adapter import storage_of, trial_id_of

class Mine:
    def __init__(self, study):
        self._study = study  # our own private attributes are ours
        self._trials = []

def ids(study):
    # trial._trial_id in a comment is fine
    return [trial_id_of(t) for t in study.get_trials()], storage_of(study)
'''

BAD = [
    ("x = trial._trial_id\n", "_trial_id"),
    ("x = frozen._trial_id\n", "_trial_id"),
    ("study._storage.record_heartbeat(1)\n", "_storage"),
    ("storage.create_new_trial(study._study_id)\n", "_study_id"),
    ("study._thread_local.cached_all_trials = None\n", "_thread_local"),
    ("trial._suggest('x', d)\n", "_suggest"),
    ("trial._cached_frozen_trial.user_attrs\n", "_cached_frozen_trial"),
    ("trial._get_latest_trial()\n", "_get_latest_trial"),
    ("optuna.pruners._filter_study(study, frozen)\n", "_filter_study"),
    ("pruner._get_bracket_id(study, frozen)\n", "_get_bracket_id"),
    ("b._set_trial_attr_without_commit(s, m, 1, 'k', 2)\n", "_set_trial_attr_without_commit"),
    ("b._set_state_without_commit(s, row)\n", "_set_state_without_commit"),
    ("getattr(storage, '_backend', storage)\n", "_backend"),
    ("from optuna.storages._rdb import models\n", "_rdb"),
    ("import optuna.storages._rdb.models\n", "_rdb"),
    ("from optuna.storages._heartbeat import BaseHeartbeat\n", "_heartbeat"),
    ("from optuna.storages import _CachedStorage\n", "_CachedStorage"),
    ("optuna._imports.try_import()\n", "_imports"),
]


def test_the_leak_check_passes_code_that_uses_the_accessors(tmp_path: Path) -> None:
    (tmp_path / "study").mkdir()
    (tmp_path / "study" / "good.py").write_text(GOOD)
    assert _leaks(tmp_path) == []


@pytest.mark.parametrize(("code", "name"), BAD, ids=[name for _, name in BAD])
def test_the_leak_check_finds_each_private_use(tmp_path: Path, code: str, name: str) -> None:
    for package in PACKAGES:
        (tmp_path / package).mkdir()
    (tmp_path / "trainers" / "bad.py").write_text(f"import optuna\n\n\n{code}")
    (tmp_path / ADAPTER).mkdir(parents=True)
    (tmp_path / ADAPTER / "batch.py").write_text(code)  # the adapter may
    assert _leaks(tmp_path) == [f"trainers/bad.py:4: {name}"]
