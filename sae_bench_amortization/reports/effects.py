"""Effect sizes of a claim over units that come in clusters (seeds × worlds: units of one cluster share a
world and a training seed, so they are not independent): the median margin and the share of units where
the claim holds, each with a 95% cluster-bootstrap interval, and the smallest effect the grid can detect.
Pure numpy."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

N_RESAMPLES = 2000
# z_0.975 + z_0.80: a true effect this many standard errors from 0 is detected 80% of the time at α = 0.05
Z_DETECT = 1.959964 + 0.841621
Z_95 = 1.959964


@dataclass(frozen=True)
class Effect:
    """One claim's effect over its applicable units.

    median, median_low, median_high: the median margin (value − the claim's threshold; > 0 = the claim's
    direction) and its 95% percentile cluster-bootstrap interval.
    share, share_low, share_high: the share of units that hold, and its 95% Wilson interval at the
    effective sample size the cluster bootstrap implies (between the number of clusters and of units).
    detectable: :data:`Z_DETECT` × the bootstrap standard error of the median: the smallest median effect
    this grid detects with 80% power at α = 0.05.
    None where there are no units; intervals and ``detectable`` need at least two clusters.
    """

    n_units: int
    n_clusters: int
    median: float | None = None
    median_low: float | None = None
    median_high: float | None = None
    share: float | None = None
    share_low: float | None = None
    share_high: float | None = None
    detectable: float | None = None


def cluster_resamples(
    values: np.ndarray,
    clusters: Sequence[object],
    statistic: Callable[[np.ndarray], float],
    n_resamples: int = N_RESAMPLES,
    seed: int = 0,
) -> np.ndarray:
    """``statistic`` of ``n_resamples`` cluster-bootstrap resamples of ``values`` [n]: each resample draws
    as many clusters as there are, with replacement, and pools their units. [n_resamples]"""
    groups = _groups(values, clusters)
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(groups), size=(n_resamples, len(groups)))
    if statistic is np.mean:  # pooled mean = Σ cluster sums / Σ cluster sizes, without pooling
        sums = np.array([group.sum() for group in groups])
        sizes = np.array([group.size for group in groups])
        return sums[picks].sum(axis=1) / sizes[picks].sum(axis=1)
    if statistic is np.median:
        return _pooled_medians(groups, picks)
    return np.array([statistic(np.concatenate([groups[i] for i in pick])) for pick in picks])


def _pooled_medians(groups: list[np.ndarray], picks: np.ndarray) -> np.ndarray:
    """np.median of each resample's pooled units without pooling them: every unit sorted once, weighted
    by how often its cluster was drawn; the two middle order statistics found on the cumulative
    weights. picks [R, n_clusters] → [R]"""
    values = np.concatenate(groups)
    cluster_of = np.concatenate([np.full(group.size, i) for i, group in enumerate(groups)])
    order = np.argsort(values, kind="stable")
    values, cluster_of = values[order], cluster_of[order]
    draws = np.stack(
        [np.bincount(pick, minlength=len(groups)) for pick in picks]
    )  # [R, n_clusters]
    cumulative = np.cumsum(draws[:, cluster_of], axis=1)  # [R, n_units]
    total = cumulative[:, -1]
    lower = (total + 1) // 2  # 1-based ranks of the two middle units (equal when the total is odd)
    upper = total // 2 + 1
    low = np.array(
        [np.searchsorted(row, rank) for row, rank in zip(cumulative, lower, strict=True)]
    )
    high = np.array(
        [np.searchsorted(row, rank) for row, rank in zip(cumulative, upper, strict=True)]
    )
    return (values[low] + values[high]) / 2


def _groups(values: np.ndarray, clusters: Sequence[object]) -> list[np.ndarray]:
    order: dict[object, list[int]] = {}
    for i, cluster in enumerate(clusters):
        order.setdefault(cluster, []).append(i)
    return [values[indices] for indices in order.values()]


def wilson_interval(share: float, n: float, z: float = Z_95) -> tuple[float, float]:
    """Wilson score interval of a proportion ``share`` observed on ``n`` (possibly effective) trials."""
    centre = (share + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(share * (1 - share) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def effective_n(share: float, n_units: int, n_clusters: int, bootstrap_var: float) -> float:
    """Units ÷ the design effect (the bootstrap variance of the share over the binomial one), kept
    between the number of clusters and of units; the number of clusters (units of a cluster taken as
    one) when the share is 0 or 1 and the variance says nothing."""
    if 0 < share < 1 and bootstrap_var > 0:
        design_effect = bootstrap_var / (share * (1 - share) / n_units)
        return min(float(n_units), max(float(n_clusters), n_units / design_effect))
    return float(n_clusters)


def effect_size(
    margins: Sequence[float], clusters: Sequence[object], n_resamples: int = N_RESAMPLES
) -> Effect:
    """:class:`Effect` of the units' ``margins`` (value − threshold; holds where > 0), one cluster label
    per unit."""
    values = np.asarray(margins, dtype=float)
    n_clusters = len(set(clusters))
    if values.size == 0:
        return Effect(0, 0)
    median = float(np.median(values))
    holds = (values > 0).astype(float)
    share = float(holds.mean())
    if n_clusters < 2:
        return Effect(values.size, n_clusters, median=median, share=share)
    medians = cluster_resamples(values, clusters, np.median, n_resamples)
    shares = cluster_resamples(holds, clusters, np.mean, n_resamples)
    low, high = np.percentile(medians, [2.5, 97.5])
    n_eff = effective_n(share, values.size, n_clusters, float(shares.var(ddof=1)))
    share_low, share_high = wilson_interval(share, n_eff)
    return Effect(
        n_units=values.size,
        n_clusters=n_clusters,
        median=median,
        median_low=float(low),
        median_high=float(high),
        share=share,
        share_low=share_low,
        share_high=share_high,
        detectable=Z_DETECT * float(medians.std(ddof=1)),
    )
