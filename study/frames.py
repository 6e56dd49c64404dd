"""A DataFrame as text: CSV or JSON records, the way ``dynl2 trials`` and ``dynl2 serve`` give
one; dict and list cells (a trial's params) as JSON text in CSV, not Python reprs."""

from __future__ import annotations

import json

import pandas as pd

__all__ = ["frame_csv", "frame_json", "json_cells"]


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
