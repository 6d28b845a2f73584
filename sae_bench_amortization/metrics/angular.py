"""Angular variance of latents (LocA-SAE's grouping score), streamed: AVar_j = 1 − ‖μ_j‖₂, μ_j the mean of
the unit-normalised inputs on which latent j fires. Pure tensor math."""

from __future__ import annotations

import math

import torch


class AngularVarianceAccumulator:
    """Streams (inputs [B, d_in], codes [B, d_sae]) → AVar_j = 1 − ‖μ_j‖₂, μ_j the mean of the unit-normalised
    (non-zero) inputs on which latent j fires (code > 0). Memory: one [d_sae, d_in] float64 sum."""

    def __init__(self, d_sae: int, d_in: int):
        self.direction_sum = torch.zeros(d_sae, d_in, dtype=torch.float64)
        self.fired = torch.zeros(d_sae, dtype=torch.int64)

    def update(self, inputs: torch.Tensor, codes: torch.Tensor, max_bytes: int = 64 << 20) -> None:
        """inputs [B, d_in], codes [B, d_sae]. Zero inputs have no direction and are not counted. Rows go
        in sub-chunks so the float64 firing matrix stays under ``max_bytes``."""
        rows = max(1, max_bytes // (8 * codes.shape[1]))
        for start in range(0, inputs.shape[0], rows):
            x = inputs[start : start + rows].double()
            norms = x.norm(dim=-1, keepdim=True)
            has_direction = norms.squeeze(-1) > 0
            unit = x / norms.clamp(min=1e-300)
            firing = (codes[start : start + rows] > 0).to(unit.device) & has_direction.unsqueeze(1)
            self.direction_sum += (firing.double().T @ unit).cpu()
            self.fired += firing.sum(dim=0).cpu()

    @property
    def angular_variance(self) -> torch.Tensor:
        """[d_sae] float64 in [0, 1]; NaN for latents that never fired."""
        mean = self.direction_sum / self.fired.clamp(min=1).unsqueeze(1)
        avar = 1.0 - mean.norm(dim=1)
        return torch.where(self.fired > 0, avar, torch.full_like(avar, math.nan))
