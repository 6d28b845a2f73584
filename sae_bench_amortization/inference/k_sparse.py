"""Non-negative k-sparse coding on a fixed dictionary (pure tensor math).

Per token: min_{z ≥ 0, ‖z‖₀ ≤ k} ½‖r − z·D‖², D [d_sae, d_in], r [B, d_in], z [B, d_sae]. The problem is
NP-hard; every function here returns feasible codes (non-negative, at most k actives), so its objective
is an upper bound on the optimum.

- :func:`iht`: normalized iterative hard thresholding (Blumensath & Davies 2010) from given codes:
  z ← P_k(z − μ·∇), ∇ = (z·D − r)·Dᵀ, P_k keeping the k largest non-negative entries, with the per-token
  step μ = ‖∇_S‖² / ‖∇_S·D_S‖² on the current support S, halved until the step does not increase the
  token's error (else the token keeps its codes). One d_sae-wide product per step.
- :func:`nn_omp`: orthogonal matching pursuit with non-negative picks to k atoms, batched over tokens,
  among a working set W of candidate atoms per token (the start's support and the atoms of largest
  r·d_j / ‖d_j‖); the chosen atoms' least-squares fit grows by one Cholesky row per pick.
- :func:`subspace_pursuit`: add the k atoms most correlated with the residual, NNLS on the ≤ 2k, keep k.
- :func:`swap_polish`: swap one active atom for one of the inactive atoms most correlated with the
  residual while that lowers the error.
- :func:`best_k_sparse`: per token the best of four candidates, each refitted by exact NNLS on its own
  support (the start's support, NN-OMP, IHT from the start run until its error stops falling, subspace
  pursuit from the start), then swap-polished.
"""

from __future__ import annotations

import torch

from sae_bench_amortization.inference.dictionary import Dictionary
from sae_bench_amortization.inference.nnls import (
    nnls_on_gram,
    refit_on_support,
)
from sae_bench_amortization.inference.solver import times_dictionary


def keep_k_nonnegative(z: torch.Tensor, k: int) -> torch.Tensor:
    """P_k: z [B, d_sae] with negatives set to 0 and all but the k largest entries of each row set to 0."""
    z = z.clamp(min=0)
    if k >= z.shape[-1]:
        return z
    values, indices = z.topk(k, dim=-1)
    return torch.zeros_like(z).scatter_(-1, indices, values)


def normalized(correlation: torch.Tensor, D: torch.Tensor) -> torch.Tensor:
    """Correlations R·d_j [B, d_sae] divided by ‖d_j‖: adding atom j alone lowers ½‖R‖² by
    (R·d_j)₊² / 2‖d_j‖², so atoms are ranked by this, not by the raw correlation (all-zero rows: −inf)."""
    norms = D.norm(dim=1)
    return torch.where(norms > 0, correlation / torch.where(norms > 0, norms, 1), -torch.inf)


def squared_error(D: torch.Tensor, r: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """½‖r − z·D‖² per token [B] (float64); z·D as a sparse product when z is sparse."""
    residual = (r - times_dictionary(z, D)).double()
    return 0.5 * (residual * residual).sum(dim=-1)


def iht(
    dictionary: Dictionary,
    r: torch.Tensor,
    z0: torch.Tensor,
    k: int,
    n_steps: int,
    *,
    tol: float | None = None,
    max_halvings: int = 8,
) -> torch.Tensor:
    """``n_steps`` normalized IHT steps from z0 [B, d_sae] (projected to k actives first) on targets
    r [B, d_in]; with ``tol``, stops once the batch error falls by less than ``tol`` (relative) in a step.
    Each token's error never increases."""
    D = dictionary.D.to(r.dtype)
    z = keep_k_nonnegative(dictionary.without_zero_rows(z0.to(r.dtype)), k)
    error = squared_error(D, r, z)
    for _ in range(n_steps):
        gradient = (times_dictionary(z, D) - r) @ D.T  # [B, d_sae]: the one d_sae-wide product
        on_support = torch.where(z > 0, gradient, 0)
        empty = ~(z > 0).any(dim=-1, keepdim=True)  # no support yet: step along the whole gradient
        direction = torch.where(empty, gradient.clamp(max=0), on_support)
        moved = times_dictionary(direction, D)
        numerator = (direction * direction).sum(-1, keepdim=True)
        denominator = (moved * moved).sum(-1, keepdim=True)
        step = numerator / denominator.clamp_min(1e-30)
        todo = torch.ones(z.shape[0], dtype=torch.bool, device=z.device)
        new_z, new_error = z.clone(), error.clone()
        for _ in range(max_halvings):
            rows = todo.nonzero().squeeze(-1)
            if rows.numel() == 0:
                break
            candidate = keep_k_nonnegative(z[rows] - step[rows] * gradient[rows], k)
            candidate = dictionary.without_zero_rows(candidate)
            candidate_error = squared_error(D, r[rows], candidate)
            better = candidate_error <= error[rows]
            new_z[rows[better]], new_error[rows[better]] = (
                candidate[better],
                candidate_error[better],
            )
            todo[rows[better]] = False
            step[rows[~better]] /= 2
        previous = float(error.sum())
        z, error = new_z, new_error
        if tol is not None and previous - float(error.sum()) <= tol * max(previous, 1e-30):
            break
    return z


GATHER_BYTES = 64 * 2**20  # NN-OMP's and the swap search's gathered rows, per group of tokens


def nn_omp(
    dictionary: Dictionary,
    r: torch.Tensor,
    k: int,
    *,
    start: torch.Tensor | None = None,
    n_candidates: int | None = None,
) -> torch.Tensor:
    """:func:`_nn_omp` in groups of tokens whose gathered rows [b, M, d_in] and Gram blocks [b, M, M]
    take at most :data:`GATHER_BYTES` (M: the working set), so memory does not grow with the chunk."""
    n_atoms, d_in = dictionary.D.shape
    m = min(
        n_atoms, (n_candidates or 2 * k) + (0 if start is None else int((start > 0).sum(-1).max()))
    )
    group = max(1, GATHER_BYTES // (m * (d_in + m) * r.element_size()))
    parts = [
        _nn_omp(dictionary, r[i : i + group], k, n_candidates=n_candidates,
                start=None if start is None else start[i : i + group])
        for i in range(0, r.shape[0], group)
    ]  # fmt: skip
    return torch.cat(parts) if parts else torch.zeros(0, n_atoms, dtype=r.dtype, device=r.device)


def _nn_omp(
    dictionary: Dictionary,
    r: torch.Tensor,
    k: int,
    *,
    start: torch.Tensor | None = None,
    n_candidates: int | None = None,
) -> torch.Tensor:
    """Orthogonal matching pursuit with non-negative picks to k atoms [B, d_sae], among each token's
    working set: the support of ``start`` (if given) and the ``n_candidates`` atoms (default 2k) of
    largest r·d_j / ‖d_j‖. Each pick is the atom most positively correlated with the residual (per unit
    norm); the chosen atoms' least-squares fit is updated by one Cholesky row per pick (O(k²) per token),
    its negative coefficients clamped to 0 for the residual. Exact NNLS is :func:`best_k_sparse`'s refit."""
    D = dictionary.D.to(r.dtype)
    n_atoms, n_tokens = D.shape[0], r.shape[0]
    n_candidates = min(n_atoms, n_candidates or 2 * k)
    score = normalized(r @ D.T, D)
    if start is not None:
        score = torch.where(start > 0, torch.inf, score)
        n_candidates = min(n_atoms, n_candidates + int((start > 0).sum(-1).max()))
    working = score.topk(n_candidates, dim=-1).indices  # [B, M]
    rows = D[working]  # [B, M, d_in]
    gram = torch.bmm(rows, rows.transpose(1, 2))  # [B, M, M]
    b = torch.bmm(rows, r.unsqueeze(-1)).squeeze(-1)  # [B, M]: r·d_j
    norms = gram.diagonal(dim1=1, dim2=2).sqrt()
    usable = (score.gather(1, working) > -torch.inf) & (norms > 0)  # not an all-zero row
    chosen = torch.zeros_like(b, dtype=torch.bool)
    picks = torch.zeros(n_tokens, 0, dtype=torch.long, device=r.device)
    factor = torch.zeros(
        n_tokens, 0, 0, dtype=r.dtype, device=r.device
    )  # Cholesky of G[picks, picks]
    active = torch.ones(n_tokens, dtype=torch.bool, device=r.device)
    c = torch.zeros_like(b)
    for _ in range(min(k, n_candidates)):
        correlation = b - torch.bmm(gram, c.unsqueeze(-1)).squeeze(-1)  # (r − c·D_W)·d_j
        correlation = torch.where(norms > 0, correlation / torch.where(norms > 0, norms, 1), 0)
        correlation = correlation.masked_fill(chosen | ~usable, -torch.inf)
        best = correlation.argmax(dim=-1, keepdim=True)  # [B, 1]
        active &= correlation.gather(1, best).squeeze(-1) > 0  # no atom lowers the error: stop
        if not bool(active.any()):
            break
        chosen.scatter_(1, best, active.unsqueeze(-1))
        # one more Cholesky row: G[picks, new] = factor · w, d = sqrt(G_new,new − ‖w‖²)
        column = gram.gather(1, picks.unsqueeze(-1).expand(-1, -1, n_candidates)).gather(
            2, best.unsqueeze(1).expand(-1, picks.shape[1], 1)
        )  # [B, i, 1]
        w = torch.linalg.solve_triangular(factor, column, upper=False)
        diagonal = gram.gather(1, best.unsqueeze(-1).expand(-1, 1, n_candidates)).gather(
            2, best.unsqueeze(1)
        )
        d = (
            (diagonal - (w * w).sum(1, keepdim=True))
            .clamp_min(1e-10 * diagonal.clamp_min(1e-30))
            .sqrt()
        )
        i = picks.shape[1]
        grown = torch.zeros(n_tokens, i + 1, i + 1, dtype=r.dtype, device=r.device)
        grown[:, :i, :i] = factor
        grown[:, i, :i] = w.squeeze(-1)
        grown[:, i, i] = d.reshape(-1)
        # a token that stopped keeps a unit row: its new pick gets no coefficient (masked below)
        grown[~active, i, :i] = 0
        grown[~active, i, i] = 1
        factor, picks = grown, torch.cat([picks, best], dim=1)
        keep = torch.ones_like(picks, dtype=r.dtype)
        keep[:, i] = active.to(r.dtype)  # a stopped token's last pick gets no coefficient
        b_picked = b.gather(1, picks) * keep
        y = torch.linalg.solve_triangular(factor, b_picked.unsqueeze(-1), upper=False)
        coefficients = torch.linalg.solve_triangular(factor.transpose(1, 2), y, upper=True).squeeze(
            -1
        )
        c = torch.zeros_like(b).scatter_(1, picks, coefficients.clamp(min=0))
        c = c * chosen
    return torch.zeros(n_tokens, n_atoms, dtype=r.dtype, device=r.device).scatter_(1, working, c)


def subspace_pursuit(
    dictionary: Dictionary, r: torch.Tensor, z0: torch.Tensor, k: int, *, max_rounds: int = 10
) -> torch.Tensor:
    """Subspace pursuit (Dai & Milenkovic 2009) with non-negative fits, from z0: each round adds the k
    atoms most correlated with the residual, fits NNLS on the ≤ 2k atoms, keeps the k largest and refits;
    a token keeps its new codes only when its error falls. Stops when no token improves."""
    D = dictionary.D.to(r.dtype)
    z = refit_on_support(D, r, keep_k_nonnegative(dictionary.without_zero_rows(z0.to(r.dtype)), k))
    error = squared_error(D, r, z)
    for _ in range(max_rounds):
        correlation = normalized((r - times_dictionary(z, D)) @ D.T, D).masked_fill(
            z > 0, -torch.inf
        )
        added = correlation.topk(min(k, D.shape[0]), dim=-1)
        merged = (z > 0).to(r.dtype).scatter_(1, added.indices, (added.values > 0).to(r.dtype))
        candidate = refit_on_support(D, r, keep_k_nonnegative(refit_on_support(D, r, merged), k))
        candidate_error = squared_error(D, r, candidate)
        better = candidate_error < error
        if not bool(better.any()):
            break
        z = torch.where(better.unsqueeze(-1), candidate, z)
        error = torch.where(better, candidate_error, error)
    return z


def swap_polish(
    dictionary: Dictionary,
    r: torch.Tensor,
    z: torch.Tensor,
    k: int,
    *,
    n_candidates: int | None = None,
    max_sweeps: int = 3,
    max_trials: int = 24,
) -> torch.Tensor:
    """Local search on supports: per sweep, swaps of one active atom for one of the ``n_candidates``
    (default 2k, at most ``max_trials``) inactive atoms most correlated with the residual, refitted by
    NNLS, kept when they lower the token's error; until a sweep changes nothing. Each candidate replaces
    each of the ``max_trials // n_candidates`` weakest actives (smallest z_j‖d_j‖; every active when k is
    small): at most ``max_trials`` NNLS fits of ≤ k atoms per token and sweep.

    A sweep gathers each token's support and candidate atoms once and works on their inner products
    (a trial changes one row of the support's Gram matrix; its error is ½‖r‖² − cᵀb + ½cᵀGc), in token
    groups whose gathered atoms stay under 64 MiB."""
    D = dictionary.D.to(r.dtype)
    z = refit_on_support(D, r, keep_k_nonnegative(z.to(r.dtype), k))
    n_candidates = min(n_candidates or 2 * k, D.shape[0] - 1, max_trials)
    if n_candidates <= 0 or z.shape[0] == 0:
        return z
    n_positions = min(k, max(1, max_trials // n_candidates))
    width = min(k, D.shape[0])
    group = max(1, GATHER_BYTES // ((width + n_candidates) * D.shape[1] * 8))  # float64 rows
    polished = [
        _swap_group(
            D, r[i : i + group], z[i : i + group], width, n_candidates, n_positions, max_sweeps
        )
        for i in range(0, z.shape[0], group)
    ]
    return torch.cat(polished)


def _swap_group(
    D: torch.Tensor,
    r: torch.Tensor,
    z: torch.Tensor,
    width: int,
    n_candidates: int,
    n_positions: int,
    max_sweeps: int,
) -> torch.Tensor:
    """:func:`swap_polish` on one token group: codes [b, d_sae] with at most ``width`` actives."""
    b, rows = r.shape[0], torch.arange(r.shape[0], device=r.device)
    norms = D.norm(dim=1)
    half_rr = 0.5 * (r.double() ** 2).sum(-1)  # [b]
    for _ in range(max_sweeps):
        values, slots = z.topk(width, dim=1)  # the support first; the other slots are empty
        c = values.double().clamp_min(0)
        valid = c > 0
        correlation = normalized((r - times_dictionary(z, D)) @ D.T, D).masked_fill(
            z > 0, -torch.inf
        )
        candidates = correlation.topk(n_candidates, dim=-1).indices  # [b, n]
        # inner products in float64: the errors compared are differences of larger terms
        atoms = D[slots].double() * valid[..., None]  # [b, width, d_in]
        incoming_atoms = D[candidates].double()  # [b, n, d_in]
        G = atoms @ atoms.mT  # [b, width, width]
        C = atoms @ incoming_atoms.mT  # [b, width, n]: slots · candidates
        CC = incoming_atoms @ incoming_atoms.mT  # [b, n, n]
        rhs = (atoms @ r.double()[..., None]).squeeze(-1)  # [b, width]
        r_candidates = (incoming_atoms @ r.double()[..., None]).squeeze(-1)  # [b, n]
        slot_norms = norms[slots].double() * valid
        holds = torch.full((b, width), -1, dtype=torch.long, device=r.device)  # candidate in a slot
        error = half_rr - (c * rhs).sum(-1) + 0.5 * (c * (G @ c[..., None]).squeeze(-1)).sum(-1)
        improved = torch.zeros(b, dtype=torch.bool, device=r.device)
        for a in range(n_candidates):
            for position in range(n_positions):
                if not bool(valid.any()):
                    break
                contribution = torch.where(
                    valid, c * slot_norms, torch.inf
                )  # weakest actives first
                slot = contribution.topk(n_positions, dim=-1, largest=False).indices[:, position]
                already = ((holds == a) & valid).any(
                    dim=-1
                )  # a is in: the trial only drops the slot
                column = C[:, :, a].clone()
                column[rows, slot] = CC[:, a, a]
                trial_G = G.clone()
                trial_G[rows, slot, :] = column
                trial_G[rows, :, slot] = column
                trial_rhs = rhs.clone()
                trial_rhs[rows, slot] = r_candidates[:, a]
                trial_valid = valid.clone()
                trial_valid[rows, slot] = ~already
                trial_c = nnls_on_gram(trial_G, trial_rhs, trial_valid)
                trial_error = (
                    half_rr
                    - (trial_c * trial_rhs).sum(-1)
                    + 0.5 * (trial_c * (trial_G @ trial_c[..., None]).squeeze(-1)).sum(-1)
                )
                better = trial_error < error * (1 - 1e-12)
                if not bool(better.any()):
                    continue
                swapped = better & ~already  # the slot now holds candidate a
                at = slot[swapped]
                slots[swapped, at] = candidates[swapped, a]
                C[swapped, at, :] = CC[swapped, a, :]
                slot_norms[swapped, at] = norms[candidates[swapped, a]].double()
                holds[swapped, at] = a
                G = torch.where(better[:, None, None], trial_G, G)
                rhs = torch.where(better[:, None], trial_rhs, rhs)
                c = torch.where(better[:, None], trial_c, c)
                valid = c > 0
                error = torch.where(better, trial_error, error)
                improved |= better
        # empty slots add 0 (their atom index may repeat an active one)
        z = torch.zeros_like(z).scatter_add_(1, slots, (c * valid).to(z.dtype))
        if not bool(improved.any()):
            break
    return z


def best_k_sparse(
    dictionary: Dictionary,
    r: torch.Tensor,
    start: torch.Tensor,
    k: int,
    *,
    iht_steps: int = 50,
    tol: float = 1e-6,
    polish_candidates: int | None = None,
) -> torch.Tensor:
    """Per token the lowest-error k-sparse non-negative codes [B, d_sae] among: NNLS on the start's
    support (its k largest entries), NN-OMP, IHT from the start to ``tol`` and subspace pursuit from the
    start, each refitted by exact NNLS on its support (which can only lower the error and keeps at most k
    actives); the best is then polished by :func:`swap_polish`."""
    D = dictionary.D.to(r.dtype)
    start = keep_k_nonnegative(dictionary.without_zero_rows(start.to(r.dtype)), k)
    candidates = [
        start,
        nn_omp(dictionary, r, k, start=start),
        iht(dictionary, r, start, k, iht_steps, tol=tol),
        subspace_pursuit(dictionary, r, start, k),
    ]
    best, best_error = None, None
    for codes in candidates:
        refit = refit_on_support(D, r, codes)
        error = squared_error(D, r, refit)
        if best is None or best_error is None:
            best, best_error = refit, error
            continue
        better = error < best_error
        best = torch.where(better.unsqueeze(-1), refit, best)
        best_error = torch.where(better, error, best_error)
    assert best is not None
    return swap_polish(dictionary, r, best, k, n_candidates=polish_candidates)
