"""A reproduction's result in the paper's layout: the paper's number, ours, the difference, and what could
not be compared (a value the paper does not report, a metric our run could not measure, and why)."""

from __future__ import annotations

import math
from typing import Any, cast

import pandas as pd

from sae_bench_amortization.reproduce.paper_numbers import LABELS, METRICS, PAPER_ROWS, PaperRow


def _number(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(number) else number


def _cell(value: float | None) -> str:
    return "–" if value is None else f"{value:.3f}"


def _difference(ours: float | None, paper: float | None) -> str:
    return "–" if ours is None or paper is None else f"{ours - paper:+.3f}"


def _bound(ours: float | None, bound: tuple[str, float]) -> str:
    sign, value = bound
    if ours is None:
        return f"paper {sign} {value}: not measured"
    holds = ours > value if sign == ">" else ours < value
    return f"paper {sign} {value}: ours {ours:.3f} ({'holds' if holds else 'does not hold'})"


def compare_rows(
    ours: dict[str, dict[str, Any]], paper: tuple[PaperRow, ...]
) -> tuple[pd.DataFrame, list[str]]:
    """One row per paper row (its mode's values in ``ours``: mode → metric → value): for each of the paper's
    columns the paper's value, ours and ours − paper; plus our L0. Returns the table and the notes on what
    was not comparable."""
    rows, notes = [], []
    for row in paper:
        values = ours.get(row.mode)
        line: dict[str, Any] = {"paper row": row.label, "our mode": row.mode}
        if values is None:
            notes.append(f"{row.label}: mode {row.mode} has no result")
        for metric in METRICS:
            label = LABELS[metric]
            mine = None if values is None else _number(values.get(metric))
            theirs = row.values.get(metric)
            line |= {f"{label} paper": _cell(theirs), f"{label} ours": _cell(mine),
                     f"{label} Δ": _difference(mine, theirs)}  # fmt: skip
            if values is not None and mine is None and theirs is not None:
                notes.append(f"{row.label}: {label} not measured here ({values.get('why_' + metric) or 'null in the result'})")  # fmt: skip
            if theirs is None and metric not in (row.bounds or {}) and row.values:
                notes.append(f"{row.label}: the paper reports no {label}")
        line["L0 ours"] = _cell(None if values is None else _number(values.get("l0")))
        for metric, bound in (row.bounds or {}).items():
            mine = None if values is None else _number(values.get(metric))
            notes.append(f"{row.label}: {LABELS.get(metric, metric)} {_bound(mine, bound)}")
        rows.append(line)
    return pd.DataFrame(rows), notes


def rows_where(frame: pd.DataFrame, mask: Any) -> pd.DataFrame:
    """The rows of ``frame`` where ``mask`` (a boolean Series) holds."""
    return cast(pd.DataFrame, frame.loc[mask])


def modes_of(frame: pd.DataFrame, sae: str | None = None) -> dict[str, dict[str, Any]]:
    """``load_results`` rows of one SAE (all rows when None) → mode → metric → value."""
    if sae is not None:
        frame = rows_where(frame, frame["sae"] == sae)
    return {str(row["mode"]): row.to_dict() for _, row in frame.iterrows()}


def dynamics_rows(table: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, dict[str, Any]]]:
    """``dynamics.csv`` → per checkpoint and mode the paper's metrics; and the modes of the late (last)
    checkpoint and of the early ones (the first half: their largest dense rate), for the paper's rows."""
    keep = ["checkpoint", "sae", "mode", "dense_rate", *METRICS]
    shown = table.loc[:, [c for c in keep if c in table.columns]].copy()
    shown["sae"] = shown["sae"].str.rsplit("__", n=1).str[-1]  # the checkpoint's own part of its id
    last = int(table["checkpoint"].max())
    late = rows_where(table, table["checkpoint"] == last)
    early = rows_where(table, table["checkpoint"] <= last // 2)
    ours = {"late": modes_of(late).get("amortized", {}),
            "early": {"dense_rate": early.loc[early["mode"] == "amortized", "dense_rate"].max()}}  # fmt: skip
    return shown, ours


def dynamics_compare(ours: dict[str, dict[str, Any]]) -> tuple[pd.DataFrame, list[str]]:
    """The paper's late-checkpoint row beside ours (a table), and its early-checkpoint bound (a note)."""
    early, late = PAPER_ROWS["dynamics"]
    table, notes = compare_rows({"amortized": ours["late"]}, (late,))
    _, early_notes = compare_rows({"amortized": ours["early"]}, (early,))
    return table, early_notes + notes


def architecture_means(frame: pd.DataFrame) -> pd.DataFrame:
    """``load_results`` rows of several SAEs → per architecture (read from the release name) and mode the
    mean of each paper metric and L0, with the number of SAEs."""
    frame = frame.copy()
    frame["architecture"] = (
        frame["sae"].str.extract(r"sweep_([a-z]+)_", expand=False).fillna("other")
    )
    metrics = [m for m in (*METRICS, "dense_rate", "l0") if m in frame.columns]
    for metric in metrics:
        frame[metric] = pd.to_numeric(frame[metric], errors="coerce")
    grouped = frame.groupby(["architecture", "mode"], sort=True)
    means = grouped[metrics].mean()
    means.insert(0, "SAEs", grouped["sae"].nunique().to_numpy())
    return means.reset_index()
