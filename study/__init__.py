"""dynl2's study layer: experiment configs, Optuna studies per arm, workers and the CLI."""

from .cli import main

__all__ = ["main"]
