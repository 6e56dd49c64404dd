"""dynl2's study layer: experiment configs, Optuna studies per arm, workers and the CLI.

``study.main`` is the CLI's :func:`study.cli.main`, imported on first use: importing the
package itself stays cheap, so ``python -m study`` (``study/__main__.py``) can set up its
signal handling before the seconds of importing torch and Optuna.
"""

from __future__ import annotations

from typing import Any

__all__ = ["main"]


def __getattr__(name: str) -> Any:
    if name == "main":
        from .cli import main

        return main
    raise AttributeError(f"module 'study' has no attribute {name!r}")
