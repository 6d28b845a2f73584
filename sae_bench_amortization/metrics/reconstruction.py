"""Reconstruction and objective statistics, streamed over token chunks (pure tensor math)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from sae_bench_amortization.metrics.accumulator import Step


class ReconstructionAccumulator:
    """NMSE = Σ‖x − x̂‖² / Σ‖x − x̄‖² (x̄ the mean over all tokens), accumulated chunk by chunk.

    Σ‖x − x̄‖² = Σ‖x‖² − N‖x̄‖², so one pass suffices (float64 sums).
    """

    def __init__(self) -> None:
        self.squared_error = 0.0
        self.sum_x: torch.Tensor | None = None
        self.sum_squared_norm = 0.0
        self.n_tokens = 0

    def update(self, x: torch.Tensor, reconstruction: torch.Tensor) -> None:
        """x, reconstruction: [B, d_in]."""
        x64 = x.detach().double()
        self.squared_error += float(((x64 - reconstruction.detach().double()) ** 2).sum())
        batch_sum = x64.sum(dim=0).cpu()
        self.sum_x = batch_sum if self.sum_x is None else self.sum_x + batch_sum
        self.sum_squared_norm += float((x64 * x64).sum())
        self.n_tokens += x.shape[0]

    @property
    def variance(self) -> float:
        """Σ‖x − x̄‖² (float64)."""
        if self.n_tokens == 0 or self.sum_x is None:
            raise ValueError("no tokens were seen")
        return self.sum_squared_norm - float((self.sum_x * self.sum_x).sum()) / self.n_tokens

    @property
    def nmse(self) -> float | None:
        """None when the tokens have no variance (every token the same: 0/0, see :data:`NO_VARIANCE`);
        rounding below 1e-12 of Σ‖x‖² counts as none."""
        variance = self.variance
        if variance <= 1e-12 * self.sum_squared_norm or variance <= 0:
            return None
        return self.squared_error / variance

    @property
    def explained_variance(self) -> float | None:
        """Explained variance as SAEBench 0.6's core eval reports it:

            EV = 1 − mean_t ‖x_t − x̂_t‖² / (mean_t ‖x_t‖² − (mean_{t,d} x_{t,d}²)²)

        (its ``total_variance`` squares the mean of x², not of x: close to the spread about zero, not
        about the mean; 1 − NMSE is the conventional variant). Token-weighted, equal to SAEBench's
        per-batch means when its batches are the same size. None when that total variance is not positive
        (:attr:`explained_variance_reason` says why).
        """
        total_variance = self._saebench_total_variance()
        if not total_variance > 0:
            return None
        return 1.0 - (self.squared_error / self.n_tokens) / total_variance

    def _saebench_total_variance(self) -> float:
        if self.n_tokens == 0 or self.sum_x is None:
            raise ValueError("no tokens were seen")
        mean_squared_norm = self.sum_squared_norm / self.n_tokens
        return mean_squared_norm - (mean_squared_norm / self.sum_x.shape[0]) ** 2

    @property
    def explained_variance_reason(self) -> str | None:
        """Why :attr:`explained_variance` is None (None when it is not)."""
        total_variance = self._saebench_total_variance()
        if total_variance > 0:
            return None
        if not math.isfinite(self.sum_squared_norm):
            return "Σ‖x‖² overflows float64, so explained variance is undefined"
        if self.sum_squared_norm <= 0 or self.sum_x is None:
            return "the activations are all zero, so explained variance is 0/0"
        d_in = self.sum_x.shape[0]
        mean_square = self.sum_squared_norm / self.n_tokens / d_in
        return (
            f"SAEBench's total variance mean‖x‖² − (mean x²)² is {total_variance:.3g}, not positive: the "
            f"activations' mean square {mean_square:.3g} is at least d_in {d_in}"
        )

    @property
    def nmse_over_mean_norm(self) -> float | None:
        """The paper's NMSE: mean‖x − x̂‖² / (mean‖x‖² + 1e-9); None for all-zero activations."""
        if self.n_tokens == 0 or self.sum_squared_norm <= 0:
            return None
        n = self.n_tokens
        return (self.squared_error / n) / (self.sum_squared_norm / n + 1e-9)


@dataclass(frozen=True)
class ReconstructionResult:
    """What :class:`Reconstruction` measured (see :class:`ReconstructionAccumulator`'s properties)."""

    nmse: float | None  # Σ‖x − x̂‖² / Σ‖x − x̄‖²
    nmse_over_mean_norm: float | None  # the paper's: mean‖x − x̂‖² / (mean‖x‖² + 1e-9)
    explained_variance: float | None  # as SAEBench's core reports it
    explained_variance_reason: str | None  # why explained_variance is None

    @staticmethod
    def of(sums: ReconstructionAccumulator) -> ReconstructionResult:
        return ReconstructionResult(
            nmse=sums.nmse,
            nmse_over_mean_norm=sums.nmse_over_mean_norm,
            explained_variance=sums.explained_variance,
            explained_variance_reason=sums.explained_variance_reason,
        )


class Reconstruction:
    """Accumulator: (x, x̂) of each step → :class:`ReconstructionResult`."""

    def __init__(self) -> None:
        self.sums = ReconstructionAccumulator()

    def update(self, step: Step) -> None:
        self.sums.update(step.x, step.reconstruction)

    def result(self) -> ReconstructionResult:
        return ReconstructionResult.of(self.sums)


NO_VARIANCE = "the activations have no variance (every token is the same vector), so NMSE is 0/0"


class MeanAccumulator:
    """Mean of per-token values [B], streamed."""

    def __init__(self) -> None:
        self.total = 0.0
        self.n = 0

    def update(self, values: torch.Tensor) -> None:
        self.total += float(values.detach().double().sum())
        self.n += values.numel()

    @property
    def mean(self) -> float:
        if self.n == 0:
            raise ValueError("no tokens were seen")
        return self.total / self.n
