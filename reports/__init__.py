"""dynl2's reports: read the store, compute the statistics, render one self-contained HTML page.

Two steps (house style 10): :func:`build_report_data` computes a frozen :class:`ReportData`
(numbers, tables, statistics) that tests check without HTML; :func:`render_html` draws it with
autoescaping Jinja2 templates and Plotly. Imports ``storage`` only: never ``study`` or torch.
The experiment's config comes in typed and validated from the caller (``study`` parses it
once); :class:`ExperimentSpec` names what the report reads of it.

The suite report takes the same two steps over plain inputs, no store: a :class:`SuiteInput`
(each experiment's differences against fixed) goes into :func:`build_suite_data`, whose
:class:`SuiteReportData` :func:`render_suite_html` draws and :func:`suite_json` writes out.
"""

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the same names, for type checkers; at run time __getattr__ imports them
    from reports.data import build_report_data, build_report_verdict
    from reports.meta import Pooled, pool
    from reports.model import ReportData
    from reports.render import render_compare_html, render_html, render_suite_html
    from reports.spec import ExperimentSpec
    from reports.stats import MeanCI, Paired, mean_ci, paired
    from reports.suite import (
        SuiteEntry,
        SuiteInput,
        SuiteReportData,
        build_suite_data,
    )
    from reports.suite_json import suite_json
    from reports.summary import summary_json

# The module of each public name, imported when the name is first asked for (PEP 562, as
# ``storage`` does): the statistics import SciPy, the pages Jinja2 and Plotly, and a reader of
# one arm's interval (``dynl2 status``, through :mod:`reports.arms`) needs none of them.
_MODULES: dict[str, tuple[str, ...]] = {
    "data": ("build_report_data", "build_report_verdict"),
    "meta": ("Pooled", "pool"),
    "model": ("ReportData",),
    "render": ("render_compare_html", "render_html", "render_suite_html"),
    "spec": ("ExperimentSpec",),
    "stats": ("MeanCI", "Paired", "mean_ci", "paired"),
    "suite": ("SuiteEntry", "SuiteInput", "SuiteReportData", "build_suite_data"),
    "suite_json": ("suite_json",),
    "summary": ("summary_json",),
}
_HOME = {name: module for module, names in _MODULES.items() for name in names}


def __getattr__(name: str) -> object:
    module = _HOME.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value  # the next lookup finds it without coming here
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


__all__ = [
    "ExperimentSpec",
    "MeanCI",
    "Paired",
    "Pooled",
    "ReportData",
    "SuiteEntry",
    "SuiteInput",
    "SuiteReportData",
    "build_report_data",
    "build_report_verdict",
    "build_suite_data",
    "mean_ci",
    "paired",
    "pool",
    "render_compare_html",
    "render_html",
    "render_suite_html",
    "suite_json",
    "summary_json",
]
