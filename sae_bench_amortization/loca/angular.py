"""Angular variance of latents over a token stream (LocA-SAE's grouping score): AVar_j = 1 − ‖μ_j‖₂."""

from __future__ import annotations

from typing import Any

import torch

from sae_bench_amortization.activations.sources import as_source
from sae_bench_amortization.errors import InputError
from sae_bench_amortization.loca.grouping import AngularVarianceAccumulator


@torch.no_grad()
def angular_variance_and_l0(
    sae, activations: Any, batch_size: int = 4096, n_tokens: int | None = None
) -> tuple[torch.Tensor, float]:
    """(AVar [d_sae] float64 with NaN for never-firing latents, mean L0 of ``sae.encode``) over the tokens."""
    source = as_source(activations, sae, n_tokens)
    device, dtype = sae.W_dec.device, sae.W_dec.dtype
    accumulator = AngularVarianceAccumulator(sae.cfg.d_sae, sae.cfg.d_in)
    n, active = 0, 0
    for batch in source.iter_batches(batch_size):
        x = batch.acts.to(device=device, dtype=dtype)
        codes = sae.encode(x)
        accumulator.update(x, codes)
        n += x.shape[0]
        active += int((codes > 0).sum())
    if n == 0:
        raise InputError("the activations hold no tokens")
    return accumulator.angular_variance, active / n


def angular_variance(
    sae, activations: Any, batch_size: int = 4096, n_tokens: int | None = None
) -> torch.Tensor:
    """AVar_j = 1 − ‖μ_j‖₂ [d_sae] (float64), μ_j the mean of the unit-normalised inputs on which latent j
    fires under ``sae.encode``; streamed over ``activations`` (tensor [N, d_in], activation-file path or
    activation source). Latents that never fire get NaN."""
    return angular_variance_and_l0(sae, activations, batch_size, n_tokens)[0]
