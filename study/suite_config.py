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

:func:`load_suite` expands the matrix in file order (the first key varies slowest), drops the
excluded combinations, names each experiment ``SUITE-V1-V2-...`` from its values, and
validates every expanded config exactly as ``dynl2 run`` validates one, before anything is
written. Every problem found is reported, one line each (:class:`SuiteConfigError`), so a user
fixes a suite in one pass rather than one error per try.
"""

from __future__ import annotations

import copy
import itertools
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from trainers._fields import describe

from .arms import NAME, NAME_RULE
from .config_file import ExperimentConfigError, read_config
from .errors import StudyError
from .experiment import ExperimentConfig, parse_experiment

SECTIONS = ("suite", "base", "matrix", "exclude")
BASE_SECTIONS = ("experiment", "data", "model", "train", "search", "arms", "evaluate")
MAX_WITHOUT_YES = 64  # experiments a suite may expand to unless the user confirms more
MAX_EXPERIMENTS = 1024  # and at most, confirmed or not
_NOT_NAME = re.compile(r"[^A-Za-z0-9_-]")
_KINDS = {"data": "dataset", "model": "kind"}  # what names a whole-section value


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
        document = read_config(path)
    except ExperimentConfigError as exc:
        raise SuiteConfigError([str(exc)]) from None
    return parse_suite(document, confirmed=confirmed)


def parse_suite(document: Mapping[str, Any], *, confirmed: bool = False) -> Suite:
    problems: list[str] = []
    for key in document:
        if key not in SECTIONS:
            problems.append(f"{key}: unknown section; allowed: {', '.join(SECTIONS)}")
    name = _suite_name(document.get("suite"), problems)
    base = _base(document.get("base"), problems)
    matrix = _matrix(document.get("matrix"), problems)
    excludes = _excludes(document.get("exclude", []), matrix, problems)
    if problems or name is None or base is None or matrix is None:
        raise SuiteConfigError(problems or ["suite: nothing to expand"])
    keys = tuple(matrix)
    combinations = [
        dict(zip(keys, values, strict=True))
        for values in itertools.product(*matrix.values())
        if not any(_matches(dict(zip(keys, values, strict=True)), ex) for ex in excludes)
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
        elif any(values.count(v) > 1 for v in values):
            problems.append(f"{where}: a value appears twice in its list")
        else:
            matrix[key] = values
    return matrix


def _excludes(
    section: object, matrix: Mapping[str, list[object]] | None, problems: list[str]
) -> list[dict[str, object]]:
    if not isinstance(section, list) or not all(isinstance(e, Mapping) for e in section):
        problems.append("exclude: expected [[exclude]] tables of matrix keys and values")
        return []
    out: list[dict[str, object]] = []
    for i, entry in enumerate(section):
        if not entry:
            problems.append(f"exclude[{i}]: empty; it would exclude every combination")
            continue
        for key, value in entry.items():
            if matrix is None:
                continue
            if key not in matrix:
                problems.append(
                    f'exclude[{i}]."{key}": not a matrix key; the matrix varies '
                    f"{', '.join(matrix) or 'nothing'}"
                )
            elif value not in matrix[key]:
                problems.append(f'exclude[{i}]."{key}": {describe(value)} is not among its values')
        out.append(dict(entry))
    return out


def _matches(factors: Mapping[str, object], exclude: Mapping[str, object]) -> bool:
    return all(key in factors and factors[key] == value for key, value in exclude.items())


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
