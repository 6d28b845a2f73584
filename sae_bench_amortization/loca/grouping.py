"""LocA-SAE's grouping, budgets and starting encoders (pure tensor math): the angular-variance accumulator,
latents sorted into groups, budgets scaled to a total, and the global encoder a LocA-SAE starts from."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from sae_bench_amortization.errors import InputError


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


GROUP_ORDERS = ("avar_desc", "avar_asc")
BUDGET_SCALINGS = ("none", "match_k")


def group_by_angular_variance(
    avar: torch.Tensor, n_groups: int, order: str = "avar_desc"
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
