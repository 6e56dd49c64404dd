"""Data loaders for dynl2's ``[data] loader = "data:FUNCTION"``: each returns a mapping of
arrays named ``x``, ``y`` (and optionally ``x_val``, ``y_val``, ``x_test``, ``y_test``)."""

from __future__ import annotations

import numpy as np


def digits_images(limit: int = 0) -> dict[str, np.ndarray]:
    """scikit-learn's bundled 8x8 digits as images ``[N, 1, 8, 8]`` (``limit`` > 0 keeps the
    first ``limit`` examples)."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = bunch.data.astype(np.float32).reshape(-1, 1, 8, 8)
    y = bunch.target.astype(np.int64)
    if limit > 0:
        x, y = x[:limit], y[:limit]
    return {"x": x, "y": y}
