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
