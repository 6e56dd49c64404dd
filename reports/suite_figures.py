"""The suite report's Plotly figures: the forest plot and the effect against each factor.

As in :mod:`reports.figures`, every user string (experiment names, factor names and values,
arm names) is HTML-escaped before plotly.js sees it, and positions on the axes are numbers
with escaped tick labels, so two names that escape alike never share a row. Error bars end
where the intervals shown end, cut at what the difference can be; a cut one's label carries †.
"""

from __future__ import annotations

import plotly.graph_objects as go  # type: ignore[import-untyped, unused-ignore]
from plotly.subplots import make_subplots  # type: ignore[import-untyped, unused-ignore]

from reports.figures import PALETTE, Figure, _finish, esc
from reports.stats import CUT
from reports.suite import SuiteReportData

__all__ = ["forest_figure", "when_figure"]

_ZERO = {"color": "#888", "width": 1, "dash": "dash"}
_POOLED = "#d62728"


def _label(data: SuiteReportData) -> str:
    unit = f" ({esc(data.unit)})" if data.unit else ""
    return f"{esc(data.main_arm)} − {esc(data.baseline)}{unit}"


def forest_figure(data: SuiteReportData) -> Figure | None:
    """One row per experiment (point and 95% CI), a line at 0, the pooled diamond last."""
    arm = data.main
    if not any(r.diff is not None for r in arm.rows):
        return None
    n = len(arm.rows)
    # Each experiment's own decision beside its name: the forest shows where each one landed.
    ticks = [
        esc(r.experiment)
        + (f" · <i>{esc(r.decision)}</i>" if r.decision else "")
        + (CUT if r.truncated else "")
        for r in arm.rows
    ]
    fig = go.Figure()
    with_ci = [
        (i, r.diff, r.low, r.high)
        for i, r in enumerate(arm.rows)
        if r.diff is not None and r.low is not None and r.high is not None
    ]
    if with_ci:
        fig.add_trace(
            go.Scatter(
                x=[d for _, d, _, _ in with_ci],
                y=[i for i, _, _, _ in with_ci],
                mode="markers",
                marker={"color": PALETTE[0], "size": 9, "symbol": "square"},
                error_x={
                    "type": "data",
                    "symmetric": False,
                    "array": [high - d for _, d, _, high in with_ci],
                    "arrayminus": [d - low for _, d, low, _ in with_ci],
                    "thickness": 2,
                    "width": 4,
                },
                text=[ticks[i] for i, _, _, _ in with_ci],
                name="experiments",
                hovertemplate="%{text}: %{x:.4g}<extra></extra>",
            )
        )
    without = [(i, r.diff) for i, r in enumerate(arm.rows) if r.diff is not None and r.low is None]
    if without:
        fig.add_trace(
            go.Scatter(
                x=[d for _, d in without],
                y=[i for i, _ in without],
                mode="markers",
                marker={"color": PALETTE[0], "size": 9, "symbol": "square-open"},
                text=[ticks[i] for i, _ in without],
                name="no interval (not pooled)",
                hovertemplate="%{text}: %{x:.4g} (no interval)<extra></extra>",
            )
        )
    tickvals: list[float] = list(range(n))
    p = arm.pooled
    if p is not None:
        fig.add_trace(
            go.Scatter(
                x=[p.mean],
                y=[n + 0.5],
                mode="markers",
                marker={"color": _POOLED, "size": 18, "symbol": "diamond"},
                error_x={
                    "type": "data",
                    "symmetric": False,
                    "array": [p.high - p.mean],
                    "arrayminus": [p.mean - p.low],
                    "thickness": 3,
                    "width": 6,
                    "color": _POOLED,
                },
                name="pooled (random effects)",
                hovertemplate="pooled: %{x:.4g}<extra></extra>",
            )
        )
        tickvals.append(n + 0.5)
        ticks.append(
            f"<b>pooled (k = {p.k}) · {esc(arm.decision)}</b>{CUT if p.truncated else ''}"
        )
    fig.add_vline(x=0, line=_ZERO)
    if data.margin is not None:  # the equivalence margin ±δ, dotted
        for edge in (-data.margin, data.margin):
            fig.add_vline(x=edge, line={"color": "#888", "width": 1, "dash": "dot"})
    fig.update_yaxes(
        tickmode="array",
        tickvals=tickvals,
        ticktext=ticks,
        autorange="reversed",
        showgrid=False,
    )
    fig.update_layout(
        xaxis_title=_label(data),
        showlegend=False,
        margin={"l": 20},
    )
    fig.update_yaxes(automargin=True)
    height = 160 + 32 * (n + 2)
    title = f"{_label(data)} per experiment: mean and 95% CI; pooled estimate last"
    return _finish(fig, "forest", title, height)


def when_figure(data: SuiteReportData) -> Figure | None:
    """For each factor, the pooled difference at each of its values, with its 95% CI."""
    tables = [t for t in data.main.when if any(r.pooled for r in t.rows)]
    if not tables:
        return None
    fig = make_subplots(
        rows=1,
        cols=len(tables),
        shared_yaxes=True,
        subplot_titles=[esc(t.factor) for t in tables],
    )
    for col, table in enumerate(tables, start=1):
        points = [(i, r.text, r.pooled) for i, r in enumerate(table.rows) if r.pooled]
        fig.add_trace(
            go.Scatter(
                x=[i for i, _, _ in points],
                y=[p.mean for _, _, p in points],
                mode="markers",
                marker={"color": PALETTE[col % len(PALETTE)], "size": 11, "symbol": "diamond"},
                error_y={
                    "type": "data",
                    "symmetric": False,
                    "array": [p.high - p.mean for _, _, p in points],
                    "arrayminus": [p.mean - p.low for _, _, p in points],
                    "thickness": 2,
                },
                text=[
                    f"{esc(text)} (k = {p.k}){CUT if p.truncated else ''}" for _, text, p in points
                ],
                name=esc(table.factor),
                showlegend=False,
                hovertemplate="%{text}: %{y:.4g}<extra></extra>",
            ),
            row=1,
            col=col,
        )
        fig.add_hline(y=0, line=_ZERO, row=1, col=col)
        fig.update_xaxes(
            tickmode="array",
            tickvals=list(range(len(table.rows))),
            ticktext=[esc(r.text) for r in table.rows],
            range=[-0.5, len(table.rows) - 0.5],
            row=1,
            col=col,
        )
    fig.update_yaxes(title_text=_label(data), row=1, col=1)
    fig.update_layout(margin={"t": 90})  # room for the subplot titles under the title
    title = f"{_label(data)} pooled at each value of each factor (95% CI)"
    return _finish(fig, "when", title, 420)
