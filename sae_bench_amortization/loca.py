"""LocA-SAE pieces that touch data: angular variance over a token stream, the global encoder a LocA-SAE starts
from, and activation inputs given as a tensor, a file path or a source."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from sae_bench_amortization.activations.base import ActivationBatch
from sae_bench_amortization.errors import InputError
from sae_bench_amortization.metrics.angular import AngularVarianceAccumulator


class TensorActivations:
    """An in-memory activation tensor [N, d_in] as an activation source."""

    concept_names = None

    def __init__(self, acts: torch.Tensor):
        if acts.ndim != 2:
            raise InputError(
                f"activations must be a [N, d_in] tensor, got shape {tuple(acts.shape)}"
            )
        self.acts, self.d_in = acts, int(acts.shape[1])

    def describe(self) -> str:
        return f"in-memory tensor ({self.acts.shape[0]} tokens)"

    def iter_batches(self, batch_size: int) -> Iterator[ActivationBatch]:
        for start in range(0, self.acts.shape[0], batch_size):
            yield ActivationBatch(self.acts[start : start + batch_size])


def as_source(activations: Any, sae: Any = None, n_tokens: int | None = None):
    """A tensor [N, d_in], an activation-file path, an activation source or a factory (``for_sae``)
    → an activation source (its first ``n_tokens`` tokens when given)."""
    from sae_bench_amortization.activations.sources import FileActivations, TruncatedSource

    if isinstance(activations, torch.Tensor):
        source = TensorActivations(activations)
    elif isinstance(activations, str | Path):
        source = FileActivations(str(activations)).source
    elif hasattr(activations, "for_sae"):
        source = activations.for_sae(sae)
    elif hasattr(activations, "iter_batches"):
        source = activations
    else:
        raise InputError(
            f"activations must be a tensor, a file path or an activation source, got {type(activations).__name__}"
        )
    if sae is not None and source.d_in != sae.cfg.d_in:
        raise InputError(f"activations have d_in {source.d_in} but the SAE has d_in {sae.cfg.d_in}")
    return source if n_tokens is None else TruncatedSource(source, n_tokens)


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


@torch.no_grad()
def global_encoder(sae) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(W_enc [d_in, d_sae], b_enc [d_sae], W_dec [d_sae, d_in]) a LocA-SAE starts from: the global SAE's
    encoder (a gated SAE's gate path; a JumpReLU's threshold is dropped, group TopK replaces it) with the
    decoder's row norms folded into it, so decoder rows are unit norm and pre-activations rank latents by
    their contribution to the reconstruction. A TopK SAE that rescales by decoder norm keeps exactly its codes."""
    architecture = sae.cfg.architecture()
    if architecture not in (
        "standard",
        "topk",
        "jumprelu",
        "gated",
        "batchtopk",
        "matryoshka_batchtopk",
    ):
        raise InputError(
            f"LocA-SAE starts from a standard, topk, jumprelu/batchtopk or gated SAE, got '{architecture}'"
        )
    W_enc = sae.W_enc.detach().clone()
    b_enc = (sae.b_gate if architecture == "gated" else sae.b_enc).detach().clone()
    norms = sae.W_dec.norm(dim=1).clamp(min=1e-12)
    return W_enc * norms, b_enc * norms, sae.W_dec.detach() / norms.unsqueeze(1)
