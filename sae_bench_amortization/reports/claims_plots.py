"""One PNG per claim of :mod:`reports.claims` (its letter), for one variant (default: the paper's plain L1 with
the default definitions): each sub-claim's measured value per grid point (a dot per seed, a bar at the
mean), its threshold dashed; units where the claim is n/a are left out and counted."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from sae_bench_amortization.reports.claims import (
    CLAIMS,
    DEFAULT_VARIANT,
    Claim,
    grid_label,
    records_of,
    with_world,
)
from sae_bench_amortization.reports.plots import plt, write_png


def claim_letter(claim: Claim) -> str:
    return claim.key.split("_")[0]


def plot_claims(
    outcomes: pd.DataFrame,
    folder: Path,
    claims: tuple[Claim, ...] = CLAIMS,
    variant: str = DEFAULT_VARIANT,
) -> list[Path]:
    """``claim_<letter>.png`` in ``folder`` for every claim letter, from the outcomes of ``variant``."""
    outcomes = with_world(outcomes, ())
    outcomes = outcomes.loc[outcomes["variant"] == variant]
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
    threshold = claim.threshold
    for x, point in enumerate(points):
        values = measured[measured["point"] == point]
        colours = ["tab:green" if s == "holds" else "tab:red" for s in values["status"]]
        ax.bar(x, values["value"].mean(), color="0.85", width=0.7)
        ax.scatter([x] * len(values), values["value"], c=colours, s=18, zorder=3)
    ax.axhline(threshold, color="0.3", linestyle="--", linewidth=1)
    ax.set_xticks(range(len(points)), points, rotation=60, ha="right", fontsize=7)
    holds = int((measured["status"] == "holds").sum())
    secondary = "" if claim.primary else "(secondary) "
    ax.set_title(
        f"{secondary}{claim.text}: holds in {holds} of {len(measured)} (n/a {n_na})",
        fontsize=9,
        loc="left",
    )
    ax.set_ylabel(claim.effect, fontsize=7)
