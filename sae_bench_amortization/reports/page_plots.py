"""The figures ``compare`` draws (pathologies by mode, the ISTA-steps ablation, L0 against NMSE), drawn
with plotly for ``saebench report``: each a plotly JSON spec the page renders, hover showing SAE, mode,
value and the count it averages over."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import pandas as pd
import plotly.graph_objects as go
import plotly.io as pio
from plotly.subplots import make_subplots

from sae_bench_amortization.modes import mode_order, role_of, steps_of
from sae_bench_amortization.registry import MetricFacts
from sae_bench_amortization.reports.plots import drawn_in, has_values, label_of

HOVER = "SAE %{customdata[0]}<br>mode %{customdata[1]}<br>value %{y:.4g}<br>n %{customdata[2]}"
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
           "#bcbd22", "#17becf")  # fmt: skip


def _count(row: pd.Series, name: str, facts: Mapping[str, MetricFacts]) -> str:
    key = facts[name].count if name in facts else None
    value = row.get(key) if key else None
    return "-" if value is None or pd.isna(value) else f"{int(value)}"


def _spec(figure: go.Figure) -> dict[str, Any]:
    return json.loads(pio.to_json(figure, validate=False, remove_uids=True) or "{}")


def pathologies(table: pd.DataFrame, facts: Mapping[str, MetricFacts]) -> dict[str, Any] | None:
    """One panel per metric drawn in compare's pathologies figure: a bar per SAE and mode."""
    metrics = drawn_in("pathologies", table, facts)
    if not metrics:
        return None
    modes = sorted(table["mode"].unique(), key=mode_order)
    figure = make_subplots(rows=len(metrics), cols=1, subplot_titles=[label_of(m, facts) for m in metrics],
                           vertical_spacing=min(0.12, 0.5 / len(metrics)))  # fmt: skip
    for panel, metric in enumerate(metrics, 1):
        for i, mode in enumerate(modes):
            rows = table.loc[table["mode"] == mode]
            figure.add_trace(
                go.Bar(
                    x=rows["sae"].tolist(), y=rows[metric].tolist(), name=mode,
                    marker_color=PALETTE[i % len(PALETTE)], legendgroup=mode, showlegend=panel == 1,
                    customdata=[[r["sae"], mode, _count(r, metric, facts)] for _, r in rows.iterrows()],
                    hovertemplate=HOVER + "<extra></extra>",
                ),
                row=panel, col=1,
            )  # fmt: skip
    figure.update_layout(barmode="group", height=260 * len(metrics) + 80, legend_title="mode",
                         title="Pathologies by inference mode", margin={"t": 70})  # fmt: skip
    return _spec(figure)


def steps_ablation(table: pd.DataFrame, facts: Mapping[str, MetricFacts]) -> dict[str, Any] | None:
    """The metrics drawn in compare's steps figure against T (0: the encoder), a line per SAE; the
    non-amortized optimum as a dashed line."""
    on_axis = table[table["mode"].map(lambda mode: steps_of(mode) is not None)]
    saes = [str(s) for s, n in on_axis.groupby("sae")["mode"].nunique().items() if n >= 2]
    metrics = drawn_in("steps", table, facts)
    if not saes or not metrics:
        return None
    figure = make_subplots(
        rows=1, cols=len(metrics), subplot_titles=[label_of(m, facts) for m in metrics]
    )
    for col, metric in enumerate(metrics, 1):
        for i, sae in enumerate(saes):
            rows = table.loc[table["sae"] == sae]
            points = [
                (0 if role_of(r["mode"]) == "encoder" else steps_of(r["mode"]), r)
                for _, r in rows.iterrows()
                if (role_of(r["mode"]) == "encoder" or steps_of(r["mode"]) is not None)
                and pd.notna(r.get(metric))
            ]
            points.sort(key=lambda p: p[0] or 0)
            color = PALETTE[i % len(PALETTE)]
            figure.add_trace(
                go.Scatter(
                    x=[p[0] for p in points], y=[p[1][metric] for p in points], mode="lines+markers",
                    name=sae, legendgroup=sae, showlegend=col == 1, line={"color": color},
                    customdata=[[sae, p[1]["mode"], _count(p[1], metric, facts)] for p in points],
                    hovertemplate=HOVER + "<extra></extra>",
                ),
                row=1, col=col,
            )  # fmt: skip
            optimum = rows.loc[rows["mode"].map(role_of) == "optimum", metric].dropna()
            if len(optimum) and points:
                # a dashed segment over the steps drawn (add_hline is quadratic in the shapes)
                level = float(optimum.iloc[0])
                figure.add_trace(
                    go.Scatter(
                        x=[0, max(p[0] or 0 for p in points)], y=[level, level], mode="lines",
                        line={"color": color, "dash": "dash", "width": 1}, showlegend=False,
                        legendgroup=sae, hovertemplate=f"SAE {sae}<br>non-amortized %{{y:.4g}}<extra></extra>",
                    ),
                    row=1, col=col,
                )  # fmt: skip
        figure.update_xaxes(
            title_text="steps T from the encoder's codes (0 = amortized)", row=1, col=col
        )
    figure.update_layout(height=420, title="ISTA-steps ablation (dashed: non-amortized)",
                         legend_title="SAE")  # fmt: skip
    return _spec(figure)


def pareto(table: pd.DataFrame) -> dict[str, Any] | None:
    """L0 against NMSE, a point per SAE × mode, coloured by mode."""
    if not (has_values(table, "l0") and has_values(table, "nmse")):
        return None
    points = table.dropna(subset=["l0", "nmse"])
    figure = go.Figure()
    for i, mode in enumerate(sorted(points["mode"].unique(), key=mode_order)):
        rows = points.loc[points["mode"] == mode]
        figure.add_trace(
            go.Scatter(
                x=rows["l0"].tolist(), y=rows["nmse"].tolist(), mode="markers", name=mode,
                marker={"color": PALETTE[i % len(PALETTE)], "size": 10},
                customdata=[[r["sae"], mode, f"L0 {r['l0']:.3g}"] for _, r in rows.iterrows()],
                hovertemplate=HOVER + "<extra></extra>",
            )
        )  # fmt: skip
    figure.update_layout(height=420, title="L0 against NMSE", xaxis_title="L0 (mean active latents)",
                         yaxis_title="NMSE", legend_title="mode")  # fmt: skip
    return _spec(figure)


def eval_figures(table: pd.DataFrame, facts: Mapping[str, MetricFacts]) -> list[dict[str, Any]]:
    """The figures one eval's rows (one row per SAE × mode) make, as plotly specs."""
    drawn = [pathologies(table, facts), steps_ablation(table, facts), pareto(table)]
    return [figure for figure in drawn if figure is not None]
