"""A suite file: one base experiment and a matrix of overrides, expanded into named experiments.

    [suite]
    name = "when"                      # the experiments are named when-<value>-<value>...

    [base]                             # an experiment config without [experiment] name
    experiment = { seed = 0 }
    data = { dataset = "mnist1d" }
    ...                                # model, train, search, arms, evaluate as in any config

    [matrix]                           # keys of the config, each with a list of values
    "data.dataset" = ["mnist1d", "digits"]
    "train.epochs" = [30, 100]
    model = [{ kind = "mlp", hidden = [100, 100] }, { kind = "cnn" }]   # a whole section

    [[exclude]]                        # optional: combinations left out
    "data.dataset" = "digits"
    "model.kind" = "cnn"

    [[exclude]]                        # with arms: only these arms, where the keys match
    "train.optimizer" = "sgd"          # (a key may name a setting inside a whole-table value)
    arms = ["swd"]                     # swd serves Adam only

:func:`load_suite` expands the matrix in file order (the first key varies slowest), drops the
excluded combinations (or, for an exclude with ``arms``, drops those arms from the
combinations it matches), names each experiment ``SUITE-V1-V2-...`` from its values, and
validates every expanded config exactly as ``dynl2 run`` validates one, before anything is
written. Every problem found is reported, one line each (:class:`SuiteConfigError`), so a user
fixes a suite in one pass rather than one error per try.
"""

from __future__ import annotations

import copy
import itertools
import json
import math
import os
import re
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from study.config.arms import NAME, NAME_RULE
from study.config.experiment import ExperimentConfig, inspected, parse_experiment
from study.config.own import resolve_paths
from study.config.reader import ExperimentConfigError, read_config
from study.errors import StudyError
from trainers._fields import describe

SECTIONS = ("suite", "base", "matrix", "exclude")
BASE_SECTIONS = ("experiment", "data", "model", "train", "search", "arms", "evaluate")
MAX_WITHOUT_YES = 64  # experiments a suite may expand to unless the user confirms more
MAX_EXPERIMENTS = 1024  # and at most, confirmed or not
# combinations of the matrix before [[exclude]] drops any: each is built and matched against
# every exclude, so this bounds the work (and the memory) of expanding a suite at all
MAX_COMBINATIONS = 16 * MAX_EXPERIMENTS
_NOT_NAME = re.compile(r"[^A-Za-z0-9_-]")
_KINDS = {"data": "dataset", "model": "kind", "train": "optimizer"}  # names a whole-table value
_ABSENT = object()  # a setting a whole-table value does not hold
EXCLUDED_ARMS = "arms"  # in an [[exclude]]: drop these arms where the keys match, not the whole


class SuiteConfigError(StudyError, ValueError):
    """The suite file is not valid; ``problems`` holds one line per problem."""

    def __init__(self, problems: Sequence[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = tuple(problems)

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.problems,))


@dataclass(frozen=True)
class SuiteExperiment:
    """One expanded experiment: its name, the matrix values it takes, its validated config."""

    name: str
    factors: Mapping[str, object]  # dotted key -> value, in the matrix's order
    config: ExperimentConfig


@dataclass(frozen=True)
class Suite:
    name: str
    factors: tuple[str, ...]  # the matrix's dotted keys, in file order
    experiments: tuple[SuiteExperiment, ...]
    document: Mapping[str, Any]  # the suite file as read: what the store keeps of it


def load_suite(path: str | os.PathLike[str], *, confirmed: bool = False) -> Suite:
    """Read, expand and validate the suite file at ``path``; ``confirmed`` allows more than
    :data:`MAX_WITHOUT_YES` experiments (``--yes``)."""
    try:
        document = dict(read_config(path))
    except ExperimentConfigError as exc:
        raise SuiteConfigError([str(exc)]) from None
    if isinstance(document.get("base"), Mapping):  # paths and code relative to the suite file
        folder = os.path.dirname(os.path.abspath(path))
        document["base"] = resolve_paths(document["base"], folder)
    suite = parse_suite(document, confirmed=confirmed)
    try:  # a user's data read and checked once per experiment, before anything is written
        members = tuple(replace(e, config=inspected(e.config)) for e in suite.experiments)
    except ExperimentConfigError as exc:
        raise SuiteConfigError([str(exc)]) from None
    return replace(suite, experiments=members)


def parse_suite(document: Mapping[str, Any], *, confirmed: bool = False) -> Suite:
    problems: list[str] = []
    for key in document:
        if key not in SECTIONS:
            problems.append(f"{key}: unknown section; allowed: {', '.join(SECTIONS)}")
    name = _suite_name(document.get("suite"), problems)
    base = _base(document.get("base"), problems)
    matrix = _matrix(document.get("matrix"), problems)
    excludes = _excludes(document.get("exclude", []), matrix, _arm_names(base, matrix), problems)
    if problems or name is None or base is None or matrix is None:
        raise SuiteConfigError(problems or ["suite: nothing to expand"])
    total = math.prod(len(values) for values in matrix.values())  # counted, not built
    if total > MAX_COMBINATIONS:
        raise SuiteConfigError(
            [
                f"matrix: {' × '.join(str(len(v)) for v in matrix.values())} = {total:,} "
                f"combinations; at most {MAX_COMBINATIONS:,} before [[exclude]] (and "
                f"{MAX_EXPERIMENTS} experiments after): split it into several suites"
            ]
        )
    keys = tuple(matrix)
    whole = [ex for ex in excludes if EXCLUDED_ARMS not in ex]
    partial = [ex for ex in excludes if EXCLUDED_ARMS in ex]
    combinations = [
        dict(zip(keys, values, strict=True))
        for values in itertools.product(*matrix.values())
        if not any(_matches(dict(zip(keys, values, strict=True)), ex) for ex in whole)
    ]
    if not combinations:
        raise SuiteConfigError(["exclude: every combination of the matrix is excluded"])
    if len(combinations) > MAX_EXPERIMENTS:
        raise SuiteConfigError(
            [f"matrix: expands to {len(combinations)} experiments; at most {MAX_EXPERIMENTS}"]
        )
    if len(combinations) > MAX_WITHOUT_YES and not confirmed:
        raise SuiteConfigError(
            [
                f"matrix: expands to {len(combinations)} experiments; more than "
                f"{MAX_WITHOUT_YES} needs --yes"
            ]
        )
    experiments: list[SuiteExperiment] = []
    seen: dict[str, Mapping[str, object]] = {}
    for factors in combinations:
        label = experiment_name(name, keys, factors, matrix)
        where = f"experiment {label!r} ({_shown(factors)})"
        if len(label) > 64:
            problems.append(f"{where}: its name is over 64 characters; shorten [suite] name")
            continue
        if label in seen:
            problems.append(f"{where}: the same name as ({_shown(seen[label])})")
            continue
        seen[label] = factors
        doc = copy.deepcopy(base)
        doc.setdefault("experiment", {})["name"] = label
        try:
            for key, value in factors.items():
                _set_dotted(doc, key, copy.deepcopy(value))
            _drop_arms(doc, factors, partial)
            config = parse_experiment(doc)
        except ExperimentConfigError as exc:
            problems.append(f"{where}: {exc}")
            continue
        experiments.append(SuiteExperiment(label, factors, config))
    metrics = {e.config.search.metric for e in experiments}
    if len(metrics) > 1:
        problems.append(
            "matrix: the experiments would search different metrics "
            f"({', '.join(sorted(metrics))}); a suite pools one difference, so its "
            "experiments share [search] metric (put regression and classification in two "
            "suites)"
        )
    if problems:
        raise SuiteConfigError(problems)
    return Suite(name, keys, tuple(experiments), copy.deepcopy(dict(document)))


def experiment_name(
    suite: str,
    keys: Sequence[str],
    factors: Mapping[str, object],
    matrix: Mapping[str, Sequence[object]],
) -> str:
    """``SUITE-V1-V2-...``: each value as written (``.`` as ``p``, other characters a name
    cannot hold as ``_``); a table value (a searched range) by its position in its list."""
    parts = [suite]
    for key in keys:
        value = factors[key]
        if isinstance(value, bool):
            text = "true" if value else "false"
        elif isinstance(value, (int, float, str)):
            text = str(value).replace(".", "p")
        elif isinstance(value, Mapping) and isinstance(value.get(_KINDS.get(key, "")), str):
            text = str(value[_KINDS[key]])  # a whole [data] or [model] table: its kind
        else:
            text = f"{key.rsplit('.', 1)[-1]}{list(matrix[key]).index(value)}"
        parts.append(_NOT_NAME.sub("_", text))
    return "-".join(parts)


def _suite_name(section: object, problems: list[str]) -> str | None:
    if not isinstance(section, Mapping):
        problems.append("suite: missing; a suite file needs [suite] with its name")
        return None
    for key in section:
        if key != "name":
            problems.append(f"suite.{key}: unknown setting; allowed: name")
    name = section.get("name")
    if not isinstance(name, str) or not NAME.fullmatch(name):
        problems.append(f"suite.name: a suite name is {NAME_RULE}, got {describe(name)}")
        return None
    return name


def _arm_names(
    base: Mapping[str, Any] | None, matrix: Mapping[str, list[object]] | None
) -> list[str]:
    """The arms a suite's experiments can have: [base.arms] and any "arms.NAME" matrix key."""
    names = list(base.get("arms", {})) if base and isinstance(base.get("arms"), Mapping) else []
    for key in matrix or {}:
        parts = key.split(".")
        if parts[0] == "arms" and len(parts) > 1 and parts[1] not in names:
            names.append(parts[1])
    return names


def _base(section: object, problems: list[str]) -> dict[str, Any] | None:
    if not isinstance(section, Mapping):
        problems.append("base: missing; a suite file needs [base], the experiment it varies")
        return None
    for key in section:
        if key not in BASE_SECTIONS:
            problems.append(f"base.{key}: unknown section; allowed: {', '.join(BASE_SECTIONS)}")
    experiment = section.get("experiment", {})
    if isinstance(experiment, Mapping) and "name" in experiment:
        problems.append("base.experiment.name: the suite names its experiments; leave it out")
    return copy.deepcopy(dict(section))


def _matrix(section: object, problems: list[str]) -> dict[str, list[object]] | None:
    if not isinstance(section, Mapping) or not section:
        problems.append(
            'matrix: missing or empty; give config keys with lists: "train.epochs" = [30, 100]'
        )
        return None
    matrix: dict[str, list[object]] = {}
    for key, values in section.items():
        where = f"matrix.{key}" if "." not in key else f'matrix."{key}"'
        head = key.split(".", 1)[0]
        if head not in BASE_SECTIONS or (head in ("experiment", "arms") and "." not in key):
            problems.append(
                f"{where}: not a key of the config (a section, or section.setting); sections: "
                f"{', '.join(BASE_SECTIONS)}"
            )
        elif key == "experiment.name":
            problems.append(f"{where}: the suite names its experiments; it cannot vary the name")
        elif not isinstance(values, list) or not values:
            problems.append(
                f"{where}: expected a non-empty list of values, got {describe(values)}"
            )
        elif len(values) > MAX_COMBINATIONS:  # before the duplicate check: bounded work
            problems.append(
                f"{where}: {len(values):,} values; at most {MAX_COMBINATIONS:,} combinations in "
                "all"
            )
        elif _has_duplicate(values):
            problems.append(f"{where}: a value appears twice in its list")
        else:
            matrix[key] = values
    return matrix


def _has_duplicate(values: Sequence[object]) -> bool:
    """Whether two of ``values`` are equal (``==``, as ``list.count`` compares), in linear
    time: hashable values by hash, tables and arrays by their canonical JSON."""
    seen: set[object] = set()
    for value in values:
        key = value if isinstance(value, Hashable) else _canonical(value)
        if key in seen:
            return True
        seen.add(key)
    return False


def _canonical(value: object) -> tuple[str, str]:
    return ("unhashable", json.dumps(value, sort_keys=True, default=repr))


def _excludes(
    section: object,
    matrix: Mapping[str, list[object]] | None,
    arms: Sequence[str],
    problems: list[str],
) -> list[dict[str, object]]:
    if not isinstance(section, list) or not all(isinstance(e, Mapping) for e in section):
        problems.append("exclude: expected [[exclude]] tables of matrix keys and values")
        return []
    out: list[dict[str, object]] = []
    for i, entry in enumerate(section):
        if not entry:
            problems.append(f"exclude[{i}]: empty; it would exclude every combination")
            continue
        if EXCLUDED_ARMS in entry and not _arms_list(i, entry, arms, problems):
            continue
        for key, value in entry.items():
            if matrix is None or key == EXCLUDED_ARMS:
                continue
            values = _excludable(matrix, key)
            if values is None:
                problems.append(
                    f'exclude[{i}]."{key}": not a matrix key (or a setting inside a whole-table '
                    f"one); the matrix varies {', '.join(matrix) or 'nothing'}"
                )
            elif value not in values:
                problems.append(f'exclude[{i}]."{key}": {describe(value)} is not among its values')
        out.append(dict(entry))
    return out


def _arms_list(
    i: int, entry: Mapping[str, object], arms: Sequence[str], problems: list[str]
) -> bool:
    """An exclude's ``arms``: a non-empty list of arm names the suite has, with a condition."""
    value = entry[EXCLUDED_ARMS]
    where = f"exclude[{i}].{EXCLUDED_ARMS}"
    if not isinstance(value, list) or not value or not all(isinstance(a, str) for a in value):
        problems.append(f"{where}: expected a non-empty list of arm names, got {describe(value)}")
        return False
    unknown = [a for a in value if a not in arms]
    if unknown:
        problems.append(
            f"{where}: no arm named {', '.join(map(repr, unknown))}; the suite's arms: "
            f"{', '.join(arms) or 'none'}"
        )
        return False
    if len(entry) == 1:
        problems.append(
            f"{where}: names no matrix key to match, so it would drop the arms everywhere; "
            "leave them out of [base.arms] instead"
        )
        return False
    return True


def _excludable(matrix: Mapping[str, list[object]], key: str) -> list[object] | None:
    """The values an exclude's ``key`` can match: a matrix key's list, or for a setting inside a
    whole-table matrix key (``"train.optimizer"`` when the matrix varies ``train``) the values
    that setting takes in those tables; None when the key is neither."""
    if key in matrix:
        return matrix[key]
    for head, tables in matrix.items():
        if key.startswith(head + "."):
            found = [_lookup(t, key[len(head) + 1 :]) for t in tables]
            return [v for v in found if v is not _ABSENT]
    return None


def _lookup(value: object, path: str) -> object:
    for part in path.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return _ABSENT
        value = value[part]
    return value


def _matches(factors: Mapping[str, object], exclude: Mapping[str, object]) -> bool:
    for key, value in exclude.items():
        if key == EXCLUDED_ARMS:
            continue
        if key in factors:
            if factors[key] != value:
                return False
            continue
        heads = [h for h in factors if key.startswith(h + ".")]
        if not heads or _lookup(factors[heads[0]], key[len(heads[0]) + 1 :]) != value:
            return False
    return True


def _drop_arms(
    doc: dict[str, Any], factors: Mapping[str, object], partial: Sequence[Mapping[str, object]]
) -> None:
    """Remove the arms an ``[[exclude]]`` with ``arms`` names from a combination it matches."""
    arms = doc.get("arms")
    for exclude in partial:
        if isinstance(arms, dict) and _matches(factors, exclude):
            names = exclude[EXCLUDED_ARMS]
            assert isinstance(names, list)  # checked by _arms_list
            for arm in names:
                arms.pop(arm, None)


def _set_dotted(doc: dict[str, Any], key: str, value: object) -> None:
    *path, last = key.split(".")
    node = doc
    walked: list[str] = []
    for part in path:
        walked.append(part)
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ExperimentConfigError(".".join(walked), "is a value in [base], not a table")
        node = child
    node[last] = value


def _shown(factors: Mapping[str, object]) -> str:
    return ", ".join(f"{key} = {describe(value)}" for key, value in factors.items())
