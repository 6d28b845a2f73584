"""The paper's claims, tested cell by cell on a table of per-cell metrics (pure pandas, no I/O).

A *cell* is one trained SAE: (architecture, d_sae, sparsity, seed), where sparsity is TopK's k or a standard
SAE's L1 coefficient. The table has one row per cell × mode (:data:`CELL_COLUMNS`); modes are the inference
modes in order of falling amortization (:data:`AMORTIZATION_ORDER`) and, for LocA cells, :data:`LOCA_ROWS`
(LocA with the published budgets, and scaled to the SAE's k, each beside the same fine-tuning with one
group: ``_g1``). Each claim turns a unit — a cell, or for (g) a series of
cells that differ only in sparsity — into a status ("holds", "fails", "n/a" with a reason) and a value whose
side of the claim's threshold decides it (:func:`claim_outcomes`). Claims compare what the paper compares
(each semi:T against the encoder; LocA against the SAE's own encoder), with the extra comparisons
(non_amortized, LocA's G = 1 control) marked secondary; every comparison is density-checked and a tie is
n/a, never a fail. :func:`verdicts` gives, per claim, the share of applicable units where it holds and the
median margin, each with a 95% cluster-bootstrap interval over seeds × worlds, the smallest effect the grid
detects, and the grid points where it fails.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pandas as pd

from sae_bench_amortization.metrics.pairing import common_concept_means
from sae_bench_amortization.metrics.planted import planted_roles
from sae_bench_amortization.reports.effects import effect_size

AMORTIZATION_ORDER = ("amortized", "semi:5", "semi:25", "semi:50", "non_amortized")
SEMI_MODES = ("semi:5", "semi:25", "semi:50")
# LocA as published (budgets as given) and scaled to the SAE's k, each beside its G = 1 control
LOCA_ROWS = ("loca", "loca_g1", "loca_k", "loca_k_g1")
# a grid point (world: the synthetic world family; "default" in tables that predate it); with the seed, a
# cell; seeds × worlds are the clusters the bootstrap resamples
# variant: how the modes were compared (the problem solved and the definitions measured; "l1": the paper's
# plain L1 with the default definitions, what tables that predate variants hold); verdicts are per variant
GRID = ("world", "architecture", "d_sae", "sparsity")
CELL = ("variant", *GRID, "seed")
CLUSTER = ("world", "seed")
DEFAULT_WORLD = "default"
DEFAULT_VARIANT = "l1"
# absorption: the share of a concept's tokens absorbed (ABSORPTION, SAEBench-style, defined whenever the
# concept occurs) and the conditional rate (share of the main latents' misses absorbed; 0/0 = null
# when they never miss)
ABSORPTION = "full_absorption_rate"
METRICS = (
    "nmse", "l0", "dead_rate", "dense_rate", "delta_f1", ABSORPTION, "absorption_rate", "f1", "recall",
)  # fmt: skip
# how many concepts ΔF1 and absorption were measured on (of amortization_gap's max_concepts)
COUNTS = ("n_concepts_delta_f1", "n_concepts_absorption", "n_concepts_full_absorption")
CELL_COLUMNS = (*CELL, "mode", *METRICS, *COUNTS)
# concept-averaged metrics → their count; with per-concept evidence each comparison re-pairs them
CONCEPT_METRICS = {
    "delta_f1": "n_concepts_delta_f1",
    "absorption_rate": "n_concepts_absorption",
    ABSORPTION: "n_concepts_full_absorption",
}
# the per-concept evidence table (one row per cell × mode × concept): its columns
CONCEPT_COLUMNS = (
    *CELL, "mode", "concept", "role", "delta_f1", "f1_at_1", "f1_at_2", "absorption_rate",
    ABSORPTION, "n_tokens", "n_probe_fires", "n_main_silent", "n_absorbed", "main_latents",
    "absorbing_latents", "top_latents", "splitting_reason", "absorption_reason", "absorption_ceiling",
)  # fmt: skip
EVIDENCE = "__concepts__"  # a mode's per-concept rows, inside the mode dicts the claim tests see
# sparsity pressure rises as TopK's k falls and as a standard SAE's L1 coefficient rises
PRESSURE_SIGN = {"topk": -1.0, "standard": 1.0}
DENSITY_TOLERANCE = 0.05  # a mode is density-matched when its L0 is within 5% of the encoder's
MOST = 0.5  # claim (e): "most" of the relief = more than half


@dataclass(frozen=True)
class Outcome:
    status: str  # "holds" | "fails" | "n/a"
    value: float | None = None  # the measured quantity; holds when above the claim's threshold
    reason: str = ""  # why n/a
    n_concepts: int | None = (
        None  # concepts a concept-averaged comparison is over (both modes define)
    )


def _metric(modes: dict[str, dict], mode: str, metric: str) -> float | None:
    value = modes.get(mode, {}).get(metric)
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else value


def _decide(value: float, threshold: float = 0.0) -> Outcome:
    return Outcome("holds" if value > threshold else "fails", value)


def _density_mismatch(
    modes: dict[str, dict], compared: tuple[str, ...], base: str = "amortized"
) -> str:
    """'' when every compared mode's L0 is within :data:`DENSITY_TOLERANCE` of ``base``'s, else why."""
    reference = _metric(modes, base, "l0")
    for mode in compared:
        l0 = _metric(modes, mode, "l0")
        if reference is None or l0 is None or reference <= 0:
            return f"null: L0 of {mode} or {base}"
        if abs(l0 / reference - 1) > DENSITY_TOLERANCE:
            return f"density not matched: {mode} L0 {l0:.3g} vs {base} {reference:.3g}"
    return ""


def _versus(
    metric: str, mode: str, base: str = "amortized", rises: bool = False
) -> Callable[[dict[str, dict]], Outcome | None]:
    """One paired comparison in one cell: value = ``base`` − ``mode`` on ``metric`` (``rises``: ``mode`` −
    ``base``), > 0 = the claim's direction. None (not a unit) when the cell has no ``mode`` row (e.g. no
    LocA-SAE); n/a when a value is null, the densities differ by more than :data:`DENSITY_TOLERANCE`, or
    the two are equal (a tie: no direction to decide). n/a reasons read "kind: detail"."""

    def test(modes: dict[str, dict]) -> Outcome | None:
        if mode not in modes:
            return None
        n_concepts = None
        if metric in CONCEPT_METRICS and _has_evidence(modes, (base, mode)):
            means, n_concepts = _paired(modes, (base, mode), metric)
            ours, theirs = means[base], means[mode]
            if not n_concepts:
                return Outcome(
                    "n/a",
                    reason=f"null: no concept where {base} and {mode} define {metric}",
                    n_concepts=0,
                )
        else:
            ours, theirs = _metric(modes, base, metric), _metric(modes, mode, metric)
        if ours is None or theirs is None:
            missing = [name for name, v in ((base, ours), (mode, theirs)) if v is None]
            return Outcome("n/a", reason=f"null: {metric} of {', '.join(missing)}")
        mismatch = _density_mismatch(modes, (mode,), base)
        if mismatch:
            return Outcome("n/a", reason=mismatch)
        if ours == theirs:
            return Outcome(
                "n/a", reason=f"tie: {metric} equal in {base} and {mode}", n_concepts=n_concepts
            )
        decided = _decide(theirs - ours if rises else ours - theirs)
        return Outcome(decided.status, decided.value, n_concepts=n_concepts)

    return test


def _has_evidence(modes: dict[str, dict], compared: tuple[str, ...]) -> bool:
    return all(isinstance(modes.get(mode, {}).get(EVIDENCE), list) for mode in compared)


def _paired(
    modes: dict[str, dict], compared: tuple[str, ...], metric: str
) -> tuple[dict[str, float | None], int]:
    """Per compared mode, the mean of ``metric`` over the concepts where every compared mode defines it
    (from their per-concept evidence), and how many concepts that is."""
    return common_concept_means(
        {
            mode: {row["concept"]: row.get(metric) for row in modes[mode][EVIDENCE]}
            for mode in compared
        }
    )


def _most_relief_by_25(metric: str) -> Callable[[dict[str, dict]], Outcome]:
    """(e): value = the share of 50 steps' relief (amortized − semi:50) that 25 steps reach; holds above
    :data:`MOST`. n/a when 50 steps bring no relief."""

    def test(modes: dict[str, dict]) -> Outcome:
        compared = ("amortized", "semi:25", "semi:50")
        if metric in CONCEPT_METRICS and _has_evidence(modes, compared):
            means, _ = _paired(modes, compared, metric)
            base, at_25, at_50 = (means[m] for m in compared)
        else:
            base, at_25, at_50 = (_metric(modes, m, metric) for m in compared)
        if base is None or at_25 is None or at_50 is None:
            return Outcome("n/a", reason=f"null: {metric}")
        mismatch = _density_mismatch(modes, ("semi:25", "semi:50"))
        if mismatch:
            return Outcome("n/a", reason=mismatch)
        if base - at_50 <= 0:
            return Outcome("n/a", reason=f"no relief: {metric} not lower at 50 steps")
        return _decide((base - at_25) / (base - at_50), MOST)

    return test


@dataclass(frozen=True)
class Claim:
    key: str
    text: str
    # per cell (returning None where the cell is not a unit of the claim); None: a per-series claim
    test: Callable[[dict[str, dict]], Outcome | None] | None = None
    metric: str = ""  # per-series claims: the amortized metric that must rise with pressure
    effect: str = ""  # what a unit's value is (> threshold: holds)
    primary: bool = True  # the paper's own comparison (False: a control or an extra comparison)
    threshold: float = 0.0


def _against_encoder(
    key: str, claim: str, metric: str, rises: bool = False, label: str = ""
) -> tuple[Claim, ...]:
    """The paper's comparison, each semi:T against the encoder (primary), then non_amortized (secondary)."""
    shown = label or metric
    claims = []
    for mode in (*SEMI_MODES, "non_amortized"):
        suffix = "non" if mode == "non_amortized" else mode.replace(":", "")
        sign = f"{mode} − amortized" if rises else f"amortized − {mode}"
        claims.append(
            Claim(
                f"{key}_{suffix}",
                f"{claim}: {mode} vs amortized",
                _versus(metric, mode, rises=rises),
                effect=f"{sign} {shown}",
                primary=mode != "non_amortized",
            )
        )
    return tuple(claims)


def _loca(key: str, what: str, metric: str, variant: str, cost: bool = False) -> tuple[Claim, ...]:
    """(f): LocA (row ``variant``) against the SAE's own encoder (the paper's comparison), then against its
    G = 1 control fine-tuned alike (``<variant>_g1``, secondary). ``cost``: LocA above = holds."""
    name = "LocA (budgets as published)" if variant == "loca" else "LocA (budgets scaled to k)"
    out = []
    for base, suffix, primary in (("amortized", "", True), (f"{variant}_g1", "_g1", False)):
        against = "the SAE's encoder" if base == "amortized" else "its G=1 control"
        sign = f"{variant} − {base}" if cost else f"{base} − {variant}"
        out.append(
            Claim(
                f"{key}{suffix}",
                f"(f) {name} vs {against}: {what}",
                _versus(metric, variant, base, rises=cost),
                effect=f"{sign} {metric}",
                primary=primary,
            )
        )
    return tuple(out)


CLAIMS = (
    *_against_encoder("a", "(a) semi-amortized NMSE < amortized", "nmse", label="NMSE"),
    *_against_encoder("b_dead", "(b) fewer dead latents", "dead_rate"),
    *_against_encoder("b_dense", "(b) fewer dense latents", "dense_rate"),
    *_against_encoder("c", "(c) less splitting (ΔF1)", "delta_f1"),
    *_against_encoder("d", "(d) less absorption (share of concept tokens)", ABSORPTION),
    *_against_encoder(
        "d_conditional", "(d) less absorption (conditional: of misses)", "absorption_rate"
    ),
    Claim(
        "e_nmse", "(e) most NMSE relief comes by 25 steps", _most_relief_by_25("nmse"),
        effect="(amortized − semi:25) / (amortized − semi:50) NMSE", threshold=MOST,
    ),
    Claim(
        "e_dead", "(e) most dead-latent relief comes by 25 steps", _most_relief_by_25("dead_rate"),
        effect="(amortized − semi:25) / (amortized − semi:50) dead_rate", threshold=MOST,
    ),
    Claim(
        "e_absorption", "(e) most absorption relief comes by 25 steps",
        _most_relief_by_25(ABSORPTION),
        effect=f"(amortized − semi:25) / (amortized − semi:50) {ABSORPTION}", threshold=MOST,
    ),
    *_loca("f_dead", "fewer dead latents", "dead_rate", "loca"),
    *_loca("f_absorption", "less absorption", ABSORPTION, "loca"),
    *_loca("f_nmse_cost", "it pays in NMSE (higher)", "nmse", "loca", cost=True),
    *_loca("f_k_dead", "fewer dead latents", "dead_rate", "loca_k"),
    *_loca("f_k_absorption", "less absorption", ABSORPTION, "loca_k"),
    *_loca("f_k_nmse_cost", "it pays in NMSE (higher)", "nmse", "loca_k", cost=True),
    Claim(
        "g_absorption", "(g) absorption rises with sparsity pressure in training", None,
        ABSORPTION, effect="Spearman ρ(pressure, amortized absorption) over a series",
    ),
    Claim(
        "g_delta_f1", "(g) splitting (ΔF1) rises with sparsity pressure in training", None,
        "delta_f1", effect="Spearman ρ(pressure, amortized ΔF1) over a series",
    ),
    *_against_encoder(
        "truth_f1", "(truth) codes match the planted features better (support F1)", "f1",
        rises=True,
    ),
)  # fmt: skip


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
        return Outcome("n/a", reason=f"too few sparsities: {metric} measured at fewer than 3")
    pressure = [
        PRESSURE_SIGN[a] * s
        for a, s in zip(points["architecture"], points["sparsity"], strict=True)
    ]
    rho = spearman(pressure, points[metric].tolist())
    if rho is None:
        return Outcome("n/a", reason=f"tie: {metric} does not change with sparsity")
    return _decide(rho)


def with_world(cells: pd.DataFrame, columns: tuple[str, ...] = CELL_COLUMNS) -> pd.DataFrame:
    """``cells`` with a ``world`` column (:data:`DEFAULT_WORLD` where a table predates world families) and
    every column of ``columns`` (null where it was not recorded)."""
    cells = cells.copy()
    if "world" not in cells.columns:
        cells.insert(0, "world", DEFAULT_WORLD)
    if "variant" not in cells.columns:
        cells.insert(0, "variant", DEFAULT_VARIANT)
    for column in columns:
        if column not in cells.columns:
            cells[column] = math.nan
    return cells


def claim_outcomes(
    cells: pd.DataFrame, claims: tuple[Claim, ...] = CLAIMS, concepts: pd.DataFrame | None = None
) -> pd.DataFrame:
    """cells (:data:`CELL_COLUMNS`, one row per cell × mode) → one row per claim × unit: claim, the unit's
    grid columns and seed (``sparsity`` NaN for a per-series unit), status, value, reason, n_concepts.
    ``concepts`` (:data:`CONCEPT_COLUMNS`, the per-concept evidence): each comparison of a
    concept-averaged metric is then a mean over the concepts both compared modes define it on."""
    cells = with_world(cells)
    evidence: dict[tuple, dict[str, list[dict]]] = {}
    if concepts is not None:
        concepts = with_world(concepts, CONCEPT_COLUMNS)
        for keys, group in concepts.groupby([*CELL, "mode"], sort=False):
            *cell, mode = _key_tuple(keys)
            evidence.setdefault(tuple(cell), {})[str(mode)] = records_of(group)
    rows = []
    for keys, group in cells.groupby(list(CELL), sort=True):
        modes = {row["mode"]: row for row in records_of(group)}
        for mode, concept_rows in evidence.get(_key_tuple(keys), {}).items():
            if mode in modes:
                modes[mode][EVIDENCE] = concept_rows
        unit = dict(zip(CELL, _key_tuple(keys), strict=True))
        for claim in claims:
            outcome = claim.test(modes) if claim.test is not None else None
            if outcome is not None:
                rows.append({"claim": claim.key, **unit, **outcome.__dict__})
    amortized = cells.loc[cells["mode"] == "amortized"]
    series_keys = ["variant", "world", "architecture", "d_sae", "seed"]
    for keys, series in amortized.groupby(series_keys, sort=True):
        unit = dict(zip(series_keys, _key_tuple(keys), strict=True)) | {"sparsity": math.nan}
        for claim in claims:
            if claim.test is None:
                outcome = _rises_with_pressure(series.sort_values(by="sparsity"), claim.metric)
                rows.append({"claim": claim.key, **unit, **outcome.__dict__})
    columns = pd.Index(["claim", *CELL, "status", "value", "reason", "n_concepts"])
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
    world = row.get("world", DEFAULT_WORLD)
    name = (
        "" if world == DEFAULT_WORLD else f"{world} "
    ) + f"{row['architecture']} d{int(row['d_sae'])}"
    sparsity = row["sparsity"]
    if isinstance(sparsity, float) and math.isnan(sparsity):
        return f"{name} (all {'k' if row['architecture'] == 'topk' else 'l1'})"
    return (
        f"{name} k{int(sparsity)}" if row["architecture"] == "topk" else f"{name} l1={sparsity:g}"
    )


def _reasons(rows: pd.DataFrame) -> str:
    """Why units are n/a, most frequent first: 'tie 20; density not matched 3'."""
    kinds = [str(reason).split(":")[0] for reason in rows["reason"]]
    counts = pd.Series(kinds, dtype=object).value_counts(sort=True)
    return "; ".join(f"{kind} {count}" for kind, count in counts.items())


def verdicts(outcomes: pd.DataFrame, claims: tuple[Claim, ...] = CLAIMS) -> pd.DataFrame:
    """Per variant and claim: units holding / applicable / n/a (and why n/a), the share that holds and the median
    margin (value − threshold) each with a 95% cluster-bootstrap interval over seeds × worlds
    (:func:`~sae_bench_amortization.reports.effects.effect_size`), the smallest detectable median, and
    the failing grid points with how many seeds failed there."""
    outcomes = with_world(outcomes, ("n_concepts",))
    rows = []
    for variant, claim in [(v, c) for v in dict.fromkeys(outcomes["variant"]) for c in claims]:
        mine = outcomes.loc[(outcomes["claim"] == claim.key) & (outcomes["variant"] == variant)]
        applicable = mine.loc[mine["status"] != "n/a"]
        holds = int((applicable["status"] == "holds").sum())
        clusters = list(zip(*(applicable[c] for c in CLUSTER), strict=True))
        effect = effect_size((applicable["value"] - claim.threshold).tolist(), clusters)
        labels = [grid_label(row) for row in records_of(applicable)]
        seeds_at: dict[str, set] = {}
        fails_at: dict[str, set] = {}
        for label, cluster, status in zip(labels, clusters, applicable["status"], strict=True):
            seeds_at.setdefault(label, set()).add(cluster)
            if status == "fails":
                fails_at.setdefault(label, set()).add(cluster)
        failing_points = [
            f"{label} ({len(fails_at[label])}/{len(seeds_at[label])})" for label in fails_at
        ]
        rows.append(
            {
                "variant": variant,
                "claim": claim.key,
                "text": claim.text,
                "primary": claim.primary,
                "effect": claim.effect,
                "threshold": claim.threshold,
                "holds": holds,
                "applicable": len(applicable),
                "not_applicable": len(mine) - len(applicable),
                "not_applicable_why": _reasons(mine.loc[mine["status"] == "n/a"]),
                "n_clusters": effect.n_clusters,
                "share": holds / len(applicable) if len(applicable) else None,
                "share_low": effect.share_low,
                "share_high": effect.share_high,
                "median": effect.median,
                "median_low": effect.median_low,
                "median_high": effect.median_high,
                "detectable": effect.detectable,
                "concepts_per_unit": (
                    None
                    if applicable["n_concepts"].isna().all()
                    else float(applicable["n_concepts"].median())
                ),
                "failing": "; ".join(failing_points),
            }
        )
    return pd.DataFrame(rows)


def _shown(value: object, fmt: str) -> str:
    return "-" if value is None or pd.isna(value) else format(value, fmt)  # type: ignore[arg-type]


VARIANT_TITLES = {
    "l1": "the paper's plain L1, the package's default definitions",
    "paper": "the paper's plain L1, the authors' definitions (--protocol paper)",
    "own": "each SAE's own problem (k_sparse for TopK, decoder-norm-weighted L1 for L1 SAEs)",
}


def verdict_markdown(table: pd.DataFrame) -> str:
    """The verdicts as Markdown, one table per variant: the paper's own comparisons first, then the
    secondary ones."""
    table = with_world(table, ())
    parts = []
    for variant in dict.fromkeys(table["variant"]):
        mine = table.loc[table["variant"] == variant]
        parts.append(
            f"**{variant}**: {VARIANT_TITLES.get(variant, variant)}\n\n" + _verdict_rows(mine)
        )
    return "\n".join(parts)


def _verdict_rows(table: pd.DataFrame) -> str:
    lines = [
        "| claim | effect (value − threshold > 0: holds) | holds / applicable (n/a: why) "
        "| share [95% CI] | median effect [95% CI] | detectable | clusters | concepts per unit (median) "
        "| fails at (seeds failing / seeds) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    primary = table["primary"].astype(bool)
    ordered = pd.concat([table.loc[primary], table.loc[~primary]])
    for row in ordered.to_dict("records"):
        text = row["text"] if row["primary"] else f"(secondary) {row['text']}"
        threshold = f" − {row['threshold']:g}" if row["threshold"] else ""
        share = _shown(row["share"], ".2f")
        if not pd.isna(row["share_low"]):
            share += f" [{row['share_low']:.2f}, {row['share_high']:.2f}]"
        median = _shown(row["median"], ".3g")
        if not pd.isna(row["median_low"]):
            median += f" [{row['median_low']:.3g}, {row['median_high']:.3g}]"
        why = f": {row['not_applicable_why']}" if row["not_applicable_why"] else ""
        lines.append(
            f"| {text} | {row['effect']}{threshold} | {row['holds']} / {row['applicable']} "
            f"({row['not_applicable']}{why}) | {share} | {median} | {_shown(row['detectable'], '.3g')} "
            f"| {row['n_clusters']} | {_shown(row['concepts_per_unit'], 'g')} | {row['failing'] or '-'} |"
        )
    return "\n".join(lines) + "\n"


def mode_means(cells: pd.DataFrame) -> pd.DataFrame:
    """Per architecture × mode (amortization order, then :data:`LOCA_ROWS`): the mean of each metric over the
    cells where it was measured, and how many cells that was (``n_<metric>``)."""
    order = {mode: i for i, mode in enumerate((*AMORTIZATION_ORDER, *LOCA_ROWS))}
    cells = with_world(cells)
    grouped = cells.groupby(["variant", "world", "architecture", "mode"], sort=False)
    means = grouped[list(METRICS)].mean()
    counts = grouped[list(METRICS)].count().add_prefix("n_")
    table = means.join(counts).reset_index()
    table["order"] = table["mode"].map(lambda mode: order.get(mode, math.nan))
    table = table.sort_values(["variant", "world", "architecture", "order"])
    return table.drop(columns="order").reset_index(drop=True)


def mode_means_markdown(table: pd.DataFrame) -> str:
    """:func:`mode_means` as Markdown: a metric's mean, with the number of cells behind it when some
    cells had it null."""
    columns = METRICS
    lines = [
        "| variant | world | SAE | mode | cells | NMSE | L0 | dead | dense | ΔF1 | absorption (share of tokens) "
        "| absorption (conditional: of misses) | support F1 | recall |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
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
            f"| {row['variant']} | {row['world']} | {row['architecture']} | {row['mode']} | {n_cells} | "
            + " | ".join(cells)
            + " |"
        )
    return "\n".join(lines) + "\n"


def world_summary(cells: pd.DataFrame, concepts: pd.DataFrame | None) -> pd.DataFrame:
    """Per world and architecture (the default variant's encoder rows): what its planted truth allows and
    what the encoders reach. probed: median concepts probed per cell; planted_share: median share of them
    carrying planted absorption or splitting (parents, composites; ``metrics.planted.planted_roles``),
    absorbable_share: of them, those absorption can reach (parents); ceiling: median over cells of the
    mean planted absorption ceiling over the concepts the cell's absorption share averages; encoder_mean
    / encoder_max: the encoder's absorption share (share of concept tokens) over the cells. ΔF1 has no
    ceiling the truth alone fixes (it depends on the probes): the planted share stands for it."""
    cells = with_world(cells)
    variant = (
        DEFAULT_VARIANT if (cells["variant"] == DEFAULT_VARIANT).any() else cells["variant"].iloc[0]
    )
    encoder = cells.loc[(cells["variant"] == variant) & (cells["mode"] == "amortized")]
    rows = []
    for keys, group in encoder.groupby(["world", "architecture"], sort=True):
        world, architecture = _key_tuple(keys)
        row = {
            "world": world,
            "architecture": architecture,
            "cells": len(group),
            "encoder_mean": group[ABSORPTION].mean(),
            "encoder_max": group[ABSORPTION].max(),
            "probed": None,
            "planted_share": None,
            "absorbable_share": None,
            "ceiling": None,
            "ceiling_max": None,
        }
        if concepts is not None:
            mine = with_world(concepts, CONCEPT_COLUMNS)
            mine = mine.loc[
                (mine["variant"] == variant)
                & (mine["mode"] == "amortized")
                & (mine["world"] == world)
                & (mine["architecture"] == architecture)
            ]
            per_cell = []
            for _, group_rows in mine.groupby(list(CELL), sort=False):
                cell = pd.DataFrame(group_rows)
                roles = [planted_roles(str(role)) for role in cell["role"]]
                planted = sum(absorbed or split for absorbed, split in roles) / len(roles)
                absorbable = sum(absorbed for absorbed, _ in roles) / len(roles)
                measured = cell.loc[cell[ABSORPTION].notna()]
                ceiling = measured["absorption_ceiling"].mean() if len(measured) else math.nan
                per_cell.append((len(cell), planted, absorbable, ceiling))
            if per_cell:
                names = pd.Index(["probed", "planted", "absorbable", "ceiling"])
                frame = pd.DataFrame(per_cell, columns=names)
                row |= {
                    "probed": frame["probed"].median(),
                    "planted_share": frame["planted"].median(),
                    "absorbable_share": frame["absorbable"].median(),
                    "ceiling": frame["ceiling"].median(),
                    "ceiling_max": frame["ceiling"].max(),
                }
        rows.append(row)
    return pd.DataFrame(rows)


def world_summary_markdown(table: pd.DataFrame) -> str:
    """:func:`world_summary` as Markdown."""
    lines = [
        "| world | SAE | cells | concepts probed | share with planted absorption or splitting "
        "| share absorbable (parents) | absorption ceiling (median, max) | encoder absorption (mean, max) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in table.to_dict("records"):
        lines.append(
            f"| {row['world']} | {row['architecture']} | {row['cells']} | {_shown(row['probed'], 'g')} "
            f"| {_shown(row['planted_share'], '.2f')} | {_shown(row['absorbable_share'], '.2f')} "
            f"| {_shown(row['ceiling'], '.3f')}, "
            f"{_shown(row['ceiling_max'], '.3f')} | {_shown(row['encoder_mean'], '.4f')}, "
            f"{_shown(row['encoder_max'], '.4f')} |"
        )
    return "\n".join(lines) + "\n"
