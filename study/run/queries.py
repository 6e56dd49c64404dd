"""Read-side views of an experiment that more than one verb shows: the trials with the test
scores of the configurations that were evaluated, and a DataFrame as text (CSV or JSON records,
the way ``dynl2 trials`` and ``dynl2 serve`` give one; dict and list cells, such as a trial's
params, as JSON text in CSV, not Python reprs).

``dynl2 sql`` prints rows, not a DataFrame: :func:`plain_text` writes the text pandas would for
the rows most queries give (whole numbers, text, NULL), and the verb builds a DataFrame, and
waits for pandas' import, only for the others.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

# pandas is imported by the functions that take or build a frame; the store and the progress
# views (Optuna, SQLAlchemy) only for the trials.
if TYPE_CHECKING:
    import pandas as pd

    from storage import Store
    from study.config.experiment import ExperimentConfig


def trials_with_tests(store: Store, config: ExperimentConfig, arm: str | None) -> pd.DataFrame:
    """Trials, plus the mean test metrics over the seeds where the trial's params were
    evaluated (the current best trial of each arm; evaluations of an earlier best are left
    out)."""
    from study.run.progress import current_evaluations

    trials = store.trials(config.name, arm)
    evals, _ = current_evaluations(store, config)
    trials["test_loss"] = float("nan")
    trials["test_acc"] = float("nan")
    trials["test_seeds"] = 0
    for (arm_name, replicate), group in evals.groupby(["arm", "replicate"]):
        params = dict(group.iloc[0]["params"])
        match = (
            (trials["arm"] == arm_name)
            & (trials["replicate"] == replicate)
            & trials["params"].map(params.__eq__)
        )
        if params and match.any():
            trials.loc[match, "test_loss"] = group["test_loss"].mean()
            trials.loc[match, "test_acc"] = group["test_acc"].mean()
            trials.loc[match, "test_seeds"] = len(group)
    return trials


def json_cells(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with every dict or list cell replaced by its JSON text."""
    frame = frame.copy()
    for i in range(frame.shape[1]):
        column = frame.iloc[:, i]
        if any(isinstance(v, dict | list) for v in column):  # an empty column has none
            frame.isetitem(
                i, column.map(lambda v: json.dumps(v) if isinstance(v, dict | list) else v)
            )
    return frame


def frame_csv(frame: pd.DataFrame) -> str:
    return str(json_cells(frame).to_csv(index=False))


def frame_json(frame: pd.DataFrame) -> str:
    """JSON records; NaN as null, timestamps in ISO 8601, floats to 15 significant digits."""
    return str(frame.to_json(orient="records", date_format="iso", double_precision=15))


_INT64 = (-(2**63), 2**63 - 1)  # what pandas keeps in an int64 column
_ESCAPES = str.maketrans({"\t": "\\t", "\r": "\\r", "\n": "\\n"})  # as pandas' table shows them


def plain_text(
    names: Sequence[str], rows: Sequence[Sequence[Any]], fmt: str, max_colwidth: int
) -> str | None:
    """What ``dynl2 sql`` prints of ``rows`` (a ``table``, ``csv`` or ``json``), exactly as
    pandas writes ``pd.DataFrame(rows, columns=names)`` (with :func:`frame_csv`,
    :func:`frame_json`, or a table cut at ``max_colwidth`` characters a cell), for rows whose
    every column is whole numbers (an int64 column), text with or without NULLs (a string
    column) or NULLs alone; None for any other (floats, booleans, arrays, a name with a tab or
    a line break), which the caller prints through pandas.
    ``tests/study/test_queries.py`` holds the two against each other."""
    if not names or any(n != n.translate(_ESCAPES) for n in names):
        return None
    found = [_kind([row[i] for row in rows]) for i in range(len(names))]
    kinds = [kind for kind in found if kind is not None]
    if len(kinds) < len(found):
        return None
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(names)
        writer.writerows([["" if v is None else v for v in row] for row in rows])
        return out.getvalue()
    if fmt == "json":
        texts = [*names, *(v for row in rows for v in row if isinstance(v, str))]
        if any("\x7f" in t for t in texts):  # the one character pandas leaves unescaped
            return None
        records = [dict(zip(names, row, strict=True)) for row in rows]
        return json.dumps(records, separators=(",", ":")).replace("/", "\\/") + "\n"
    if not rows:
        return "(no rows)\n"
    columns = [
        _column(
            f" {name}" if kind == "int" else name, [_shown(v, kind) for v in column], max_colwidth
        )
        for name, kind, column in zip(names, kinds, zip(*rows, strict=True), strict=True)
    ]
    widths = [max(len(cell) for cell in column) for column in columns]
    lines = [
        " ".join(column[i].ljust(width) for column, width in zip(columns, widths, strict=True))
        for i in range(len(rows) + 1)
    ]
    return "\n".join(lines) + "\n"


def _kind(values: list[Any]) -> str | None:
    """The pandas column ``values`` make: ``int`` (int64), ``text`` (strings, NULL as NaN),
    ``null`` (NULLs alone, an object column); None for any other."""
    if all(v is None for v in values):
        return "null"
    if all(isinstance(v, str) or v is None for v in values):
        return "text"
    if all(type(v) is int and _INT64[0] <= v <= _INT64[1] for v in values):
        return "int"
    return None


def _shown(value: Any, kind: str) -> str:
    """A cell as pandas' table shows it: text with its tabs and line breaks escaped, a NULL as
    ``NaN`` in text and ``None`` on its own. (A numeric column's header gets a space before it
    instead: :func:`plain_text`.)"""
    if kind == "int":
        return str(value)
    if value is None:
        return "None" if kind == "null" else "NaN"
    return str(value).translate(_ESCAPES)


def _column(name: str, cells: list[str], max_colwidth: int) -> list[str]:
    """The header and cells of one column of pandas' table: cells cut at ``max_colwidth``
    (``...`` in the cut's last three characters) and right-aligned to the widest of them and
    the header (at most ``max_colwidth``), the header right-aligned over them."""
    width = min(max([len(name), *(len(c) for c in cells)]), max_colwidth)
    cells = [c[: width - 3] + "..." if len(c) > width else c for c in cells]
    cells = [c.rjust(width) for c in cells]
    return [name.rjust(max(width, len(name))), *cells]
