"""How a LocA-SAE is made from a pretrained SAE (pure tensor math over the SAE's weights and a token
stream): each latent's angular variance, latents sorted into groups, budgets scaled to a total, and the
global encoder the group encoders start from."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Literal

import torch

from sae_bench_amortization.activations.sources import as_source
from sae_bench_amortization.errors import InputError
from sae_bench_amortization.metrics.angular import AngularVarianceAccumulator


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


GroupOrder = Literal["avar_desc", "avar_asc"]
BudgetScaling = Literal["none", "match_k"]
GROUP_ORDERS: tuple[GroupOrder, ...] = ("avar_desc", "avar_asc")
BUDGET_SCALINGS: tuple[BudgetScaling, ...] = ("none", "match_k")


def group_by_angular_variance(
    avar: torch.Tensor, n_groups: int, order: GroupOrder = "avar_desc"
) -> torch.Tensor:
    """avar [d_sae] (NaN: never fired) → group index per latent [d_sae] (int64), groups whose sizes differ
    by at most one (the first ``d_sae % n_groups`` get one more); ties by latent index.

    ``avar_desc`` (the authors' order): group 0 holds the highest angular variance (most polysemantic);
    a never-firing latent counts as AVar 1, so those sit in group 0. ``avar_asc``: most monosemantic
    first, never-firing latents last.
    """
    d_sae = avar.shape[0]
    if not 1 <= n_groups <= d_sae:
        raise ValueError(f"n_groups must be in [1, d_sae={d_sae}], got {n_groups}")
    if order not in GROUP_ORDERS:
        raise ValueError(f"group order must be one of {', '.join(GROUP_ORDERS)}, got {order!r}")
    never = torch.isnan(avar)
    if order == "avar_desc":
        key = -torch.where(never, torch.ones_like(avar), avar)
    else:
        key = torch.where(never, torch.full_like(avar, math.inf), avar)
    sorted_order = torch.sort(key, stable=True).indices
    groups = torch.empty(d_sae, dtype=torch.int64)
    for g, members in enumerate(torch.tensor_split(sorted_order, n_groups)):
        groups[members] = g
    return groups


def scale_budgets(group_k: Sequence[int], total_k: int) -> list[int]:
    """Scale per-group TopK budgets to sum to ``total_k`` keeping their proportions: each k_g·total/Σk
    rounded down (at least 1), the remainder handed to the groups furthest below their exact share
    (earlier groups first on ties). ``total_k`` below the number of groups gives every group 1."""
    group_k = [int(k) for k in group_k]
    if not group_k or min(group_k) < 1:
        raise ValueError(f"group budgets must be positive integers, got {group_k}")
    if total_k <= len(group_k):
        return [1] * len(group_k)
    total = sum(group_k)
    exact = [k * total_k / total for k in group_k]
    scaled = [max(1, math.floor(e)) for e in exact]
    by_remainder = sorted(range(len(group_k)), key=lambda g: (-(exact[g] - scaled[g]), g))
    i = 0
    while sum(scaled) < total_k:
        scaled[by_remainder[i % len(group_k)]] += 1
        i += 1
    while sum(scaled) > total_k:  # only when flooring to 1 pushed it over: take from the largest
        largest = max(range(len(scaled)), key=lambda g: (scaled[g], -g))
        scaled[largest] -= 1
    return scaled


BASE_ARCHITECTURES = ("standard", "topk", "jumprelu", "gated", "batchtopk", "matryoshka_batchtopk")


def check_base_architecture(sae) -> str:
    """``sae``'s architecture, or a one-line :class:`InputError` when a LocA-SAE cannot start from it."""
    architecture = sae.cfg.architecture()
    if architecture not in BASE_ARCHITECTURES:
        raise InputError(
            f"LocA-SAE starts from a standard, topk, jumprelu/batchtopk or gated SAE, got '{architecture}'"
        )
    return architecture


@torch.no_grad()
def global_encoder(sae) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(W_enc [d_in, d_sae], b_enc [d_sae], W_dec [d_sae, d_in]) a LocA-SAE starts from: the global SAE's
    encoder (a gated SAE's gate path; a JumpReLU's threshold is dropped, group TopK replaces it) with the
    decoder's row norms folded into it, so decoder rows are unit norm and pre-activations rank latents by
    their contribution to the reconstruction. A TopK SAE that rescales by decoder norm keeps exactly its codes."""
    architecture = check_base_architecture(sae)
    W_enc = sae.W_enc.detach().clone()
    b_enc = (sae.b_gate if architecture == "gated" else sae.b_enc).detach().clone()
    norms = sae.W_dec.norm(dim=1).clamp(min=1e-12)
    return W_enc * norms, b_enc * norms, sae.W_dec.detach() / norms.unsqueeze(1)
