"""Batched non-negative sparse coding on a fixed dictionary (pure tensor math).

Per token: min_{z ≥ 0} F(z) = ½‖r − z·D‖² + λ·Σ_j z_j, with D [d_sae, d_in], r [B, d_in], z [B, d_sae].

- :func:`ista` runs ISTA or FISTA steps  z ← max(z − (∇ + λ)/L, 0),  ∇ = (z·D − r)·Dᵀ,  L = ‖D‖₂²,
  from a given start (the encoder's codes for semi-amortized inference, zero for non-amortized), for
  ``n_steps`` or until the relative change of the batch objective falls below ``tol``.
- :func:`solve` (= :func:`~sae_bench_amortization.inference.working_set.working_set_solve`) solves to
  tolerance (non-amortized inference) with a working-set method: FISTA on each
  token's few candidate atoms, an exact solve on the identified support, and a KKT check over all atoms.

An atom whose row of D is all zero (:attr:`Dictionary.zero_rows`) has gradient 0: :func:`solve` leaves it
out (always 0); an ISTA/FISTA step only shrinks its start by λ/L (the textbook update: semi:T from an
encoder that fires on it), and a start of 0 stays 0.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import torch

from sae_bench_amortization.inference import Method
from sae_bench_amortization.inference.dictionary import Dictionary
from sae_bench_amortization.inference.working_set import working_set_solve as solve


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
    *,
    method: Method = "fista",
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
    step = 1.0 / dictionary.lipschitz
    # Per step: out = y − step·λ (one cheap pass), then out += −step·R·Dᵀ in place (one GEMM).
    Dt = D.T
    n, n_atoms = r.shape[0], D.shape[0]
    z = torch.zeros(n, n_atoms, dtype=r.dtype, device=r.device) if z0 is None else z0.to(r.dtype)
    # Preallocated buffers: the loop allocates nothing of size [B, d_sae] (z0 is never written to).
    residual = torch.empty(n, D.shape[1], dtype=r.dtype, device=r.device)
    spare = torch.empty(n, n_atoms, dtype=r.dtype, device=r.device)
    if method == "fista":
        y = z.clone()
        direction = torch.empty_like(spare)
        momentum_t = torch.ones(n, 1, dtype=r.dtype, device=r.device)
    else:
        y = z
    previous = None
    for _ in range(n_steps):
        torch.sub(times_dictionary(y, D), r, out=residual)
        z_new = torch.sub(y, step * lam, out=spare).addmm_(residual, Dt, alpha=-step).clamp_(min=0)
        if top_k is not None:
            z_new.copy_(keep_top_k(z_new, top_k))
        if method == "fista":
            t_new = momentum_t.square().mul(4).add(1).sqrt().add(1).div(2)
            torch.sub(z_new, z, out=direction)
            restart = (
                y.sub_(z_new).mul_(direction).sum(dim=-1, keepdim=True) > 0
            )  # y is rebuilt below
            beta = torch.where(restart, 0.0, (momentum_t - 1) / t_new)
            momentum_t = torch.where(restart, 1.0, t_new)
            torch.addcmul(z_new, beta, direction, out=y)
        else:
            y = z_new
        # the old z's memory becomes the next step's output, unless it is the caller's z0
        spare = torch.empty_like(z_new) if (z0 is not None and z is z0) or z is y else z
        z = z_new
        if tol is not None:
            current = float(objective(D, r, z, lam).sum())
            if previous is not None and abs(previous - current) <= tol * max(abs(current), 1e-30):
                break
            previous = current
    return z


def times_dictionary(z: torch.Tensor, D: torch.Tensor, max_density: float = 0.05) -> torch.Tensor:
    """z·D [B, d_in] for codes z [B, d_sae]; as a sparse product when few codes are nonzero."""
    if z.is_cuda or z.numel() == 0:
        return z @ D
    sample = z[
        :: max(1, z.shape[0] // 64)
    ]  # density estimated on ≤ 64 rows: a full count costs a pass
    if int(torch.count_nonzero(sample)) > max_density * sample.numel():
        return z @ D
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "sparse CSR support is in beta"
        return z.to_sparse_csr() @ D


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


def mean_l0(z: torch.Tensor) -> float:
    return float((z > 0).sum(dim=-1).double().mean())


__all__ = ["ista", "keep_top_k", "lambda_max", "map_chunks", "mean_l0", "objective", "solve"]
