"""Firing statistics of SAE latents, streamed over token chunks (pure tensor math, no I/O).

A latent *fires* on a token when its code is > 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from sae_bench_amortization.metrics.accumulator import Step


class FiringCounter:
    """Accumulates per-latent firing counts and the total L0 over chunks of codes [B, d_sae]."""

    def __init__(self, d_sae: int):
        self.counts = torch.zeros(d_sae, dtype=torch.int64)
        self.n_tokens = 0
        self.total_l0 = 0

    def update(self, codes: torch.Tensor) -> None:
        """codes: [B, d_sae] latent activations of B tokens."""
        fired = codes > 0
        self.counts += fired.sum(dim=0).to("cpu", torch.int64)
        self.total_l0 += int(fired.sum())
        self.n_tokens += codes.shape[0]

    @property
    def frequency(self) -> torch.Tensor:
        """[d_sae] share of tokens on which each latent fired."""
        return self.counts.double() / max(self.n_tokens, 1)


@dataclass(frozen=True)
class Pathologies:
    dead_rate: float  # share of latents that never fire
    dense_rate: float  # share of latents firing on more than dense_threshold of tokens
    alive_fraction: float  # 1 - dead_rate
    mean_l0: float  # mean number of firing latents per token
    n_tokens: int


def pathologies(counter: FiringCounter, dense_threshold: float = 0.1) -> Pathologies:
    """Dead / dense rates from accumulated firing counts."""
    if counter.n_tokens == 0:
        raise ValueError("no tokens were seen")
    d_sae = counter.counts.numel()
    n_dead = int((counter.counts == 0).sum())
    n_dense = int((counter.frequency > dense_threshold).sum())
    return Pathologies(
        dead_rate=n_dead / d_sae,
        dense_rate=n_dense / d_sae,
        alive_fraction=1.0 - n_dead / d_sae,
        mean_l0=counter.total_l0 / counter.n_tokens,
        n_tokens=counter.n_tokens,
    )


@dataclass(frozen=True)
class FiringResult:
    """What :class:`Firing` measured: the pathologies, and per-latent counts [d_sae] over n_tokens."""

    pathologies: Pathologies
    counts: torch.Tensor
    frequency: torch.Tensor

    @property
    def n_tokens(self) -> int:
        return self.pathologies.n_tokens


class Firing:
    """Accumulator: firing counts of the codes → :class:`FiringResult` (dead/dense at ``dense_threshold``)."""

    def __init__(self, d_sae: int, dense_threshold: float = 0.1):
        self.counter = FiringCounter(d_sae)
        self.dense_threshold = dense_threshold

    def update(self, step: Step) -> None:
        self.counter.update(step.codes)

    def result(self) -> FiringResult:
        stats = pathologies(self.counter, self.dense_threshold)
        return FiringResult(stats, self.counter.counts, self.counter.frequency)


def log_frequency_histogram(frequency: torch.Tensor, n_tokens: int, bins: int = 20) -> list[dict]:
    """Histogram of log10 firing frequency [d_sae]: a 'dead' row, then ``bins`` rows over alive latents.

    Edges run from log10(1 / n_tokens) (fired once) to 0 (fired on every token); the last bin is closed.
    Each row: {"bin", "log10_frequency_low", "log10_frequency_high", "n_latents"}.
    """
    low = -math.log10(n_tokens) if n_tokens > 1 else -1.0
    edges = torch.linspace(low, 0.0, bins + 1, dtype=torch.float64)
    alive = frequency[frequency > 0].to(torch.float64)
    index = torch.bucketize(torch.log10(alive), edges, right=True).clamp(1, bins) - 1
    counts = torch.bincount(index, minlength=bins)
    rows = [
        {
            "bin": "dead",
            "log10_frequency_low": None,
            "log10_frequency_high": None,
            "n_latents": int((frequency == 0).sum()),
        }
    ]
    for b in range(bins):
        lo, hi = round(float(edges[b]), 6), round(float(edges[b + 1]), 6)
        rows.append(
            {
                "bin": f"[{lo:.3f}, {hi:.3f}{']' if b == bins - 1 else ')'}",
                "log10_frequency_low": lo,
                "log10_frequency_high": hi,
                "n_latents": int(counts[b]),
            }
        )
    return rows
