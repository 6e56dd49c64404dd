"""Errors raised by the trainer layer.

Every deliberate error derives from :class:`TrainerError`, so callers (the CLI, the study layer)
can tell a user's mistake or a failed run apart from a bug.
"""

from __future__ import annotations


class TrainerError(Exception):
    """Base class of every error the trainer raises on purpose."""


class ConfigError(TrainerError, ValueError):
    """A configuration value is not allowed.

    ``key`` names the offending field (``scheme.alpha``, ``epochs``) so that front ends can map it
    to their own spelling (a CLI flag, a TOML key).
    """

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}")
        self.key = key
        self.detail = message


class DivergenceError(TrainerError):
    """Training produced a non-finite loss or weight.

    The run stops at the end of the epoch in which it happened; metrics of a diverged run are
    never reported as results.
    """

    def __init__(self, epoch: int, last_lam: float, what: str) -> None:
        super().__init__(
            f"training diverged in epoch {epoch}: {what} (last lambda {last_lam:.6g})"
        )
        self.epoch = epoch
        self.last_lam = last_lam
        self.what = what
