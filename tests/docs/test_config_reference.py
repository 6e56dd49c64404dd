"""docs/config.md against the code: it names every key the experiment and suite files accept,
no key they refuse, and each key's default as the code applies it.

The page's reference tables are found by their headings: a heading naming a section in
backticks (`` `[search]` ``, `` `[arms.NAME]` ``, `` `[[exclude]]` ``), with the value that
selects a table of options where there is one (`` `dataset = "linear"` ``, `` `kind = "cnn"` ``,
`` `scheme = "swd"` ``), or "Ranges". Under it, a table whose first column is ``key`` lists the
keys in backticks, and its second column gives each default: a TOML value in backticks,
``required``, or ``none: ...`` (TOML has no null: the key left out).

The accepted keys come from the code's own lists: the section names
(:data:`study.config.sections.SECTIONS`, :data:`study.config.suite.SECTIONS`), the trainer's
registries of datasets, models and schemes with their dataclass fields, ``SearchConfig`` and
``EvaluateConfig``. Where the code keeps a table's keys in a literal inside a function
(``[experiment]``, ``[train]``, a range, ``[suite]``), they are read from the one line the code
prints for an unknown key ("allowed: ..."). Each documented default is checked by behaviour: a
config that sets the key to the documented value reads exactly as one that leaves it out, and
one that leaves out a key documented as required is refused.
"""

from __future__ import annotations

import dataclasses
import re
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from study.config import sections as experiment_sections
from study.config import suite as suite_config
from study.config.arms import scheme_fields
from study.config.experiment import ExperimentConfigError, parse_experiment
from study.config.ranges import Range
from study.config.search import SEARCH_KEYS, EvaluateConfig
from trainers.data import DATASETS, data_from_dict, data_to_dict
from trainers.errors import ConfigError
from trainers.models import MODELS, model_from_dict, model_to_dict
from trainers.schemes import SCHEMES

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "config.md"

# (part, section[, choice]): ("experiment", "search"), ("experiment", "data", "linear"),
# ("experiment", "arms", "swd"), ("experiment", "range"), ("suite", "exclude")
Scope = tuple[str, ...]
REFUSED = (ExperimentConfigError, suite_config.SuiteConfigError, ConfigError)

# ---------------------------------------------------------------------------------------------
# What the page says


@dataclass
class Reference:
    sections: dict[str, list[str]] = field(default_factory=dict)  # part -> its overview table
    keys: dict[Scope, dict[str, str]] = field(default_factory=dict)  # scope -> key -> default
    prose: dict[Scope, str] = field(default_factory=dict)  # scope -> the text under its heading


PARTS = {"The experiment file": "experiment", "The suite file": "suite"}
_SECTION = re.compile(r"`\[\[?([A-Za-z_]+)(?:\.[A-Za-z_]+)?\]\]?`")
_CHOICE = re.compile(r'`(?:dataset|kind|scheme) = "([a-z0-9_]+)"`')
_CODE = re.compile(r"`([^`]+)`")
_OWN = re.compile(r"with `(path|loader|factory)`")
# a value that selects each table of a user's own data or model
OWN_BASE = {"path": "/data/d.npz", "loader": "lab.data:load", "factory": "lab.models:make"}


def _cells(line: str) -> list[str]:
    return [cell.strip() for cell in line.strip().strip("|").split("|")]


def _heading_scope(part: str, heading: str) -> Scope | None:
    if heading.startswith("Ranges"):
        return (part, "range")
    section = _SECTION.search(heading)
    if section is None:
        return None
    own = _OWN.search(heading)  # a user's own data or model: `[data]` with `path`
    if own is not None:
        return (part, section[1], own[1])
    choice = _CHOICE.search(heading)
    return (part, section[1]) if choice is None else (part, section[1], choice[1])


def read_reference(text: str) -> Reference:
    out = Reference()
    part: str | None = None
    scope: Scope | None = None
    lines = text.splitlines()
    fenced = False
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("```"):
            fenced = not fenced
        heading = None if fenced else re.fullmatch(r"(#{2,6}) (.*)", line)
        if heading and len(heading[1]) == 2:
            part, scope = PARTS.get(heading[2]), None
        elif heading:
            assert part is not None, f"{heading[2]!r} lies outside the two files' parts"
            scope = _heading_scope(part, heading[2])
            if scope is not None:
                assert scope not in out.keys, f"two headings for {scope}"
                out.keys[scope], out.prose[scope] = {}, ""
        elif line.startswith("|") and not fenced:
            header, rows = _cells(line), []
            i += 2  # past the separator row
            while i < len(lines) and lines[i].startswith("|"):
                rows.append(_cells(lines[i]))
                i += 1
            if header[0] == "section":
                assert part is not None and part not in out.sections, "one section table a part"
                out.sections[part] = [_section_name(row[0]) for row in rows]
            elif header[0] == "key":
                assert header[1] == "default", f"the second column is the default: {header}"
                assert scope is not None, f"a key table under no section's heading: {rows}"
                table = out.keys[scope]
                assert not table, f"two key tables for {scope}"
                for row in rows:
                    key = _CODE.fullmatch(row[0])
                    assert key is not None, f"{scope}: a key is one name in backticks: {row[0]!r}"
                    assert key[1] not in table, f"{scope}: {key[1]} is listed twice"
                    table[key[1]] = row[1]
            continue
        elif scope is not None:
            out.prose[scope] += line + "\n"
        i += 1
    return out


def _section_name(cell: str) -> str:
    found = re.fullmatch(r"`\[\[?([A-Za-z_]+)\]\]?`", cell)
    assert found is not None, f"a section is written `[name]` or `[[name]]`: {cell!r}"
    return found[1]


@pytest.fixture(scope="module")
def reference() -> Reference:
    return read_reference(PAGE.read_text(encoding="utf-8"))


# ---------------------------------------------------------------------------------------------
# What the code accepts

PROBE = "not_a_dynl2_key"


def listed_in_refusal(make: Callable[[], object]) -> list[str]:
    """The keys the code lists in the line it prints for the unknown key :data:`PROBE`."""
    with pytest.raises(REFUSED) as refused:
        make()
    line = next(text for text in str(refused.value).splitlines() if PROBE in text)
    found = re.search(r"(?:allowed: |it takes )(.*)$", line)
    assert found is not None, f"the refusal lists no keys: {line!r}"
    return found[1].split(", ")


def minimal(**sections: Any) -> dict[str, Any]:
    """The smallest experiment the code accepts, with ``sections`` replaced."""
    return {"experiment": {"name": "probe"}, "arms": {"a": {"scheme": "none"}}, **sections}


def _tag(as_dict: dict[str, object], config: object) -> str:
    """The key that names a dataset, a model or a scheme: the one its dict has beyond its
    dataclass's fields."""
    (tag,) = set(as_dict) - {f.name for f in dataclasses.fields(config)}  # type: ignore[arg-type]
    return tag


def accepted_keys() -> dict[Scope, list[str]]:
    data, model, scheme = data_from_dict({}), model_from_dict({}), SCHEMES["none"]()
    out: dict[Scope, list[str]] = {
        ("experiment", "experiment"): listed_in_refusal(
            lambda: parse_experiment(minimal(experiment={"name": "probe", PROBE: 1}))
        ),
        ("experiment", "data"): [_tag(data_to_dict(data), data)],
        ("experiment", "model"): [_tag(model_to_dict(model), model)],
        ("experiment", "train"): listed_in_refusal(
            lambda: parse_experiment(minimal(train={PROBE: 1}))
        ),
        ("experiment", "search"): list(SEARCH_KEYS),
        ("experiment", "evaluate"): [f.name for f in dataclasses.fields(EvaluateConfig)],
        ("experiment", "arms"): [_tag(scheme.to_dict(), scheme)],
        ("experiment", "range"): listed_in_refusal(
            lambda: Range.from_dict({"low": 1.0, "high": 2.0, PROBE: 1})
        ),
        ("suite", "suite"): listed_in_refusal(
            lambda: suite_config.parse_suite({"suite": {"name": "probe", PROBE: 1}})
        ),
        ("suite", "base"): [],  # an experiment's sections: see the test of [base] below
        ("suite", "matrix"): [],  # any config key
        ("suite", "exclude"): [suite_config.EXCLUDED_ARMS],  # and matrix keys
    }
    for name, cls in DATASETS.items():
        out[("experiment", "data", name)] = [f.name for f in dataclasses.fields(cls)]
    for form in ("path", "loader"):
        out[("experiment", "data", form)] = list(data_to_dict(data_from_dict(_own(form))))
    out[("experiment", "model", "factory")] = list(model_to_dict(model_from_dict(_own("factory"))))
    for name, cls in MODELS.items():
        out[("experiment", "model", name)] = [f.name for f in dataclasses.fields(cls)]
    for name in SCHEMES:
        out[("experiment", "arms", name)] = list(scheme_fields(name))
    return out


def _own(form: str) -> dict[str, Any]:
    return {form: OWN_BASE[form]}


def _experiment(**sections: Any) -> Any:
    return parse_experiment(minimal(**sections))


def _suite(table: dict[str, Any]) -> Any:
    base = {"arms": {"a": {"scheme": "none"}}}
    return suite_config.parse_suite({"suite": table, "base": base, "matrix": {"seed": [1]}})


# Per scope: the table a config needs there at least, and what the code makes of the table
# (raising one of REFUSED when it refuses it). Scopes without a default to check are absent.
READERS: dict[Scope, tuple[dict[str, Any], Callable[[dict[str, Any]], object]]] = {
    ("experiment", "experiment"): (
        {"name": "probe"},
        lambda t: _experiment(experiment=t).to_dict()["experiment"],
    ),
    ("experiment", "train"): ({}, lambda t: _experiment(train=t).train_config("a", {}, 0)),
    ("experiment", "search"): ({}, lambda t: _experiment(search=t).search),
    ("experiment", "evaluate"): ({}, lambda t: _experiment(evaluate=t).evaluate),
    ("experiment", "range"): ({"low": 1.0, "high": 2.0}, Range.from_dict),
    ("suite", "suite"): ({"name": "probe"}, lambda t: _suite(t).name),
}


def _reader(scope: Scope) -> tuple[dict[str, Any], Callable[[dict[str, Any]], object]] | None:
    if scope in READERS:
        return READERS[scope]
    part, section, *choice = scope
    if (part, section) == ("experiment", "data"):
        base = _own(choice[0]) if choice and choice[0] in OWN_BASE else {}
        base = {"dataset": choice[0]} if choice and not base else base
        loss = {"metric": "val_loss"}  # which any dataset takes, a regression's too
        return base, lambda t: _experiment(data=t, search=loss).to_dict()["data"]
    if (part, section) == ("experiment", "model"):
        base = _own(choice[0]) if choice and choice[0] in OWN_BASE else {}
        base = {"kind": choice[0]} if choice and not base else base
        return base, lambda t: _experiment(model=t).to_dict()["model"]
    if (part, section) == ("experiment", "arms"):
        base = {"scheme": choice[0] if choice else "none"}
        return base, lambda t: _experiment(arms={"a": t}).train_config("a", {}, 0).scheme
    return None


# ---------------------------------------------------------------------------------------------
# The comparisons


def key_problems(reference: Reference) -> list[str]:
    """Each difference between the page's keys and the code's, one line each."""
    problems = []
    code = accepted_keys()
    for scope in sorted(set(code) | set(reference.keys)):
        if scope not in reference.keys:
            problems.append(
                f"{scope}: the code accepts this table; the page has no heading for it"
            )
            continue
        if scope not in code:
            problems.append(f"{scope}: the page describes a table the code does not have")
            continue
        documented, accepted = set(reference.keys[scope]), set(code[scope])
        for key in sorted(accepted - documented):
            problems.append(f"{scope}: the code accepts {key!r}; the page does not name it")
        for key in sorted(documented - accepted):
            problems.append(f"{scope}: the page names {key!r}; the code refuses it")
    return problems


def default_problems(reference: Reference) -> list[str]:
    """Each documented default the code does not apply, one line each."""
    problems = []
    for scope, table in sorted(reference.keys.items()):
        reader = _reader(scope)
        for key, cell in table.items():
            where = f"{scope} {key}"
            if reader is None:
                if not cell.startswith(("none", "required")):
                    problems.append(f"{where}: no reader for this scope to check {cell!r}")
                continue
            base, read = reader
            without = {k: v for k, v in base.items() if k != key}
            if cell == "required":
                try:
                    read(without)
                except REFUSED:
                    continue
                problems.append(f"{where}: documented as required, but a config without it reads")
                continue
            try:
                default = read(without)
            except REFUSED as exc:
                problems.append(f"{where}: a config without it is refused: {exc}")
                continue
            if cell.startswith("none"):
                if hasattr(default, key) and getattr(default, key) is not None:
                    problems.append(f"{where}: documented as none, but the code has {default}")
                continue
            literal = _CODE.match(cell)
            if literal is None:
                problems.append(f"{where}: a default is `VALUE`, required or none: {cell!r}")
                continue
            value = tomllib.loads(f"v = {literal[1]}")["v"]
            try:
                given = read({**without, key: value})
            except REFUSED as exc:
                problems.append(f"{where}: the documented default {literal[1]} is refused: {exc}")
                continue
            if given != default:
                problems.append(
                    f"{where}: {literal[1]} reads {given}, but leaving it out {default}"
                )
    return problems


# ---------------------------------------------------------------------------------------------
# The tests


def test_the_page_lists_each_files_sections(reference: Reference) -> None:
    assert set(reference.sections["experiment"]) == set(experiment_sections.SECTIONS)
    assert set(reference.sections["suite"]) == set(suite_config.SECTIONS)


def test_the_page_names_exactly_the_keys_the_code_accepts(reference: Reference) -> None:
    assert key_problems(reference) == []


def test_each_documented_default_is_the_codes(reference: Reference) -> None:
    assert default_problems(reference) == []


def test_a_suites_base_takes_the_sections_of_an_experiment(reference: Reference) -> None:
    prose = reference.prose[("suite", "base")]
    for section in suite_config.BASE_SECTIONS:
        assert f"`[base.{section}" in prose, section


def test_the_comparisons_catch_a_wrong_page() -> None:
    """The checks above can fail: a key added to the page that the code refuses, a key taken
    off the page that the code accepts, and a wrong default are each found (beyond whatever
    the page holds today)."""
    text = PAGE.read_text(encoding="utf-8")
    row = "| `n_trials` | `40` |"
    assert row in text

    def new_problems(check: Callable[[Reference], list[str]], changed: str) -> list[str]:
        before = check(read_reference(text))
        return [p for p in check(read_reference(changed)) if p not in before]

    added = text.replace(row, "| `n_trails` | `40` | 1 to 100 | a typo |\n" + row, 1)
    assert new_problems(key_problems, added) == [
        "('experiment', 'search'): the page names 'n_trails'; the code refuses it"
    ]
    removed = "\n".join(line for line in text.splitlines() if not line.startswith(row))
    assert new_problems(key_problems, removed) == [
        "('experiment', 'search'): the code accepts 'n_trials'; the page does not name it"
    ]
    wrong = text.replace(row, "| `n_trials` | `50` |", 1)
    assert [p.split(":")[0] for p in new_problems(default_problems, wrong)] == [
        "('experiment', 'search') n_trials"
    ]
