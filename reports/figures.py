"""Plotly figures of a :class:`ReportData`, each as an HTML fragment without plotly.js.

Every text that comes from users or the database (arm and parameter names) is HTML-escaped
before it goes into a figure: plotly.js renders a subset of HTML in titles, legends and hover
labels. Plotly's own JSON escapes ``<``, ``>`` and ``/``, so nothing closes the script tag.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import plotly.graph_objects as go  # type: ignore[import-untyped, unused-ignore]
from plotly.subplots import make_subplots  # type: ignore[import-untyped, unused-ignore]

from reports.model import ReportData
from reports.stats import MeanCI

PALETTE = (
    "#1f77b4",
    "#d62728",
    "#2ca02c",
    "#9467bd",
    "#ff7f0e",
    "#17becf",
    "#8c564b",
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
)
_TEMPLATE = go.layout.Template(
    layout={
        "font": {"family": "system-ui, sans-serif", "size": 13, "color": "#222"},
        "paper_bgcolor": "white",
        "plot_bgcolor": "white",
        "colorway": list(PALETTE),
        "xaxis": {"gridcolor": "#eee", "linecolor": "#999", "zeroline": False},
        "yaxis": {"gridcolor": "#eee", "linecolor": "#999", "zeroline": False},
        "margin": {"l": 60, "r": 20, "t": 50, "b": 50},
        "hovermode": "closest",
    }
)


@dataclass(frozen=True)
class Figure:
    id: str  # the container's id: ``fig-...`` (made of indices, never of user names)
    html: str  # the plot's div and its Plotly.newPlot call


def esc(text: object) -> str:
    """Escape a user or database string for plotly's HTML-aware labels."""
    return html.escape(str(text), quote=True)


def _colors(data: ReportData) -> dict[str, str]:
    return {a.arm: PALETTE[i % len(PALETTE)] for i, a in enumerate(data.setup.arms)}


# Plotly draws each figure's toolbar (the modebar) over the figure's top right corner, whatever
# lies there: 2 px from the top, 25 px tall. Every figure keeps a strip this tall at its top for
# it alone and draws its title and plots below, so the modebar covers neither at any width where
# it fits on one row (from about 240 px), shown on hover (a mouse) or always (a touch screen).
_MODEBAR_STRIP = 32  # px added above the figure; the title starts 6 px below the modebar
_TITLE_ROOM = 50  # px above the plot area for the title (the template's margin.t)
_CONFIG = {
    "displaylogo": False,
    "responsive": True,
    "showSendToCloud": False,  # "Share chart...": an upload to Plotly Cloud, in an offline page
    "modeBarButtonsToRemove": ["select2d", "lasso2d"],  # nothing here acts on a selection
}


def _finish(fig: go.Figure, fig_id: str, title: str, height: int = 380) -> Figure:
    """Style ``fig``, place its title and modebar, and render it; ``height`` excludes the
    modebar's strip. A figure that set its own top margin (room for subplot titles) keeps it,
    below the strip."""
    top = fig.layout.margin.t if fig.layout.margin.t is not None else _TITLE_ROOM
    fig.update_layout(
        template=_TEMPLATE,
        title={
            "text": title,
            "yref": "container",
            "y": 1,
            "yanchor": "top",
            "pad": {"t": _MODEBAR_STRIP + 6},
        },
        margin={"t": _MODEBAR_STRIP + top},
        height=_MODEBAR_STRIP + height,
    )
    body = fig.to_html(
        full_html=False, include_plotlyjs=False, div_id=f"plot-{fig_id}", config=_CONFIG
    )
    return Figure(f"fig-{fig_id}", body)


def _error(ci: MeanCI) -> dict[str, Any]:
    """Error bars of ``ci``: to its ends as shown (cut at what the metric can be), none
    without an interval."""
    low, high = ci.low, ci.high
    if low is None or high is None:
        return {"visible": False}
    return {"type": "data", "symmetric": False, "array": [high - ci.mean],
            "arrayminus": [ci.mean - low], "thickness": 2}  # fmt: skip


def _clean(values: Sequence[float]) -> list[float | None]:
    return [v if math.isfinite(v) else None for v in values]


def verdict_figures(data: ReportData) -> list[Figure]:
    v = data.verdict
    arms = [a for a in v.arms if a.ci is not None]
    if not arms:
        return []
    colors = _colors(data)
    fig = go.Figure()
    for a in arms:
        assert a.ci is not None
        fig.add_trace(
            go.Scatter(
                x=list(a.runs),
                y=[esc(a.arm)] * len(a.runs),
                mode="markers",
                marker={"color": colors.get(a.arm), "opacity": 0.35, "size": 7},
                name=f"{esc(a.arm)} seeds",
                showlegend=False,
                hovertemplate="%{x:.4g}<extra>seed</extra>",
            )
        )
        fig.add_trace(
            go.Scatter(
                x=[a.ci.mean],
                y=[esc(a.arm)],
                mode="markers",
                marker={"color": colors.get(a.arm), "size": 13, "symbol": "diamond"},
                error_x=_error(a.ci),
                name=esc(a.arm),
                hovertemplate="mean %{x:.4g}<extra></extra>",
            )
        )
    label = "test accuracy (%)" if data.accuracy else "test loss"
    fig.update_layout(showlegend=False, xaxis_title=label)
    fig.update_yaxes(type="category", autorange="reversed")
    height = 140 + 50 * len(arms)
    over = "seeds" if data.verdict.replicates == 1 else "the replicates' means (dots: every run)"
    return [_finish(fig, "verdict", f"{label}: mean ± 95% CI over {over}", height)]


def search_figures(data: ReportData) -> list[Figure]:
    s = data.search
    if not any(a.numbers for a in s.arms):
        return []
    colors = _colors(data)
    fig = go.Figure()
    for a in s.arms:
        if not a.numbers:
            continue
        color = colors.get(a.arm.split("/")[0])  # "ARM/R": a replicate takes its arm's color
        fig.add_trace(
            go.Scatter(
                x=list(a.numbers),
                y=list(a.values),
                mode="markers",
                marker={"color": color, "opacity": 0.3, "size": 5},
                name=f"{esc(a.arm)} trials",
                legendgroup=esc(a.arm),
                showlegend=False,
            )
        )
        fig.add_trace(
            go.Scatter(
                x=list(a.numbers),
                y=list(a.best_so_far),
                mode="lines",
                line={"color": color, "width": 2, "shape": "hv"},
                name=esc(a.arm),
                legendgroup=esc(a.arm),
            )
        )
    fig.update_layout(xaxis_title="trial number", yaxis_title=esc(s.metric))
    out = [_finish(fig, "search", f"best {esc(s.metric)} so far (dots: each complete trial)")]
    if s.budget:
        out.append(_budget_figure(data, colors))
    return out


def _budget_figure(data: ReportData, colors: dict[str, str]) -> Figure:
    """Expected best validation metric after n trials, per arm, with its band over searches."""
    s = data.search
    fig = go.Figure()
    banded = False
    for arm, curve in s.budget.items():
        n = [p.n for p in curve]
        if all(p.low is not None and p.high is not None for p in curve):
            banded = True
            fig.add_trace(
                go.Scatter(
                    x=n + n[::-1],
                    y=[p.high for p in curve] + [p.low for p in curve][::-1],
                    fill="toself",
                    fillcolor=colors.get(arm),
                    opacity=0.15,
                    line={"width": 0},
                    hoverinfo="skip",
                    showlegend=False,
                    legendgroup=esc(arm),
                )
            )
        fig.add_trace(
            go.Scatter(
                x=n,
                y=_clean([p.mean for p in curve]),
                mode="lines",
                line={"color": colors.get(arm), "width": 2},
                name=esc(arm),
                legendgroup=esc(arm),
                hovertemplate="n %{x}: %{y:.4g}<extra></extra>",
            )
        )
    fig.update_layout(xaxis_title="trials (budget)", yaxis_title=esc(s.metric))
    band = " ± 95% band over searches" if banded else " (one search per arm: no band)"
    return _finish(fig, "budget", f"expected best {esc(s.metric)} after n trials{band}")


def sensitivity_figures(data: ReportData) -> list[Figure]:
    out = []
    colors = _colors(data)
    for i, a in enumerate(data.sensitivity.arms):
        params = [p for p in a.params if p.x]
        if params:
            fig = make_subplots(rows=1, cols=len(params), shared_yaxes=True)
            for j, p in enumerate(params, start=1):
                fig.add_trace(
                    go.Scatter(
                        x=list(p.x),
                        y=list(p.y),
                        mode="markers",
                        marker={"color": colors.get(a.arm), "opacity": 0.6, "size": 6},
                        name=esc(p.name),
                        showlegend=False,
                    ),
                    row=1,
                    col=j,
                )
                fig.update_xaxes(
                    title_text=esc(p.name), type="log" if p.log else "linear", row=1, col=j
                )
            fig.update_yaxes(title_text=esc(data.search.metric), row=1, col=1)
            out.append(
                _finish(
                    fig,
                    f"sens-{i}",
                    f"{esc(a.arm)}: {esc(data.search.metric)} vs each searched parameter",
                )
            )
        if a.alpha_floor is not None:
            alpha, floor, value = a.alpha_floor
            fig = go.Figure(
                go.Scatter(
                    x=list(alpha),
                    y=list(floor),
                    mode="markers",
                    marker={
                        "color": list(value),
                        "colorscale": "Viridis",
                        "size": 8,
                        "showscale": True,
                        "colorbar": {"title": {"text": esc(data.search.metric)}},
                    },
                    hovertemplate="alpha %{x:.3g}<br>floor %{y:.3g}<br>%{marker.color:.4g}"
                    "<extra></extra>",
                )
            )
            fig.update_xaxes(title_text="alpha", type="log")
            fig.update_yaxes(title_text="floor", type="log")
            out.append(_finish(fig, f"alpha-floor-{i}", f"{esc(a.arm)}: alpha × floor"))
    return out


def dynamics_figures(data: ReportData) -> list[Figure]:
    arms = [a for a in data.dynamics.arms if a.epochs]
    if not arms:
        return []
    colors = _colors(data)
    out = []
    panels: list[tuple[str, str, list[tuple[str, str]], bool]] = [
        (
            "loss",
            "loss per epoch (solid: train, dashed: val)",
            [("train_loss", "solid"), ("val_loss", "dash")],
            False,
        ),
    ]
    if data.accuracy:
        panels.append(
            (
                "acc",
                "accuracy per epoch (solid: train, dashed: val)",
                [("train_acc", "solid"), ("val_acc", "dash")],
                False,
            )
        )
    panels.append(("lambda", "mean λ per epoch (log scale)", [("lam_mean", "solid")], True))
    panels.append(("weight-norm", "weight norm per epoch", [("weight_norm", "solid")], False))
    for fig_id, title, metrics, log in panels:
        fig = go.Figure()
        for a in arms:
            for metric, dash in metrics:
                ys: list[Any] = _clean(a.series.get(metric, ()))
                if log:  # λ = 0 (no regularization) has no place on a log axis
                    ys = [y if y is not None and y > 0 else None for y in ys]
                if all(y is None for y in ys):
                    continue
                fig.add_trace(
                    go.Scatter(
                        x=list(a.epochs),
                        y=ys,
                        mode="lines",
                        line={"color": colors.get(a.arm), "dash": dash},
                        name=f"{esc(a.arm)} {metric}" if len(metrics) > 1 else esc(a.arm),
                    )
                )
        if not fig.data:
            continue
        fig.update_xaxes(title_text="epoch")
        if log:
            fig.update_yaxes(type="log", title_text="λ")
        out.append(_finish(fig, fig_id, f"best trials: {title}"))
    return out
