"""One PNG per claim of :mod:`reports.claims`: each sub-claim's measured value per grid point (a dot per
seed, a bar at the mean), its threshold dashed; units where the claim is n/a are left out and counted."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from sae_bench_amortization.reports.claims import CLAIMS, MOST, Claim, grid_label, records_of
from sae_bench_amortization.reports.plots import plt, write_png

VALUE_LABELS = {  # what a claim's value measures (> threshold: it holds)
    "a": "amortized NMSE − worst semi NMSE",
    "e": f"share of 50-step relief reached at 25 steps (> {MOST})",
    "f": "G=1 control − LocA (cost: LocA − control)",
    "g": "Spearman ρ(sparsity pressure, metric)",
    "truth": "least − amortized support F1 (worst mode)",
}


def claim_letter(claim: Claim) -> str:
    return claim.key.split("_")[0]


def plot_claims(
    outcomes: pd.DataFrame, folder: Path, claims: tuple[Claim, ...] = CLAIMS
) -> list[Path]:
    """``claim_<letter>.png`` in ``folder`` for every claim letter with at least one outcome."""
    written = []
    for letter in dict.fromkeys(claim_letter(claim) for claim in claims):
        members = [claim for claim in claims if claim_letter(claim) == letter]
        fig, axes = plt.subplots(
            len(members), 1, figsize=(11, 3.2 * len(members)), squeeze=False, layout="constrained"
        )
        for ax, claim in zip(axes[:, 0], members, strict=True):
            _panel(ax, outcomes.loc[outcomes["claim"] == claim.key], claim)
        fig.suptitle(
            "one dot per seed (green: holds, red: fails), bar: mean over seeds, dashed: the claim's "
            "threshold; grid points where the claim is n/a in every seed are left out",
            fontsize=8,
        )
        written.append(write_png(fig, folder / f"claim_{letter}.png"))
    return written


def _panel(ax, rows: pd.DataFrame, claim: Claim) -> None:
    measured = rows.loc[rows["status"] != "n/a"].copy()
    n_na = len(rows) - len(measured)
    measured["point"] = [grid_label(row) for row in records_of(measured)]
    points = list(dict.fromkeys(measured["point"]))
    threshold = MOST if claim_letter(claim) == "e" else 0.0
    for x, point in enumerate(points):
        values = measured[measured["point"] == point]
        colours = ["tab:green" if s == "holds" else "tab:red" for s in values["status"]]
        ax.bar(x, values["value"].mean(), color="0.85", width=0.7)
        ax.scatter([x] * len(values), values["value"], c=colours, s=18, zorder=3)
    ax.axhline(threshold, color="0.3", linestyle="--", linewidth=1)
    ax.set_xticks(range(len(points)), points, rotation=60, ha="right", fontsize=7)
    holds = int((measured["status"] == "holds").sum())
    ax.set_title(
        f"{claim.text}: holds in {holds} of {len(measured)} (n/a {n_na})", fontsize=9, loc="left"
    )
    ax.set_ylabel(
        VALUE_LABELS.get(claim_letter(claim), "amortized − worst less-amortized mode"), fontsize=7
    )
