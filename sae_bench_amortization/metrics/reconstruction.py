"""Reconstruction and objective statistics, streamed over token chunks (pure tensor math)."""

from __future__ import annotations

import torch


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
