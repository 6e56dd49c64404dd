"""``dynl2 sql`` prints the rows most queries give without pandas
(:func:`study.run.queries.plain_text`): its text must be pandas' own, byte for byte, in every
format, and it must leave to pandas every column it does not know."""

from __future__ import annotations

import random

import pandas as pd
import pytest

from study.run.queries import frame_csv, frame_json, json_cells, plain_text

WIDTH = 60  # dynl2 sql's cut of a table cell
ALPHABET = ["a", "Z", " ", ",", '"', "'", "/", "\\", "\t", "\n", "\r", "\x01", "\x7f", "é",
            "中", "\u2028", "😀", "-", "0", "."]  # fmt: skip


def pandas_text(names: list[str], rows: list[list[object]], fmt: str) -> str:
    """What ``dynl2 sql`` printed through pandas (study.cli.experiments._print_frame)."""
    frame = pd.DataFrame(rows, columns=names)
    if fmt == "csv":
        return frame_csv(frame)
    if fmt == "json":
        return frame_json(frame) + "\n"
    if len(frame) == 0:
        return "(no rows)\n"
    return str(json_cells(frame).to_string(index=False, max_colwidth=WIDTH)) + "\n"


def text(rng: random.Random) -> str:
    return "".join(
        rng.choice(ALPHABET) for _ in range(rng.choice([0, 1, 2, 5, 30, 58, 59, 61, 80]))
    )


def column(rng: random.Random, n: int) -> list[object]:
    kind = rng.choice(["int", "big", "text", "text-null", "null"])
    if kind == "int":
        return [rng.randint(-1000, 10**6) for _ in range(n)]
    if kind == "big":
        return [rng.choice([2**63 - 1, -(2**63), 0, -1, 10**15]) for _ in range(n)]
    if kind == "null":
        return [None] * n
    if kind == "text":
        return [text(rng) for _ in range(n)]
    return [text(rng) if rng.random() < 0.6 else None for _ in range(n)]


def name(rng: random.Random, i: int) -> str:
    return rng.choice(["a", "id", "name", "x" * 70, "config", "é", "a b", "", "1"]) + f"{i}" * (
        i % 2
    )


@pytest.mark.parametrize("seed", range(60))
@pytest.mark.parametrize("fmt", ["table", "csv", "json"])
def test_plain_text_is_pandas_text(seed: int, fmt: str) -> None:
    rng = random.Random(seed)
    n_rows, n_columns = rng.choice([0, 1, 2, 7]), rng.choice([1, 2, 4])
    names = [name(rng, i) for i in range(n_columns)]
    if len(set(names)) < len(names):  # dynl2 sql makes them unique first
        names = [f"{n}_{i}" for i, n in enumerate(names)]
    columns = [column(rng, n_rows) for _ in names]
    rows = [list(r) for r in zip(*columns, strict=True)] if n_rows else []
    found = plain_text(names, rows, fmt, WIDTH)
    texts = [*names, *(v for row in rows for v in row if isinstance(v, str))]
    if fmt == "json" and any("\x7f" in t for t in texts):
        assert found is None  # pandas' JSON writes DEL as it is, Python's as \u007f
    else:
        assert found == pandas_text(names, rows, fmt)


@pytest.mark.parametrize(
    "rows",
    [
        [[1.5]],  # a float column: pandas' own float formatting
        [[True]],  # booleans
        [[1], [None]],  # whole numbers with a NULL: pandas makes them floats
        [[1], ["x"]],  # numbers and text in one column
        [[2**63]],  # past int64
        [[{"a": 1}]],  # JSON values
        [[[1, 2]]],
    ],
)
def test_other_columns_are_left_to_pandas(rows: list[list[object]]) -> None:
    assert plain_text(["a"], rows, "table", WIDTH) is None


@pytest.mark.parametrize("names", [["a\nb"], ["a\tb"], []])
def test_names_pandas_escapes_and_no_columns_are_left_to_pandas(names: list[str]) -> None:
    assert plain_text(names, [["x"] * len(names)], "table", WIDTH) is None
