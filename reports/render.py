"""Step two of a report: draw a :class:`ReportData` as one self-contained HTML page.

Jinja2 with autoescape renders every string from users or the database escaped; the only
markup passed through unescaped is ours: the stylesheet, plotly.js (inlined once) and the
figure fragments Plotly generates (whose JSON escapes ``<``, ``>`` and ``/``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cache

import jinja2
from markupsafe import Markup
from plotly.offline import get_plotlyjs  # type: ignore[import-untyped, unused-ignore]

from reports.common import kv_text
from reports.figures import (
    Figure,
    dynamics_figures,
    search_figures,
    sensitivity_figures,
    verdict_figures,
)
from reports.model import ReportData
from reports.stats import CUT, MeanCI, Paired, ci_text, p_text, signed, units_text
from reports.suite import SuiteReportData, factor_text
from reports.suite_figures import forest_figure, when_figure
from reports.suite_templates import SUITE, SUITE_CSS, SUITE_SECTIONS
from reports.tables import TOP_TRIALS
from reports.templates import COMPARE, CSS, REPORT

__all__ = ["render_compare_html", "render_html", "render_suite_html"]

SECTIONS = (
    ("verdict", "Verdict"),
    ("setup", "Setup"),
    ("search", "Search"),
    ("sensitivity", "Sensitivity"),
    ("dynamics", "Dynamics"),
    ("tables", "Tables"),
)
STATES = ("COMPLETE", "PRUNED", "FAIL", "RUNNING", "WAITING")


def render_html(data: ReportData) -> str:
    """The whole report as one HTML page: CSS and plotly.js inlined, nothing fetched."""
    figs = {
        "verdict": [_safe(f) for f in verdict_figures(data)],
        "search": [_safe(f) for f in search_figures(data)],
        "sensitivity": [_safe(f) for f in sensitivity_figures(data)],
        "dynamics": [_safe(f) for f in dynamics_figures(data)],
    }
    v = data.verdict
    decision = v.decision.decision if v.decision is not None else ""
    answer_class = {"better": "win", "worse": "loss", "equivalent": "even"}.get(decision, "")
    return (
        _env()
        .from_string(REPORT)
        .render(
            title=f"dynl2 report: {data.experiment}",
            css=Markup(CSS),
            plotlyjs=Markup(_plotlyjs()) if any(figs.values()) else None,
            sections=SECTIONS,
            states=STATES,
            top_n=TOP_TRIALS,
            d=data,
            v=v,
            s=data.setup,
            search=data.search,
            sens=data.sensitivity,
            dyn=data.dynamics,
            t=data.tables,
            figs=figs,
            digits=_digits(data),
            answer_class=answer_class,
            any_cut=any(
                ci is not None and ci.truncated
                for ci in [a.ci for a in v.arms] + [c.diff for c in v.comparisons]
            ),
            too_few=any(d.too_few for d in v.decisions)
            or any(a.ci is not None and a.ci.low is None and a.means for a in v.arms),
        )
    )


@dataclass(frozen=True)
class _CompareRow:
    experiment: str
    metric: str
    unit: str
    digits: int
    dynamic: MeanCI | None
    fixed: MeanCI | None
    main: Paired | None
    sentence: str
    warnings: tuple[str, ...]


def render_compare_html(datas: list[ReportData]) -> str:
    """One page across experiments: one verdict row per experiment (no figures)."""
    rows = []
    for data in datas:
        v = data.verdict
        by_arm = {a.arm: a.ci for a in v.arms}
        rows.append(
            _CompareRow(
                experiment=data.experiment,
                metric=v.metric,
                unit=v.unit,
                digits=_digits(data),
                dynamic=by_arm.get(v.dynamic_arm) if v.dynamic_arm else None,
                fixed=by_arm.get(v.fixed_arm) if v.fixed_arm else None,
                main=v.main,
                sentence=v.sentence,
                warnings=v.warnings,
            )
        )
    return (
        _env()
        .from_string(COMPARE)
        .render(
            title=f"dynl2: {len(rows)} experiments compared",
            css=Markup(CSS),
            plotlyjs=None,
            rows=rows,
        )
    )


def render_suite_html(data: SuiteReportData) -> str:
    """The suite report as one self-contained page: the paragraph, the forest plot, every
    arm's pooled estimate, the "when" tables and the experiments with links to their reports."""
    forest, when = forest_figure(data), when_figure(data)
    figs = {
        "forest": None if forest is None else _safe(forest),
        "when": None if when is None else _safe(when),
    }
    direction = data.main.direction
    return (
        _env()
        .from_string(SUITE)
        .render(
            title=f"dynl2 suite report: {data.name}",
            css=Markup(CSS + SUITE_CSS),
            plotlyjs=Markup(_plotlyjs()) if any(figs.values()) else None,
            sections=SUITE_SECTIONS,
            d=data,
            figs=figs,
            digits=data.digits,
            answer_class={"better": "win", "worse": "loss"}.get(direction or "", ""),
            factor_text=factor_text,
        )
    )


# ------------------------------------------------------------------------------- helpers


@cache
def _plotlyjs() -> str:
    return str(get_plotlyjs())


def _safe(figure: Figure) -> Figure:
    # Plotly's fragment is our markup, not user text: pass it through the autoescape.
    return Figure(figure.id, Markup(figure.html))


def _digits(data: ReportData) -> int:
    return data.verdict.digits


def _num(x: float | int | None, digits: int = 2) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "–"
    return f"{x:.{digits}f}"


def _g(x: float | int | None, digits: int = 3) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "–"
    return f"{x:.{digits}g}"


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.0f}%"


def _pval(p: float | None) -> str:
    text = p_text(p)
    return text.removeprefix("p = ").removeprefix("p ")


@cache
def _env() -> jinja2.Environment:
    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
    env.globals.update(
        num=_num,
        g=_g,
        pct=_pct,
        pval=_pval,
        kv=kv_text,
        signed=signed,
        ci_text=ci_text,
        units_text=units_text,
        cut=CUT,
    )
    return env
