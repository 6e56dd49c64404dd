"""argparse pieces the ``dynl2`` verbs share: the ``--storage`` and ``--batch`` flags and the
whole-number types, each refusing a bad value with one line (exit status 2)."""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable

from study.config.experiment import MAX_BATCH, MAX_WORKERS
from trainers.models import MODULE_NAME


def storage_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--storage",
        metavar="URL",
        help="database URL (default: $DYNL2_STORAGE, else sqlite in ./dynl2-workspace/); a "
        "password in it is visible to other local users in ps: prefer $DYNL2_STORAGE",
    )


def code_flag(p: argparse.ArgumentParser, what: str) -> None:
    """``--allow-code PREFIX`` (repeatable): module-name prefixes whose code may run."""
    p.add_argument(
        "--allow-code", action="append", default=[], type=_module, metavar="PREFIX", help=what
    )


def _module(text: str) -> str:
    if not MODULE_NAME.fullmatch(text):
        raise argparse.ArgumentTypeError(
            f"expected a module name (dotted Python identifiers, e.g. lab.models), got {text!r}"
        )
    return text


def workers_flag(
    p: argparse.ArgumentParser, what: str = "worker processes", default: int = 1
) -> None:
    p.add_argument(
        "--workers",
        type=up_to(MAX_WORKERS),
        default=default,
        help=f"{what} (default {default}, at most {MAX_WORKERS})",
    )


def batch_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--batch",
        type=_batch,
        metavar="K",
        help=f"trials of one arm trained together as one fused model (1 to {MAX_BATCH}; "
        "default: [search] batch, else chosen for the device: see docs/trainer.md)",
    )


def _batch(text: str) -> int:
    value = positive(text)
    if value > MAX_BATCH:
        raise argparse.ArgumentTypeError(
            f"expected a whole number from 1 to {MAX_BATCH}, got {text!r}"
        )
    return value


def up_to(most: int) -> Callable[[str], int]:
    """An argparse type: a whole number from 1 to ``most``, in ASCII digits."""

    def whole(text: str) -> int:
        if not re.fullmatch(r"[0-9]{1,10}", text, re.ASCII) or not 1 <= int(text) <= most:
            shown = text if len(text) <= 24 else text[:21] + "..."
            raise argparse.ArgumentTypeError(
                f"expected a whole number from 1 to {most}, got {shown!r}"
            )
        return int(text)

    return whole


def positive(text: str) -> int:
    """An argparse type: a whole number >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}")
    return value
