"""The paper's claims, tested cell by cell on a table of per-cell metrics (pure pandas, no I/O).

A *cell* is one trained SAE: (architecture, d_sae, sparsity, seed), where sparsity is TopK's k or a standard
SAE's L1 coefficient. The table has one row per cell × mode (:data:`CELL_COLUMNS`); modes are the inference
modes in order of falling amortization (:data:`AMORTIZATION_ORDER`) and, for LocA cells, :data:`LOCA_ROWS`
(LocA with the published budgets, and scaled to the SAE's k, each beside the same fine-tuning with one
group: ``_g1``). Each claim turns a unit — a cell, or for (g) a series of
cells that differ only in sparsity — into a status ("holds", "fails", "n/a" with a reason) and a value whose
side of the claim's threshold decides it (:func:`claim_outcomes`). :func:`verdicts` gives, per claim, the
share of applicable units where it holds, a 95% t-interval of that share over seeds, and the grid points
where it fails.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pandas as pd

AMORTIZATION_ORDER = ("amortized", "semi:5", "semi:25", "semi:50", "non_amortized")
SEMI_MODES = ("semi:5", "semi:25", "semi:50")
# LocA as published (budgets as given) and scaled to the SAE's k, each beside its G = 1 control
LOCA_ROWS = ("loca", "loca_g1", "loca_k", "loca_k_g1")
GRID = ("architecture", "d_sae", "sparsity")  # a grid point; with the seed, a cell
CELL = (*GRID, "seed")
# absorption: the share of a concept's tokens absorbed (ABSORPTION, SAEBench-style, defined whenever the
# concept occurs) and the conditional rate (share of the main latents' misses absorbed; 0/0 = null
# when they never miss)
ABSORPTION = "full_absorption_rate"
METRICS = (
    "nmse", "l0", "dead_rate", "dense_rate", "delta_f1", ABSORPTION, "absorption_rate", "f1", "recall",
)  # fmt: skip
# how many concepts ΔF1 and absorption were measured on (of amortization_gap's max_concepts)
COUNTS = ("n_concepts_delta_f1", "n_concepts_absorption")
CELL_COLUMNS = (*CELL, "mode", *METRICS, *COUNTS)
# sparsity pressure rises as TopK's k falls and as a standard SAE's L1 coefficient rises
PRESSURE_SIGN = {"topk": -1.0, "standard": 1.0}
DENSITY_TOLERANCE = 0.05  # a mode is density-matched when its L0 is within 5% of the encoder's
MOST = 0.5  # claim (e): "most" of the relief = more than half


@dataclass(frozen=True)
class Outcome:
    status: str  # "holds" | "fails" | "n/a"
    value: float | None = None  # the measured quantity; holds when above the claim's threshold
    reason: str = ""  # why n/a


def _metric(modes: dict[str, dict], mode: str, metric: str) -> float | None:
    value = modes.get(mode, {}).get(metric)
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else value


def _decide(value: float, threshold: float = 0.0) -> Outcome:
    return Outcome("holds" if value > threshold else "fails", value)


def _density_mismatch(modes: dict[str, dict], compared: tuple[str, ...]) -> str:
    """'' when every compared mode's L0 is within :data:`DENSITY_TOLERANCE` of the encoder's, else why."""
    base = _metric(modes, "amortized", "l0")
    for mode in compared:
        l0 = _metric(modes, mode, "l0")
        if base is None or l0 is None or base <= 0:
            return f"no L0 for {mode} or amortized"
        if abs(l0 / base - 1) > DENSITY_TOLERANCE:
            return f"density not matched: {mode} L0 {l0:.3g} vs amortized {base:.3g}"
    return ""


def _falls(metric: str, rises: bool = False) -> Callable[[dict[str, dict]], Outcome]:
    """Holds when every less amortized mode (semi:5 … non_amortized) is below the encoder on ``metric``
    (``rises``: above it); value = the margin of the worst of them. n/a when all are 0 (nothing to
    relieve), a value is null, or the densities do not match."""

    def test(modes: dict[str, dict]) -> Outcome:
        measured = [_metric(modes, mode, metric) for mode in AMORTIZATION_ORDER]
        values = [value for value in measured if value is not None]
        if len(values) < len(measured):
            missing = [m for m, v in zip(AMORTIZATION_ORDER, measured, strict=True) if v is None]
            return Outcome("n/a", reason=f"{metric} null for {', '.join(missing)}")
        mismatch = _density_mismatch(modes, AMORTIZATION_ORDER[1:])
        if mismatch:
            return Outcome("n/a", reason=mismatch)
        if not rises and all(value == 0 for value in values):
            return Outcome("n/a", reason=f"{metric} is 0 in every mode")
        first, rest = values[0], values[1:]
        return _decide(min(rest) - first if rises else first - max(rest))

    return test


def _semi_nmse_below(modes: dict[str, dict]) -> Outcome:
    """(a): value = amortized NMSE − the highest semi:T NMSE (> 0: every semi mode reconstructs better)."""
    measured = [_metric(modes, mode, "nmse") for mode in ("amortized", *SEMI_MODES)]
    values = [value for value in measured if value is not None]
    if len(values) < len(measured):
        return Outcome("n/a", reason="NMSE null")
    mismatch = _density_mismatch(modes, SEMI_MODES)
    if mismatch:
        return Outcome("n/a", reason=mismatch)
    return _decide(values[0] - max(values[1:]))


def _most_relief_by_25(metric: str) -> Callable[[dict[str, dict]], Outcome]:
    """(e): value = the share of 50 steps' relief (amortized − semi:50) that 25 steps reach; holds above
    :data:`MOST`. n/a when 50 steps bring no relief."""

    def test(modes: dict[str, dict]) -> Outcome:
        base, at_25, at_50 = (
            _metric(modes, m, metric) for m in ("amortized", "semi:25", "semi:50")
        )
        if base is None or at_25 is None or at_50 is None:
            return Outcome("n/a", reason=f"{metric} null")
        mismatch = _density_mismatch(modes, ("semi:25", "semi:50"))
        if mismatch:
            return Outcome("n/a", reason=mismatch)
        if base - at_50 <= 0:
            return Outcome("n/a", reason=f"no {metric} relief at 50 steps")
        return _decide((base - at_25) / (base - at_50), MOST)

    return test


def _loca_below(
    metric: str, cost: bool = False, variant: str = "loca"
) -> Callable[[dict[str, dict]], Outcome | None]:
    """(f): value = G=1 control (row ``<variant>_g1``) − LocA (row ``variant``) on ``metric`` (``cost``:
    LocA − control, > 0 = LocA pays). None (not a unit of the claim) for a cell without these rows; n/a
    when a value is null or both are 0."""

    def test(modes: dict[str, dict]) -> Outcome | None:
        if variant not in modes and f"{variant}_g1" not in modes:
            return None
        loca, control = _metric(modes, variant, metric), _metric(modes, f"{variant}_g1", metric)
        if loca is None or control is None:
            return Outcome("n/a", reason=f"no {metric} for loca and its G=1 control")
        if not cost and loca == 0 and control == 0:
            return Outcome("n/a", reason=f"{metric} is 0 for both")
        return _decide(loca - control if cost else control - loca)

    return test


@dataclass(frozen=True)
class Claim:
    key: str
    text: str
    # per cell (returning None where the cell is not a unit of the claim); None: a per-series claim
    test: Callable[[dict[str, dict]], Outcome | None] | None = None
    metric: str = ""  # per-series claims: the amortized metric that must rise with pressure


CLAIMS = (
    Claim("a", "(a) semi-amortized NMSE < amortized, at matched density", _semi_nmse_below),
    Claim("b_dead", "(b) dead latents fall as amortization falls", _falls("dead_rate")),
    Claim("b_dense", "(b) dense latents fall as amortization falls", _falls("dense_rate")),
    Claim("c", "(c) ΔF1 (splitting) falls as amortization falls", _falls("delta_f1")),
    Claim(
        "d",
        "(d) absorption (share of concept tokens) falls as amortization falls",
        _falls(ABSORPTION),
    ),
    Claim(
        "d_conditional",
        "(d) absorption (conditional: share of misses absorbed) falls as amortization falls",
        _falls("absorption_rate"),
    ),
    Claim("e_nmse", "(e) most NMSE relief comes by 25 steps", _most_relief_by_25("nmse")),
    Claim(
        "e_dead", "(e) most dead-latent relief comes by 25 steps", _most_relief_by_25("dead_rate")
    ),
    Claim(
        "e_absorption",
        "(e) most absorption relief comes by 25 steps",
        _most_relief_by_25(ABSORPTION),
    ),
    Claim(
        "f_dead",
        "(f) LocA (budgets as published) has fewer dead latents than its G=1 control",
        _loca_below("dead_rate"),
    ),
    Claim(
        "f_absorption",
        "(f) LocA (budgets as published) absorbs less than its G=1 control",
        _loca_below(ABSORPTION),
    ),
    Claim(
        "f_nmse_cost",
        "(f) LocA (budgets as published) pays NMSE for it (NMSE above the control's)",
        _loca_below("nmse", True),
    ),
    Claim(
        "f_k_dead",
        "(f) LocA, budgets scaled to k: fewer dead latents than its G=1 control",
        _loca_below("dead_rate", variant="loca_k"),
    ),
    Claim(
        "f_k_absorption",
        "(f) LocA, budgets scaled to k: absorbs less than its G=1 control",
        _loca_below(ABSORPTION, variant="loca_k"),
    ),
    Claim(
        "f_k_nmse_cost",
        "(f) LocA, budgets scaled to k: NMSE above the control's",
        _loca_below("nmse", True, variant="loca_k"),
    ),
    Claim(
        "g_absorption",
        "(g) absorption rises with sparsity pressure in training",
        None,
        ABSORPTION,
    ),
    Claim(
        "g_delta_f1",
        "(g) splitting (ΔF1) rises with sparsity pressure in training",
        None,
        "delta_f1",
    ),
    Claim(
        "truth_f1",
        "(truth) codes match the planted features better as amortization falls (support F1)",
        _falls("f1", rises=True),
    ),
)


def _rank(values: list[float]) -> list[float]:
    order = sorted(range(len(values)), key=values.__getitem__)
    ranks = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for position in order[i : j + 1]:
            ranks[position] = (i + j) / 2
        i = j + 1
    return ranks


def spearman(x: list[float], y: list[float]) -> float | None:
    """Spearman's rank correlation (ties get mean ranks); None when either side is constant."""
    rx, ry = _rank(x), _rank(y)
    mx, my = sum(rx) / len(rx), sum(ry) / len(ry)
    sxy = sum((a - mx) * (b - my) for a, b in zip(rx, ry, strict=True))
    sxx, syy = sum((a - mx) ** 2 for a in rx), sum((b - my) ** 2 for b in ry)
    return None if sxx == 0 or syy == 0 else sxy / math.sqrt(sxx * syy)


def _rises_with_pressure(series: pd.DataFrame, metric: str) -> Outcome:
    """(g) on one series (same architecture, d_sae, seed; amortized rows): value = Spearman ρ between
    sparsity pressure and ``metric``."""
    points = series.dropna(subset=[metric])
    if points["sparsity"].nunique() < 3:
        return Outcome("n/a", reason=f"{metric} measured at fewer than 3 sparsities")
    pressure = [
        PRESSURE_SIGN[a] * s
        for a, s in zip(points["architecture"], points["sparsity"], strict=True)
    ]
    rho = spearman(pressure, points[metric].tolist())
    if rho is None:
        return Outcome("n/a", reason=f"{metric} does not change with sparsity")
    return _decide(rho)


def claim_outcomes(cells: pd.DataFrame, claims: tuple[Claim, ...] = CLAIMS) -> pd.DataFrame:
    """cells (:data:`CELL_COLUMNS`, one row per cell × mode) → one row per claim × unit: claim, the unit's
    grid columns and seed (``sparsity`` NaN for a per-series unit), status, value, reason."""
    rows = []
    for keys, group in cells.groupby(list(CELL), sort=True):
        modes = {row["mode"]: row for row in records_of(group)}
        unit = dict(zip(CELL, _key_tuple(keys), strict=True))
        for claim in claims:
            outcome = claim.test(modes) if claim.test is not None else None
            if outcome is not None:
                rows.append({"claim": claim.key, **unit, **outcome.__dict__})
    amortized = cells.loc[cells["mode"] == "amortized"]
    for keys, series in amortized.groupby(["architecture", "d_sae", "seed"], sort=True):
        architecture, d_sae, seed = _key_tuple(keys)
        unit = {"architecture": architecture, "d_sae": d_sae, "sparsity": math.nan, "seed": seed}
        for claim in claims:
            if claim.test is None:
                outcome = _rises_with_pressure(series.sort_values(by="sparsity"), claim.metric)
                rows.append({"claim": claim.key, **unit, **outcome.__dict__})
    columns = pd.Index(["claim", *CELL, "status", "value", "reason"])
    return pd.DataFrame(rows, columns=columns)


def records_of(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """``frame``'s rows as dicts (column → value)."""
    return [{str(key): value for key, value in row.items()} for row in frame.to_dict("records")]


def _key_tuple(keys: object) -> tuple[object, ...]:
    """A groupby key over several columns as the tuple it is."""
    return keys if isinstance(keys, tuple) else (keys,)


def t_interval(shares: list[float]) -> tuple[float | None, float | None]:
    """95% Student-t interval of the mean of ``shares`` (one per seed), clipped to [0, 1]; (None, None)
    with fewer than two seeds."""
    from scipy import stats

    n = len(shares)
    if n < 2:
        return None, None
    mean = sum(shares) / n
    sd = math.sqrt(sum((s - mean) ** 2 for s in shares) / (n - 1))
    half = float(stats.t.ppf(0.975, n - 1)) * sd / math.sqrt(n)
    return max(0.0, mean - half), min(1.0, mean + half)


def grid_label(row: dict) -> str:
    """'topk d128 k4', 'standard d256 l1=0.4', or for a series 'topk d128 (all k)'."""
    name = f"{row['architecture']} d{int(row['d_sae'])}"
    sparsity = row["sparsity"]
    if isinstance(sparsity, float) and math.isnan(sparsity):
        return f"{name} (all {'k' if row['architecture'] == 'topk' else 'l1'})"
    return (
        f"{name} k{int(sparsity)}" if row["architecture"] == "topk" else f"{name} l1={sparsity:g}"
    )


def verdicts(outcomes: pd.DataFrame, claims: tuple[Claim, ...] = CLAIMS) -> pd.DataFrame:
    """Per claim: units holding / applicable / n/a, the pooled share, its 95% t-interval over seeds (the
    share within each seed), and the failing grid points with how many seeds failed there."""
    rows = []
    for claim in claims:
        mine = outcomes.loc[outcomes["claim"] == claim.key]
        applicable = mine.loc[mine["status"] != "n/a"]
        holds = int((applicable["status"] == "holds").sum())
        per_seed = [
            float((group["status"] == "holds").mean()) for _, group in applicable.groupby("seed")
        ]
        low, high = t_interval(per_seed)
        labels = [grid_label(row) for row in records_of(applicable)]
        seeds_at: dict[str, set] = {}
        fails_at: dict[str, set] = {}
        for label, seed, status in zip(
            labels, applicable["seed"], applicable["status"], strict=True
        ):
            seeds_at.setdefault(label, set()).add(seed)
            if status == "fails":
                fails_at.setdefault(label, set()).add(seed)
        failing_points = [
            f"{label} ({len(fails_at[label])}/{len(seeds_at[label])})" for label in fails_at
        ]
        rows.append(
            {
                "claim": claim.key,
                "text": claim.text,
                "holds": holds,
                "applicable": len(applicable),
                "not_applicable": len(mine) - len(applicable),
                "share": holds / len(applicable) if len(applicable) else None,
                "ci_low": low,
                "ci_high": high,
                "failing": "; ".join(failing_points),
            }
        )
    return pd.DataFrame(rows)


def verdict_markdown(table: pd.DataFrame) -> str:
    """The verdicts as a Markdown table."""
    lines = [
        "| claim | holds / applicable (n/a) | share | 95% CI over seeds | fails at (seeds failing / seeds) |",
        "|---|---|---|---|---|",
    ]
    for row in table.to_dict("records"):
        share = "-" if row["share"] is None or pd.isna(row["share"]) else f"{row['share']:.2f}"
        ci = (
            "-"
            if row["ci_low"] is None or pd.isna(row["ci_low"])
            else f"[{row['ci_low']:.2f}, {row['ci_high']:.2f}]"
        )
        lines.append(
            f"| {row['text']} | {row['holds']} / {row['applicable']} ({row['not_applicable']}) | {share} "
            f"| {ci} | {row['failing'] or '-'} |"
        )
    return "\n".join(lines) + "\n"


def mode_means(cells: pd.DataFrame) -> pd.DataFrame:
    """Per architecture × mode (amortization order, then :data:`LOCA_ROWS`): the mean of each metric over the
    cells where it was measured, and how many cells that was (``n_<metric>``)."""
    order = {mode: i for i, mode in enumerate((*AMORTIZATION_ORDER, *LOCA_ROWS))}
    grouped = cells.groupby(["architecture", "mode"], sort=False)
    means = grouped[list(METRICS)].mean()
    counts = grouped[list(METRICS)].count().add_prefix("n_")
    table = means.join(counts).reset_index()
    table["order"] = table["mode"].map(lambda mode: order.get(mode, math.nan))
    return table.sort_values(["architecture", "order"]).drop(columns="order").reset_index(drop=True)


def mode_means_markdown(table: pd.DataFrame) -> str:
    """:func:`mode_means` as Markdown: a metric's mean, with the number of cells behind it when some
    cells had it null."""
    columns = METRICS
    lines = [
        "| SAE | mode | cells | NMSE | L0 | dead | dense | ΔF1 | absorption (share of tokens) "
        "| absorption (conditional: of misses) | support F1 | recall |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in table.to_dict("records"):
        n_cells = max(int(row[f"n_{column}"]) for column in columns)
        cells = []
        for column in columns:
            if pd.isna(row[column]):
                cells.append("null")
                continue
            shown = f"{row[column]:.3f}"
            n = int(row[f"n_{column}"])
            cells.append(shown if n == n_cells else f"{shown} ({n})")
        lines.append(
            f"| {row['architecture']} | {row['mode']} | {n_cells} | " + " | ".join(cells) + " |"
        )
    return "\n".join(lines) + "\n"
