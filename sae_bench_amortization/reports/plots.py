"""PNG plots of a results table (from :func:`compare.load_results`): pathologies by inference mode, the
ISTA-steps ablation, and the L0–NMSE Pareto scatter."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from sae_bench_amortization.modes import mode_order  # noqa: E402
from sae_bench_amortization.runner.results import write_file_atomic  # noqa: E402

PATHOLOGY_METRICS = {
    "nmse": "NMSE (lower is better)",
    "dead_rate": "dead latents (share)",
    "dense_rate": "dense latents (share)",
    "delta_f1": "ΔF1 = F1@2 − F1@1 (splitting)",
    "absorption_rate": "absorption rate",
}
# where a (sae, mode) metric is read from when several evals have it: the side-by-side eval first
EVAL_PRIORITY = [
    "amortization_gap",
    "dead_dense",
    "splitting",
    "absorption_rate",
    "core",
    "absorption_first_letter",
]


def per_sae_and_mode(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per (sae, mode): each metric from the first eval in EVAL_PRIORITY that has it."""
    rank = {name: i for i, name in enumerate(EVAL_PRIORITY)}
    ordered = frame.assign(_rank=frame["eval"].map(lambda e: rank.get(e, len(rank)))).sort_values(
        "_rank"
    )
    merged = ordered.drop(columns=["eval", "_rank"]).groupby(["sae", "mode"], sort=False).first()
    merged = merged.reset_index()
    merged["_order"] = merged["mode"].map(mode_order)
    return merged.sort_values(["sae", "_order"]).drop(columns="_order").reset_index(drop=True)


def _modes(table: pd.DataFrame) -> list[str]:
    return sorted(table["mode"].unique(), key=mode_order)


def plot_pathologies(table: pd.DataFrame) -> Figure | None:
    """Grouped bars: one panel per pathology metric, SAEs on the x axis, one bar per inference mode."""
    metrics = [m for m in PATHOLOGY_METRICS if m in table and table[m].notna().any()]
    if not metrics:
        return None
    saes, modes = list(dict.fromkeys(table["sae"])), _modes(table)
    colors = plt.get_cmap("viridis")([i / max(len(modes) - 1, 1) for i in range(len(modes))])
    fig, axes = plt.subplots(
        1, len(metrics), figsize=(3.6 * len(metrics) + 1.5, 4.2), squeeze=False
    )
    width = 0.8 / len(modes)
    for ax, metric in zip(axes[0], metrics, strict=True):
        for j, mode in enumerate(modes):
            values = [
                table.loc[(table["sae"] == sae) & (table["mode"] == mode), metric].squeeze()
                if ((table["sae"] == sae) & (table["mode"] == mode)).any()
                else float("nan")
                for sae in saes
            ]
            positions = [i - 0.4 + width * (j + 0.5) for i in range(len(saes))]
            ax.bar(positions, values, width, color=colors[j], label=mode)
        ax.set_title(PATHOLOGY_METRICS[metric], fontsize=10)
        ax.set_xticks(range(len(saes)))
        ax.set_xticklabels([_short(s) for s in saes], rotation=20, ha="right", fontsize=8)
        ax.grid(axis="y", alpha=0.3)
    axes[0][0].set_ylabel("value")
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, title="inference mode", loc="center right", fontsize=8)
    fig.suptitle(
        "Pathology metrics by inference mode (one decoder per SAE; loca: its own fine-tuned decoder)"
    )
    fig.tight_layout(rect=(0, 0, 1 - 1.4 / fig.get_figwidth(), 0.95))
    return fig


def plot_ista_ablation(table: pd.DataFrame) -> Figure | None:
    """NMSE and absorption against the number of ISTA/FISTA steps T (amortized = T 0), per SAE; the
    non-amortized value as a dashed line. Drawn when some SAE has at least two semi:T modes."""
    steps = table[table["mode"].str.startswith("semi:")]
    counts = steps.groupby("sae")["mode"].nunique()
    saes = list(counts[counts >= 2].index)
    if not saes:
        return None
    metrics = [m for m in ("nmse", "absorption_rate") if m in table and table[m].notna().any()]
    if not metrics:
        return None
    fig, axes = plt.subplots(1, len(metrics), figsize=(5.2 * len(metrics), 4.0), squeeze=False)
    for ax, metric in zip(axes[0], metrics, strict=True):
        for i, sae in enumerate(saes):
            rows = table[table["sae"] == sae]
            points = [(0, rows.loc[rows["mode"] == "amortized", metric])] + [
                (int(mode.split(":")[1]), rows.loc[rows["mode"] == mode, metric])
                for mode in _modes(rows)
                if mode.startswith("semi:")
            ]
            xs = [x for x, v in points if len(v) and pd.notna(v.iloc[0])]
            ys = [v.iloc[0] for _, v in points if len(v) and pd.notna(v.iloc[0])]
            color = f"C{i}"
            ax.plot(xs, ys, "o-", color=color, label=_short(sae))
            optimum = rows.loc[rows["mode"] == "non_amortized", metric]
            if len(optimum) and pd.notna(optimum.iloc[0]):
                ax.axhline(optimum.iloc[0], color=color, ls="--", lw=1, alpha=0.7)
        ax.set_xlabel("ISTA/FISTA steps T from the encoder's codes (0 = amortized)")
        ax.set_ylabel(PATHOLOGY_METRICS[metric])
        ax.set_title(f"{PATHOLOGY_METRICS[metric]} vs steps (dashed: non-amortized)", fontsize=10)
        ax.grid(alpha=0.3)
    axes[0][0].legend(title="SAE", fontsize=8)
    fig.suptitle("ISTA-steps ablation: how fast per-sample refinement relieves the pathologies")
    fig.tight_layout()
    return fig


def plot_pareto(table: pd.DataFrame) -> Figure | None:
    """L0 (x) against NMSE (y), one colour per inference mode, one point per SAE × mode; each mode's
    Pareto frontier (no point with both lower L0 and lower NMSE) joined by a line."""
    points = (
        table.dropna(subset=["l0", "nmse"]) if {"l0", "nmse"} <= set(table) else table.iloc[0:0]
    )
    if points.empty:
        return None
    fig, ax = plt.subplots(figsize=(6.4, 4.6))
    for i, mode in enumerate(_modes(points)):
        rows = points[points["mode"] == mode].sort_values("l0")
        ax.scatter(rows["l0"], rows["nmse"], color=f"C{i}", label=mode, zorder=3)
        frontier, best = [], float("inf")
        for l0, nmse in zip(rows["l0"], rows["nmse"], strict=True):
            if nmse < best:
                frontier.append((l0, nmse))
                best = nmse
        if len(frontier) > 1:
            ax.plot(*zip(*frontier, strict=True), color=f"C{i}", alpha=0.6)
    ax.set_xlabel("L0 (mean active latents per token)")
    ax.set_ylabel("NMSE (lower is better)")
    ax.set_title("Sparsity–fidelity trade-off per inference mode (lower left is better)")
    ax.grid(alpha=0.3)
    ax.legend(title="inference mode", fontsize=8)
    fig.tight_layout()
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
