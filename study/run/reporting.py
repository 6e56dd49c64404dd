"""Reports of experiments: built from the store (:mod:`reports`), kept in it, written to a file
whole or not at all (:mod:`study.run.files`)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from storage import Store
from study.errors import StudyError
from study.run.files import StagedFile, check_target
from study.run.runs import stored_experiment


@dataclass(frozen=True)
class ReportResult:
    """A report built, kept in the store and written."""

    path: Path  # the HTML file
    seconds: float  # to build, record and write it
    summary: dict[str, Any]  # the verdict's numbers (what `dynl2 report --json` prints)


def verdict_summary(store: Store, experiment: str) -> dict[str, Any]:
    """The report's numbers of ``experiment`` (what ``dynl2 report --json`` prints), computed
    and not written: what ``dynl2 evaluate`` ends with."""
    from reports import build_report_data, summary_json

    return summary_json(build_report_data(store, stored_experiment(store, experiment)))


def write_report(store: Store, experiment: str, path: Path) -> ReportResult:
    """Build, record and write the report of ``experiment`` to ``path``.

    The target is checked before anything is computed. The page is then written beside it,
    recorded in the store, and only then renamed into place: a report the store could not
    keep is not written, and the one step left after the store's commit is the rename."""
    from reports import build_report_data, render_html, summary_json

    started = time.perf_counter()
    check_target(path)
    data = build_report_data(store, stored_experiment(store, experiment))
    html = render_html(data)
    numbers = summary_json(data)
    keep_and_write(
        path,
        html,
        lambda: store.record_report(experiment, str(path), numbers, html),
        f"dynl2 report {experiment} --from-store -o FILE writes it",
    )
    return ReportResult(path, time.perf_counter() - started, numbers)


def keep_and_write(path: Path, html: str, record: Callable[[], int], export: str) -> None:
    """Write ``html`` beside ``path``, keep it in the store (``record`` returns its id), and
    only then rename it into place: a page the store could not keep is not written, and the
    one step left after the store's commit is the rename (``export`` says how to get the page
    from the store if that fails)."""
    staged = StagedFile(path, html)
    try:
        report_id = record()
    except BaseException:
        staged.discard()
        raise
    try:
        staged.commit()
    except StudyError as exc:
        raise type(exc)(
            f"{exc}; the report is kept in the store (id {report_id}): {export}"
        ) from None


def compare_html(store: Store, experiments: list[str]) -> str:
    """One page across ``experiments`` (each built once, however often it is named)."""
    from reports import build_report_data, render_compare_html

    built = {
        name: build_report_data(store, stored_experiment(store, name)) for name in set(experiments)
    }
    return render_compare_html([built[name] for name in experiments])
