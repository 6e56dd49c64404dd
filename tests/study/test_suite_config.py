"""Suite files (study.config.suite): a base experiment and a matrix of overrides, expanded in
file order, named from their values, every expanded config validated before anything runs, and
every problem reported at once, one line each."""

from __future__ import annotations

import copy
import tracemalloc
from pathlib import Path
from typing import Any

import pytest

from study.config.suite import (
    MAX_COMBINATIONS,
    MAX_EXPERIMENTS,
    MAX_WITHOUT_YES,
    SuiteConfigError,
    load_suite,
    parse_suite,
)

BASE: dict[str, Any] = {
    "experiment": {"seed": 3},
    "data": {"dataset": "digits"},
    "model": {"kind": "mlp", "hidden": [16]},
    "train": {"optimizer": "adam", "lr": {"low": 1e-3, "high": 3e-2, "log": True},
              "epochs": 3, "batch_size": 100, "device": "cpu"},
    "search": {"n_trials": 2, "sampler": "random", "pruner": "none", "metric": "val_acc"},
    "arms": {"fixed": {"scheme": "fixed", "lam": {"low": 1e-6, "high": 1e-1, "log": True}},
             "dynamic": {"scheme": "dynamic", "alpha": {"low": 1e-4, "high": 1.0, "log": True}}},
    "evaluate": {"seeds": 2},
}  # fmt: skip


def _suite(matrix: dict[str, Any], exclude: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    doc: dict[str, Any] = {"suite": {"name": "when"}, "base": copy.deepcopy(BASE)}
    doc["matrix"] = matrix
    if exclude is not None:
        doc["exclude"] = exclude
    return doc


def test_the_matrix_expands_in_file_order_minus_the_exclusions() -> None:
    suite = parse_suite(
        _suite(
            {
                "data.dataset": ["mnist1d", "digits"],
                "model": [{"kind": "mlp", "hidden": [16]}, {"kind": "cnn", "channels": 8}],
                "train.optimizer": ["adam", "sgd"],
            },
            exclude=[{"data.dataset": "digits", "model": {"kind": "cnn", "channels": 8}}],
        )
    )
    assert suite.name == "when"
    assert suite.factors == ("data.dataset", "model", "train.optimizer")
    assert [e.name for e in suite.experiments] == [
        "when-mnist1d-mlp-adam", "when-mnist1d-mlp-sgd", "when-mnist1d-cnn-adam",
        "when-mnist1d-cnn-sgd", "when-digits-mlp-adam", "when-digits-mlp-sgd",
    ]  # fmt: skip
    cnn_sgd = suite.experiments[3]
    assert cnn_sgd.config.name == "when-mnist1d-cnn-sgd"
    assert cnn_sgd.config.data["dataset"] == "mnist1d" and cnn_sgd.config.model["kind"] == "cnn"
    assert cnn_sgd.config.train_fixed["optimizer"] == "sgd"
    assert cnn_sgd.config.seed == 3  # the rest of the base stays as it is
    assert dict(cnn_sgd.factors) == {
        "data.dataset": "mnist1d", "model": {"kind": "cnn", "channels": 8},
        "train.optimizer": "sgd",
    }  # fmt: skip


def test_names_are_made_from_values() -> None:
    suite = parse_suite(_suite({"train.epochs": [3, 10], "train.batch_size": [50, 100]}))
    assert [e.name for e in suite.experiments] == [
        "when-3-50",
        "when-3-100",
        "when-10-50",
        "when-10-100",
    ]
    floats = parse_suite(_suite({"arms.fixed.lam": [0.001, 1e-05]}))
    assert [e.name for e in floats.experiments] == ["when-0p001", "when-1e-05"]


def test_an_exclude_with_arms_drops_those_arms_where_its_keys_match() -> None:
    doc = _suite(
        {"train.optimizer": ["adam", "sgd"], "arms.swd": [{"scheme": "swd"}]},
        exclude=[{"train.optimizer": "sgd", "arms": ["swd"]}],
    )
    suite = parse_suite(doc)
    assert [e.name for e in suite.experiments] == ["when-adam-swd0", "when-sgd-swd0"]
    adam, sgd = suite.experiments
    assert [a.name for a in adam.config.arms] == ["dynamic", "fixed", "swd"]
    assert [a.name for a in sgd.config.arms] == ["dynamic", "fixed"]  # valid without swd
    # Without the exclude the SGD experiment is refused (swd serves Adam only).
    del doc["exclude"]
    assert _problems(doc) == (
        "experiment 'when-sgd-swd0' (train.optimizer = 'sgd', arms.swd = {'scheme': 'swd'}): "
        "train.optimizer: scheme 'swd' needs optimizer 'adam', got 'sgd'",
    )


def test_an_exclude_can_name_a_setting_inside_a_whole_table_value() -> None:
    adam = {"optimizer": "adam", "lr": {"low": 1e-3, "high": 3e-2, "log": True}, "epochs": 3}
    sgd = {"optimizer": "sgd", "lr": {"low": 1e-2, "high": 0.3, "log": True}, "epochs": 3}
    doc = _suite(
        {"train": [adam, sgd], "train.epochs": [3, 5], "arms.swd": [{"scheme": "swd"}]},
        exclude=[
            {"train.optimizer": "sgd", "arms": ["swd"]},
            {"train.optimizer": "adam", "train.epochs": 5},
        ],
    )
    suite = parse_suite(doc)
    # A whole [train] table is named by its optimizer; "train.epochs" applies inside it.
    assert [e.name for e in suite.experiments] == [
        "when-adam-3-swd0", "when-sgd-3-swd0", "when-sgd-5-swd0",
    ]  # fmt: skip
    by_name = {e.name: e for e in suite.experiments}
    assert by_name["when-sgd-5-swd0"].config.train_fixed["epochs"] == 5
    assert by_name["when-sgd-5-swd0"].config.train_ranges["lr"].high == 0.3
    assert [a.name for a in by_name["when-sgd-3-swd0"].config.arms] == ["dynamic", "fixed"]
    assert [a.name for a in by_name["when-adam-3-swd0"].config.arms] == ["dynamic", "fixed", "swd"]
    doc["exclude"] = [{"train.optimizer": "rmsprop"}, {"train.momentum": 0.9}]
    assert _problems(doc) == (
        "exclude[0].\"train.optimizer\": 'rmsprop' is not among its values",
        'exclude[1]."train.momentum": 0.9 is not among its values',
    )


def test_a_suite_file_is_read_with_the_config_reader(tmp_path: Path) -> None:
    path = tmp_path / "suite.toml"
    path.write_text(
        '[suite]\nname = "s"\n[base]\ndata = { dataset = "digits" }\n'
        '[base.arms.none]\nscheme = "none"\n[matrix]\n"train.epochs" = [2, 4]\n'
    )
    assert [e.name for e in load_suite(path).experiments] == ["s-2", "s-4"]
    with pytest.raises(SuiteConfigError) as info:
        load_suite(tmp_path / "missing.toml")
    assert len(info.value.problems) == 1 and "missing.toml" in info.value.problems[0]


def _problems(doc: dict[str, Any], **kwargs: Any) -> tuple[str, ...]:
    with pytest.raises(SuiteConfigError) as info:
        parse_suite(doc, **kwargs)
    assert str(info.value) == "\n".join(info.value.problems)
    return info.value.problems


BAD = [
    ("unknown dotted key", {"train.epoch": [3, 5]}, None,
     ["experiment 'when-3' (train.epoch = 3): train.epoch: [train] has no setting 'epoch'",
      "experiment 'when-5' (train.epoch = 5): train.epoch: [train] has no setting 'epoch'"]),
    ("not a key of the config", {"epochs": [3]}, None, ['matrix.epochs: not a key']),
    ("empty matrix", {}, None, ["matrix: missing or empty"]),
    ("empty list", {"train.epochs": []}, None, ['matrix."train.epochs": expected a non-empty']),
    ("a value twice", {"train.epochs": [3, 3]}, None,
     ['matrix."train.epochs": a value appears twice']),
    ("a table twice", {"model": [{"kind": "mlp"}, {"kind": "mlp", "hidden": [8]}, {"kind": "mlp"}]},  # noqa: E501
     None, ["matrix.model: a value appears twice"]),
    ("an array twice", {"model.hidden": [[8, 8], [8], [8, 8]]}, None,
     ['matrix."model.hidden": a value appears twice']),
    ("one and one point zero", {"train.epochs": [1, 1.0]}, None, ["a value appears twice"]),
    ("more values than combinations", {"train.epochs": list(range(MAX_COMBINATIONS + 1))},
     None, [f'matrix."train.epochs": {MAX_COMBINATIONS + 1:,} values; at most']),
    ("varying the name", {"experiment.name": ["a", "b"]}, None, ["cannot vary the name"]),
    ("cnn on digits", {"model": [{"kind": "cnn"}]}, None,
     ["experiment 'when-cnn' (model = {'kind': 'cnn'}): model.kind: cnn needs sequence data"]),
    ("swd with sgd", {"train.optimizer": ["sgd"], "arms.swd": [{"scheme": "swd"}]}, None,
     ["train.optimizer: scheme 'swd' needs optimizer 'adam', got 'sgd'"]),
    ("duplicate names", {"arms.fixed.lam": [0.1, "0p1"]}, None,
     ["experiment 'when-0p1' (arms.fixed.lam = '0p1'): the same name as (arms.fixed.lam = 0.1)"]),
    ("exclude of an unknown key", {"train.epochs": [3, 5]}, [{"train.lr": 0.1}],
     ['exclude[0]."train.lr": not a matrix key (or a setting inside a whole-table one); '
      'the matrix varies train.epochs']),
    ("exclude of an unknown value", {"train.epochs": [3, 5]}, [{"train.epochs": 7}],
     ['exclude[0]."train.epochs": 7 is not among its values']),
    ("everything excluded", {"train.epochs": [3]}, [{"train.epochs": 3}],
     ["exclude: every combination of the matrix is excluded"]),
    ("exclude of an unknown arm", {"train.epochs": [3, 5]},
     [{"train.epochs": 3, "arms": ["fixed", "swd"]}],
     ["exclude[0].arms: no arm named 'swd'; the suite's arms: fixed, dynamic"]),
    ("exclude of arms everywhere", {"train.epochs": [3, 5]}, [{"arms": ["fixed"]}],
     ["exclude[0].arms: names no matrix key to match"]),
    ("exclude of arms not a list", {"train.epochs": [3, 5]},
     [{"train.epochs": 3, "arms": "fixed"}],
     ["exclude[0].arms: expected a non-empty list of arm names, got 'fixed'"]),
    ("exclude of every arm", {"train.epochs": [3, 5]},
     [{"train.epochs": 3, "arms": ["fixed", "dynamic"]}],
     ["experiment 'when-3' (train.epochs = 3): arms:"]),
]  # fmt: skip


@pytest.mark.parametrize(
    ("matrix", "exclude", "fragments"), [pytest.param(*case[1:], id=case[0]) for case in BAD]
)
def test_bad_suites_name_every_problem_one_line_each(matrix, exclude, fragments) -> None:
    problems = _problems(_suite(matrix, exclude))
    assert len(problems) == len(fragments), problems
    for line, fragment in zip(problems, fragments, strict=True):
        assert fragment in line, (line, fragment)
        assert "\n" not in line


def test_bad_sections_are_all_reported_together() -> None:
    doc = _suite({"train.epochs": [3]})
    doc["extra"] = {}
    doc["suite"] = {"name": "a b", "owner": "me"}
    doc["base"]["experiment"]["name"] = "x"
    problems = _problems(doc)
    assert problems == (
        "extra: unknown section; allowed: suite, base, matrix, exclude",
        "suite.owner: unknown setting; allowed: name",
        "suite.name: a suite name is 1 to 64 letters (A-Z, a-z), digits, '-' or '_', got 'a b'",
        "base.experiment.name: the suite names its experiments; leave it out",
    )


def test_more_than_the_sane_number_needs_confirmation() -> None:
    big = {"train.epochs": list(range(1, 9)), "train.batch_size": list(range(10, 19))}
    (line,) = _problems(_suite(big))
    assert line == f"matrix: expands to 72 experiments; more than {MAX_WITHOUT_YES} needs --yes"
    assert len(parse_suite(_suite(big), confirmed=True).experiments) == 72


def test_experiments_of_one_suite_share_their_metric() -> None:
    matrix = {
        "data": [{"dataset": "digits"}, {"dataset": "linear"}],
        "search.metric": ["val_acc", "val_loss"],
    }
    problems = _problems(
        _suite(matrix, exclude=[{"data": {"dataset": "linear"}, "search.metric": "val_acc"}])
    )
    assert problems == (
        "matrix: the experiments would search different metrics (val_acc, val_loss); a suite "
        "pools one difference, so its experiments share [search] metric (put regression and "
        "classification in two suites)",
    )


BOMBS = [
    ("7x20", 7, 20),  # 1.28e9 combinations: 2.8 GB, then a MemoryError
    ("5x14", 5, 14),  # 537,824: hundreds of MB before the cap
    ("2x200", 2, 200),  # 40,000: past the bound, not past memory
]


@pytest.mark.parametrize(("keys", "values"), [b[1:] for b in BOMBS], ids=[b[0] for b in BOMBS])
def test_a_matrix_is_counted_before_it_is_built(keys: int, values: int) -> None:
    """The combinations are counted, not built, before the caps: refusing a matrix bomb takes
    no memory (measured by tracemalloc, not by time)."""
    settings = ["train.epochs", "train.batch_size", "evaluate.seeds", "experiment.seed",
                "search.n_trials", "train.lr", "model.hidden"][:keys]  # fmt: skip
    matrix = {key: list(range(1, values + 1)) for key in settings}
    tracemalloc.start()
    try:
        (line,) = _problems(_suite(matrix))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    total = values**keys
    assert line.startswith(f"matrix: {' × '.join([str(values)] * keys)} = {total:,} combinations")
    assert f"at most {MAX_COMBINATIONS:,} before [[exclude]]" in line
    assert peak < 20 * 2**20, f"{peak / 2**20:.0f} MiB to refuse it"


class _Counted(int):
    """An int that counts its equality tests: the duplicate check's work, without a clock."""

    compared = 0

    def __eq__(self, other: object) -> bool:
        _Counted.compared += 1
        return int(self) == other

    __hash__ = int.__hash__


def test_the_duplicate_check_is_linear() -> None:
    """30,000 values took 10 s to refuse: the check compared every pair (list.count)."""
    _Counted.compared = 0
    values = [_Counted(i) for i in range(4000)]
    (line,) = _problems(_suite({"train.epochs": values}))
    assert line.startswith(f"matrix: expands to 4000 experiments; at most {MAX_EXPERIMENTS}")
    assert _Counted.compared < 4 * len(values), _Counted.compared  # 16 million pairwise
