"""Batched non-negative sparse coding on a fixed dictionary (pure tensor math).

Per token: min_{z ≥ 0} F(z) = ½‖r − z·D‖² + λ·Σ_j z_j, with D [d_sae, d_in], r [B, d_in], z [B, d_sae].

- :func:`ista` runs ISTA or FISTA steps  z ← max(z − (∇ + λ)/L, 0),  ∇ = (z·D − r)·Dᵀ,  L = ‖D‖₂²,
  from a given start (the encoder's codes for semi-amortized inference, zero for non-amortized), for
  ``n_steps`` or until the relative change of the batch objective falls below ``tol``.
- :func:`solve` solves to tolerance (non-amortized inference) with a working-set method: FISTA on each
  token's few candidate atoms, an exact solve on the identified support, and a KKT check over all atoms.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from sae_bench_amortization.inference.dictionary import Dictionary


def objective(D: torch.Tensor, r: torch.Tensor, z: torch.Tensor, lam: float) -> torch.Tensor:
    """F(z) per token [B]: ½‖r − z·D‖² + λ·Σz (float64)."""
    residual = (r - z @ D).double()
    return 0.5 * (residual * residual).sum(dim=-1) + lam * z.double().sum(dim=-1)


def keep_top_k(z: torch.Tensor, k: int) -> torch.Tensor:
    """z with all but the k largest entries of each row set to 0."""
    if k >= z.shape[-1]:
        return z
    values, indices = z.topk(k, dim=-1)
    return torch.zeros_like(z).scatter_(-1, indices, values)


def ista(
    dictionary: Dictionary,
    r: torch.Tensor,
    lam: float,
    z0: torch.Tensor | None = None,
    n_steps: int = 5,
    method: str = "fista",
    tol: float | None = None,
    top_k: int | None = None,
) -> torch.Tensor:
    """``n_steps`` ISTA or FISTA steps from z0 (zeros if None) on targets r [B, d_in]; returns z [B, d_sae].

    FISTA restarts its momentum per token when the step and the momentum disagree (adaptive restart,
    O'Donoghue & Candès 2015). With ``tol``, stops once |F_t − F_{t−1}| / F_t < tol for the batch sum.
    ``top_k`` keeps at most k actives per token after each step (an option for TopK bases).
    """
    if method not in ("ista", "fista"):
        raise ValueError(f"method must be 'ista' or 'fista', got {method!r}")
    D = dictionary.D.to(r.dtype)
    Dt = D.T
    step = 1.0 / dictionary.lipschitz
    z = (
        torch.zeros(r.shape[0], D.shape[0], dtype=r.dtype, device=r.device)
        if z0 is None
        else z0.to(r.dtype)
    )
    y = z
    momentum_t = torch.ones(r.shape[0], 1, dtype=r.dtype, device=r.device)
    previous = None
    shrink = lam * step
    for _ in range(n_steps):
        residual = y @ D - r  # [B, d_in]
        z_new = torch.addmm(y, residual, Dt, alpha=-step).sub_(shrink).clamp_(min=0)
        if top_k is not None:
            z_new = keep_top_k(z_new, top_k)
        if method == "fista":
            t_new = (1 + torch.sqrt(1 + 4 * momentum_t * momentum_t)) / 2
            direction = z_new - z
            restart = ((y - z_new) * direction).sum(dim=-1, keepdim=True) > 0
            beta = torch.where(restart, 0.0, (momentum_t - 1) / t_new)
            momentum_t = torch.where(restart, 1.0, t_new)
            y = z_new + beta * direction
        else:
            y = z_new
        z = z_new
        if tol is not None:
            current = float(objective(D, r, z, lam).sum())
            if previous is not None and abs(previous - current) <= tol * max(abs(current), 1e-30):
                break
            previous = current
    return z


def map_chunks(
    fn: Callable[..., torch.Tensor], chunk_size: int, *tensors: torch.Tensor | None
) -> torch.Tensor:
    """Apply fn to row-chunks of the tensors (None passes through) and concatenate: memory is bounded by the chunk."""
    n = next(t for t in tensors if t is not None).shape[0]
    if n <= chunk_size:
        return fn(*tensors)
    parts = []
    for start in range(0, n, chunk_size):
        parts.append(fn(*(None if t is None else t[start : start + chunk_size] for t in tensors)))
    return torch.cat(parts)


def lambda_max(dictionary: Dictionary, r: torch.Tensor) -> float:
    """The smallest λ at which z = 0 is optimal for every token: max_{tokens, j} (r·Dᵀ)_j."""
    return float((r @ dictionary.D.to(r.dtype).T).max().clamp_min(0))


def solve(
    dictionary: Dictionary,
    r: torch.Tensor,
    lam: float,
    tol: float = 1e-4,
    max_steps: int = 5000,
    z0: torch.Tensor | None = None,
) -> torch.Tensor:
    """Non-amortized codes to tolerance; see :mod:`~sae_bench_amortization.inference.working_set`."""
    from sae_bench_amortization.inference.working_set import working_set_solve

    return working_set_solve(dictionary, r, lam, tol=tol, max_steps=max_steps, z0=z0)


def mean_l0(z: torch.Tensor) -> float:
    return float((z > 0).sum(dim=-1).double().mean())


__all__ = ["ista", "keep_top_k", "lambda_max", "map_chunks", "mean_l0", "objective", "solve"]
