"""PNG plots of a results table (from :func:`compare.load_results`): pathologies by inference mode, the
ISTA-steps ablation, and the L0–NMSE Pareto scatter. Which metrics a figure draws, their labels and the
range they can take are the metrics' declared facts (``registry.MetricFacts``, by :func:`facts_by_column`);
modes are placed by their role and step count (``modes.role_of``, ``modes.steps_of``)."""

from __future__ import annotations

import math
import textwrap
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, cast

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.text import Text  # noqa: E402

from sae_bench_amortization.atomic import write_file_atomic  # noqa: E402
from sae_bench_amortization.modes import mode_order, role_of, steps_of  # noqa: E402
from sae_bench_amortization.registry import (  # noqa: E402
    TOPICS,
    EvalEntry,
    MetricFacts,
    Plot,
    by_precedence,
    discover_evals,
    facts_by_column,
)

# one marker per SAE in the Pareto scatter (colour is the inference mode)
SAE_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "<", ">", "h", "p")
UNKNOWN = MetricFacts()  # a column no registered eval declares


def _facts(facts: Mapping[str, MetricFacts] | None) -> Mapping[str, MetricFacts]:
    return facts_by_column(discover_evals()) if facts is None else facts


def drawn_in(figure: Plot, table: pd.DataFrame, facts: Mapping[str, MetricFacts]) -> list[str]:
    """The columns of ``table`` with a value that ``figure`` draws, by topic (:data:`TOPICS`), then name."""
    names = [
        name
        for name, declared in facts.items()
        if figure in declared.figures and has_values(table, name)
    ]
    return sorted(names, key=lambda name: (TOPICS.index(facts[name].topic), name))


def has_values(table: pd.DataFrame, name: str) -> bool:
    """``table`` has a column ``name`` with a value in some row."""
    return name in table and bool(table[name].notna().any())


def label_of(name: str, facts: Mapping[str, MetricFacts]) -> str:
    return facts.get(name, UNKNOWN).label or name


def bounds_of(name: str, facts: Mapping[str, MetricFacts]) -> tuple[float | None, float | None]:
    return facts.get(name, UNKNOWN).bounds


def per_sae_and_mode(
    frame: pd.DataFrame, registry: Mapping[str, EvalEntry] | None = None
) -> pd.DataFrame:
    """One row per (sae, mode): each metric from the first eval that has it, evals in
    :func:`registry.by_precedence` order (the side-by-side eval first; unregistered evals last)."""
    order = by_precedence(discover_evals() if registry is None else registry)
    rank = {name: i for i, name in enumerate(order)}
    ordered = frame.assign(_rank=frame["eval"].map(lambda e: rank.get(e, len(rank)))).sort_values(
        "_rank", kind="stable"
    )
    merged = ordered.drop(columns=["eval", "_rank"]).groupby(["sae", "mode"], sort=False).first()
    merged = merged.reset_index()
    merged["_order"] = merged["mode"].map(mode_order)
    return merged.sort_values(["sae", "_order"]).drop(columns="_order").reset_index(drop=True)


def _modes(table: pd.DataFrame) -> list[str]:
    return sorted(table["mode"].unique(), key=mode_order)


def _finite(values: Iterable[Any]) -> list[float]:
    """The finite numbers among ``values`` (None, NaN, ±inf and non-numbers left out)."""
    out = []
    for value in values:
        try:
            number = float(value)
        except (TypeError, ValueError):
            continue
        if math.isfinite(number):
            out.append(number)
    return out


def settle_flat_axis(
    ax: Axes,
    values: Iterable[Any],
    bounds: tuple[float | None, float | None] = (None, None),
    include_zero: bool = False,
) -> bool:
    """When every value a panel shows is the same (all 0, say), give its y axis a readable range and say
    so in the panel; matplotlib would pad a constant 0 by ±0.04. ``bounds`` is the range the metric can
    take (a rate: 0 to 1), ``include_zero`` keeps 0 in view (bars start there). True when it did."""
    finite = _finite(values)
    if not finite or min(finite) != max(finite):
        return False
    value = finite[0]
    pad = abs(value) / 2 if value else 1.0
    low, high = value - pad, value + pad
    lower, upper = bounds
    if lower is not None and lower <= value:
        low = max(low, lower)
    if upper is not None and value <= upper:
        high = min(high, upper)
    if include_zero:  # bars: from 0, no margin below them
        low, high = min(low, 0.0), max(high, 0.0)
    else:  # points and lines: a margin so that markers on a bound are not cut
        margin = 0.04 * (high - low)
        low, high = low - margin, high + margin
    ax.set_ylim(low, high)
    if value == 0 or len(finite) > 1:
        label = "all 0" if value == 0 else f"all {value:.4g}"
        ax.text(
            0.5,
            0.3 if (value - low) / (high - low) >= 0.5 else 0.7,  # away from the values
            label,
            transform=ax.transAxes,
            ha="center",
            va="center",
            color="0.35",
            fontsize=11,
            bbox={"boxstyle": "round", "facecolor": "white", "edgecolor": "0.7", "alpha": 0.9},
            zorder=5,
        )
    return True


def fit_text(figure: Figure, text: Text, width_inches: float) -> Text:
    """Wrap ``text`` (a title or label of ``figure``) onto as many lines as it needs to be at most
    ``width_inches`` wide when drawn."""
    renderer = cast(FigureCanvasAgg, figure.canvas).get_renderer()  # matplotlib.use("Agg") above
    limit = width_inches * figure.dpi
    original = " ".join(text.get_text().split())
    width = len(original)
    while text.get_window_extent(renderer).width > limit and width > 12:
        width = max(12, int(width * 0.9))
        text.set_text(textwrap.fill(original, width, break_long_words=False))
    return text


def _suptitle(fig: Figure, title: str) -> Text:
    """A figure title wrapped to the figure's width (constrained layout reserves room for its lines)."""
    return fit_text(fig, fig.suptitle(title), fig.get_figwidth() - 0.3)


def _panel_width(fig: Figure, ncols: int) -> float:
    """Inches a panel's title or x label can take in a row of ``ncols`` panels."""
    return fig.get_figwidth() / ncols - 0.5


def plot_pathologies(
    table: pd.DataFrame, facts: Mapping[str, MetricFacts] | None = None
) -> Figure | None:
    """Grouped bars: one panel per metric declared for the figure "pathologies", SAEs on the x axis, one
    bar per inference mode."""
    facts = _facts(facts)
    metrics = drawn_in("pathologies", table, facts)
    if not metrics:
        return None
    saes, modes = list(dict.fromkeys(table["sae"])), _modes(table)
    colors = plt.get_cmap("viridis")([i / max(len(modes) - 1, 1) for i in range(len(modes))])
    fig, axes = plt.subplots(
        1,
        len(metrics),
        figsize=(3.6 * len(metrics) + 1.5, 4.4),
        squeeze=False,
        layout="constrained",
    )
    width = 0.8 / len(modes)
    for ax, metric in zip(axes[0], metrics, strict=True):
        shown = []
        for j, mode in enumerate(modes):
            values = [
                table.loc[(table["sae"] == sae) & (table["mode"] == mode), metric].squeeze()
                if ((table["sae"] == sae) & (table["mode"] == mode)).any()
                else float("nan")
                for sae in saes
            ]
            shown.extend(values)
            positions = [i - 0.4 + width * (j + 0.5) for i in range(len(saes))]
            ax.bar(positions, values, width, color=colors[j], label=mode)
        fit_text(fig, ax.set_title(label_of(metric, facts), fontsize=10), 3.0)
        ax.set_xticks(range(len(saes)))
        ax.set_xticklabels([_short(s) for s in saes], rotation=20, ha="right", fontsize=8)
        ax.grid(axis="y", alpha=0.3)
        settle_flat_axis(ax, shown, bounds_of(metric, facts), include_zero=True)
    axes[0][0].set_ylabel("value")
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, title="inference mode", loc="outside right center", fontsize=8)
    _suptitle(
        fig,
        "Pathology metrics by inference mode (one decoder per SAE; loca: its own fine-tuned decoder)",
    )
    return fig


def plot_ista_ablation(
    table: pd.DataFrame, facts: Mapping[str, MetricFacts] | None = None
) -> Figure | None:
    """The metrics declared for the figure "steps" (NMSE, absorption) against the number of refinement
    steps T (the encoder = T 0), per SAE; the optimum's value as a dashed line. Drawn when some SAE has
    at least two modes on a step axis."""
    facts = _facts(facts)
    steps = table[table["mode"].map(lambda mode: steps_of(mode) is not None)]
    counts = steps.groupby("sae")["mode"].nunique()
    saes = [str(sae) for sae, count in counts.items() if count >= 2]
    if not saes:
        return None
    metrics = drawn_in("steps", table, facts)
    if not metrics:
        return None
    fig, axes = plt.subplots(
        1, len(metrics), figsize=(5.6 * len(metrics), 4.4), squeeze=False, layout="constrained"
    )
    for ax, metric in zip(axes[0], metrics, strict=True):
        shown = []
        for i, sae in enumerate(saes):
            rows = table.loc[table["sae"] == sae]
            encoders = [mode for mode in _modes(rows) if role_of(mode) == "encoder"][:1]
            points = [(0, rows.loc[rows["mode"] == mode, metric]) for mode in encoders] + [
                (steps_of(mode) or 0, rows.loc[rows["mode"] == mode, metric])
                for mode in _modes(rows)
                if steps_of(mode) is not None
            ]
            xs = [x for x, v in points if len(v) and pd.notna(v.iloc[0])]
            ys = [v.iloc[0] for _, v in points if len(v) and pd.notna(v.iloc[0])]
            shown.extend(ys)
            color = f"C{i}"
            ax.plot(xs, ys, "o-" if len(xs) > 1 else "o", color=color, label=_short(sae))
            optimum = rows.loc[rows["mode"].map(role_of) == "optimum", metric]
            if len(optimum) and pd.notna(optimum.iloc[0]):
                ax.axhline(optimum.iloc[0], color=color, ls="--", lw=1, alpha=0.7)
                shown.append(optimum.iloc[0])
        width = _panel_width(fig, len(metrics))
        fit_text(
            fig, ax.set_xlabel("ISTA/FISTA steps T from the encoder's codes (0 = amortized)"), width
        )
        ax.set_ylabel(label_of(metric, facts))
        title = f"{label_of(metric, facts)} vs steps (dashed: non-amortized)"
        fit_text(fig, ax.set_title(title, fontsize=10), width)
        ax.grid(alpha=0.3)
        settle_flat_axis(ax, shown, bounds_of(metric, facts))
    axes[0][0].legend(title="SAE", fontsize=8)
    _suptitle(fig, "ISTA-steps ablation: how fast per-sample refinement relieves the pathologies")
    return fig


def plot_pareto(
    table: pd.DataFrame, facts: Mapping[str, MetricFacts] | None = None
) -> Figure | None:
    """L0 (x) against NMSE (y), one point per SAE × mode: colour = inference mode, marker = SAE (both in
    legends; with more SAEs than markers each point is also numbered after its SAE's legend entry).
    Each mode's Pareto frontier (no point with both lower L0 and lower NMSE) is joined by a line."""
    facts = _facts(facts)
    points = (
        table.dropna(subset=["l0", "nmse"]) if {"l0", "nmse"} <= set(table) else table.iloc[0:0]
    )
    if points.empty:
        return None
    saes = list(dict.fromkeys(points["sae"]))
    numbered = len(saes) > len(SAE_MARKERS)
    marker = {sae: SAE_MARKERS[k % len(SAE_MARKERS)] for k, sae in enumerate(saes)}
    fig, ax = plt.subplots(figsize=(8.4, 4.8), layout="constrained")
    modes = _modes(points)
    for i, mode in enumerate(modes):
        rows = points.loc[points["mode"] == mode].sort_values("l0")
        for sae, group in rows.groupby("sae", sort=False):
            ax.scatter(
                group["l0"],
                group["nmse"],
                color=f"C{i}",
                marker=marker[sae],
                s=42,
                edgecolors="black",
                linewidths=0.4,
                zorder=3,
            )
            if has_values(group, "nmse_refit"):
                ax.scatter(group["l0"], group["nmse_refit"], facecolors="none", edgecolors=f"C{i}",
                           marker=marker[sae], s=42, linewidths=1.0, zorder=3)  # fmt: skip
            if numbered:
                for l0, nmse in zip(group["l0"], group["nmse"], strict=True):
                    ax.annotate(
                        str(saes.index(sae) + 1),
                        (l0, nmse),
                        xytext=(4, 3),
                        textcoords="offset points",
                        fontsize=7,
                    )
        frontier, best = [], float("inf")
        for l0, nmse in zip(rows["l0"], rows["nmse"], strict=True):
            if nmse < best:
                frontier.append((l0, nmse))
                best = nmse
        if len(frontier) > 1:
            ax.plot(*zip(*frontier, strict=True), color=f"C{i}", alpha=0.6, zorder=2)
    ax.set_xlabel(label_of("l0", facts))
    ax.set_ylabel(label_of("nmse", facts))
    title = "Sparsity–fidelity trade-off per SAE and inference mode (lower left is better)"
    fit_text(fig, ax.set_title(title, fontsize=11), fig.get_figwidth() - 2.6)
    ax.grid(alpha=0.3)
    settle_flat_axis(ax, points["nmse"], bounds_of("nmse", facts))
    mode_handles = [
        Line2D([], [], color=f"C{i}", marker="o", linestyle="none", label=mode)
        for i, mode in enumerate(modes)
    ]
    if has_values(points, "nmse_refit"):
        mode_handles.append(
            Line2D(
                [],
                [],
                color="0.3",
                marker="o",
                markerfacecolor="none",
                linestyle="none",
                label="hollow: codes refitted\non their support",
            )  # fmt: skip
        )
    sae_handles = [
        Line2D(
            [],
            [],
            color="0.45",
            marker=marker[sae],
            linestyle="none",
            label=f"{k + 1}: {_short(sae)}" if numbered else _short(sae),
        )
        for k, sae in enumerate(saes)
    ]
    fig.legend(
        handles=mode_handles, title="inference mode (colour)", loc="outside right upper", fontsize=8
    )
    fig.legend(handles=sae_handles, title="SAE (marker)", loc="outside right lower", fontsize=8)
    return fig


def write_png(fig: Figure, path: Path, dpi: int = 120) -> Path:
    """Save ``fig`` as a PNG atomically (a reader never sees half an image) and free it."""
    try:
        write_file_atomic(path, lambda temporary: fig.savefig(temporary, dpi=dpi, format="png"))
    finally:
        plt.close(fig)
    return path


def _short(name: str, limit: int = 28) -> str:
    return name if len(name) <= limit else "…" + name[-(limit - 1) :]
