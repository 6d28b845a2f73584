"""Non-negative k-sparse coding on a fixed dictionary (pure tensor math).

Per token: min_{z ≥ 0, ‖z‖₀ ≤ k} ½‖r − z·D‖², D [d_sae, d_in], r [B, d_in], z [B, d_sae]. The problem is
NP-hard; every function here returns feasible codes (non-negative, at most k actives), so its objective
is an upper bound on the optimum.

- :func:`iht`: normalized iterative hard thresholding (Blumensath & Davies 2010) from given codes:
  z ← P_k(z − μ·∇), ∇ = (z·D − r)·Dᵀ, P_k keeping the k largest non-negative entries, with the per-token
  step μ = ‖∇_S‖² / ‖∇_S·D_S‖² on the current support S, halved until the step does not increase the
  token's error (else the token keeps its codes). One d_sae-wide product per step.
- :func:`nn_omp`: orthogonal matching pursuit with non-negative picks to k atoms, batched over tokens,
  within each token's working set (the start's support and the atoms of largest r·d_j / ‖d_j‖).
- :func:`best_k_sparse`: the non-amortized search: several candidates and best single swaps, all on the
  inner products of each token's working set (:mod:`k_sparse_search`), with one d_sae-wide product per
  round to renew the working set.
"""

from __future__ import annotations

import torch

from sae_bench_amortization.inference.dictionary import Dictionary
from sae_bench_amortization.inference.k_sparse_search import (
    best_swaps,
    gram_error,
    iht_on_gram,
    keep_k,
    nnls_on_mask,
    omp_on_gram,
    subspace_pursuit_on_gram,
)
from sae_bench_amortization.inference.nnls import refit_on_support
from sae_bench_amortization.inference.solver import times_dictionary
from sae_bench_amortization.inference.working_set import GramBlocks, cached_gram_blocks

keep_k_nonnegative = (
    keep_k  # P_k on codes [B, d_sae]: the k largest non-negative entries of each row
)


def normalized(correlation: torch.Tensor, D: torch.Tensor) -> torch.Tensor:
    """Correlations R·d_j [B, d_sae] divided by ‖d_j‖: adding atom j alone lowers ½‖R‖² by
    (R·d_j)₊² / 2‖d_j‖², so atoms are ranked by this, not by the raw correlation (all-zero rows: −inf)."""
    norms = D.norm(dim=1)
    return torch.where(norms > 0, correlation / torch.where(norms > 0, norms, 1), -torch.inf)


def squared_error(D: torch.Tensor, r: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """½‖r − z·D‖² per token [B] (float64); z·D as a sparse product when z is sparse."""
    residual = (r - times_dictionary(z, D)).double()
    return 0.5 * (residual * residual).sum(dim=-1)


def entries_times_dictionary(
    values: torch.Tensor, indices: torch.Tensor, D: torch.Tensor
) -> torch.Tensor:
    """z·D [B, d_in] for codes given by their entries: values [B, w] at atoms indices [B, w] (distinct per
    row): each row the weighted sum of its w rows of D (``embedding_bag``: no dense [B, d_sae] pass)."""
    n_rows, width = values.shape
    if n_rows == 0 or width == 0:
        return values.new_zeros(n_rows, D.shape[1])
    return torch.nn.functional.embedding_bag(
        indices, D, per_sample_weights=values.to(D.dtype), mode="sum"
    ).to(values.dtype)


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
    Each token's error never increases.

    Codes are kept as their k entries: a step's only d_sae-wide work is the gradient product and one
    top-2k of it; the new support lies among the old one and the 2k atoms of most negative gradient
    (whatever the step μ, since off the support the entries are −μ·∇_j), so the halvings work on 3k
    entries per token."""
    D = dictionary.D.to(r.dtype)
    n_atoms = D.shape[0]
    width = min(k, n_atoms)
    start = keep_k_nonnegative(dictionary.without_zero_rows(z0.to(r.dtype)), k)
    values, indices = start.topk(width, dim=-1)  # the support (and zeros when it is smaller)
    residual = entries_times_dictionary(values, indices, D) - r
    error = 0.5 * (residual.double() ** 2).sum(-1)
    n_pool = min(2 * width, n_atoms)
    for _ in range(n_steps):
        gradient = residual @ D.T  # [B, d_sae]: the one d_sae-wide product
        on_support = values > 0
        direction = torch.where(on_support, gradient.gather(1, indices), 0)
        moved = entries_times_dictionary(direction, indices, D)
        numerator = (direction * direction).sum(-1)
        empty = ~on_support.any(dim=-1)  # no support yet: along the whole (negative) gradient
        if bool(empty.any()):
            whole = gradient[empty].clamp(max=0)
            moved[empty] = whole @ D
            numerator[empty] = (whole * whole).sum(-1)
        step = (numerator / (moved * moved).sum(-1).clamp_min(1e-30)).unsqueeze(-1)
        best = gradient.topk(n_pool, dim=-1, largest=False).indices  # [B, 2k]
        repeated = (best.unsqueeze(-1) == indices.unsqueeze(1)).any(-1)  # already in the support
        pool = torch.cat([indices, best], dim=1)  # [B, 3k]
        pool_values = torch.cat([values, torch.where(repeated, -torch.inf, 0)], dim=1)
        pool_gradient = gradient.gather(1, pool)
        todo = torch.ones(r.shape[0], dtype=torch.bool, device=r.device)
        new_values, new_indices = values.clone(), indices.clone()
        new_residual, new_error = residual.clone(), error.clone()
        for _ in range(max_halvings):
            rows = todo.nonzero().squeeze(-1)
            if rows.numel() == 0:
                break
            moved_values = pool_values[rows] - step[rows] * pool_gradient[rows]
            kept, where_kept = moved_values.topk(width, dim=-1)
            kept = kept.clamp(min=0)
            kept_indices = pool[rows].gather(1, where_kept)
            candidate_residual = entries_times_dictionary(kept, kept_indices, D) - r[rows]
            candidate_error = 0.5 * (candidate_residual.double() ** 2).sum(-1)
            better = candidate_error <= error[rows]
            accepted = rows[better]
            new_values[accepted], new_indices[accepted] = kept[better], kept_indices[better]
            new_residual[accepted] = candidate_residual[better]
            new_error[accepted] = candidate_error[better]
            todo[accepted] = False
            step[rows[~better]] /= 2
        previous = float(error.sum())
        values, indices, residual, error = new_values, new_indices, new_residual, new_error
        if tol is not None and previous - float(error.sum()) <= tol * max(previous, 1e-30):
            break
    return torch.zeros_like(start).scatter_(1, indices, values)


GATHER_BYTES = 64 * 2**20  # the atoms gathered at a time to form working sets' inner products
SEARCH_BYTES = 64 * 2**20  # a token group's Gram blocks and move tables, searched together


def working_sets(score: torch.Tensor, keep: torch.Tensor, size: int) -> torch.Tensor:
    """Each token's working set [B, size] of atom indices: the atoms of ``keep`` [B, d_sae] (bool) first,
    then those of largest ``score`` [B, d_sae]."""
    return torch.where(keep, torch.inf, score).topk(min(size, score.shape[1]), dim=-1).indices


def on_working_sets(
    D: torch.Tensor,
    r: torch.Tensor,
    W: torch.Tensor,
    gram: GramBlocks | None = None,
    correlation: torch.Tensor | None = None,
):
    """(G [b, m, m], β [b, m], ½‖r‖² [b]) in float64 for the atoms W [b, m] of D [d_sae, d_in] and
    targets r [b, d_in]. Given the cached Gram matrix's blocks (``gram``) and r·Dᵀ [b, d_sae]
    (``correlation``), gathered from them; else the products are taken in D's dtype, gathering the rows
    of at most :data:`GATHER_BYTES` at a time."""
    half_rr = 0.5 * (r.double() ** 2).sum(-1)
    if gram is not None and correlation is not None:
        return gram(W).double(), correlation.gather(1, W).double(), half_rr
    n_tokens, m = W.shape
    G = torch.empty(n_tokens, m, m, dtype=torch.float64, device=r.device)
    beta = torch.empty(n_tokens, m, dtype=torch.float64, device=r.device)
    size = max(1, GATHER_BYTES // (m * D.shape[1] * D.element_size()))
    for i in range(0, n_tokens, size):
        rows = D[W[i : i + size]]  # [b, m, d_in]
        G[i : i + size] = torch.bmm(rows, rows.mT)
        beta[i : i + size] = torch.bmm(rows, r[i : i + size].to(D.dtype).unsqueeze(-1)).squeeze(-1)
    return G, beta, half_rr


def _token_groups(n_tokens: int, m: int, k: int) -> list[slice]:
    """Slices of tokens whose Gram blocks [b, m, m] and move tables [b, m, k] (float64, a few of each)
    take at most :data:`SEARCH_BYTES`."""
    size = max(1, SEARCH_BYTES // (m * (8 * m + 32 * k)))
    return [slice(i, min(i + size, n_tokens)) for i in range(0, n_tokens, size)]


def nn_omp(
    dictionary: Dictionary,
    r: torch.Tensor,
    k: int,
    *,
    start: torch.Tensor | None = None,
    n_candidates: int | None = None,
) -> torch.Tensor:
    """Non-negative orthogonal matching pursuit to k atoms, codes [B, d_sae], among each token's working
    set: the support of ``start`` (if given) and the ``n_candidates`` atoms (default 2k) of largest
    r·d_j / ‖d_j‖ (:func:`k_sparse_search.omp_on_gram`); token groups keep memory bounded."""
    D = dictionary.D.to(r.dtype)
    keep = torch.zeros(r.shape[0], D.shape[0], dtype=torch.bool) if start is None else start > 0
    score = normalized(r @ D.T, D)
    W = working_sets(
        score, keep, (n_candidates or 2 * k) + (int(keep.sum(-1).max()) if keep.numel() else 0)
    )
    codes = torch.zeros(r.shape[0], D.shape[0], dtype=r.dtype, device=r.device)
    gram = cached_gram_blocks(dictionary, r.dtype)
    correlation = r @ D.T if gram is not None else None
    for part in _token_groups(r.shape[0], W.shape[1], k):
        G, beta, _ = on_working_sets(
            D, r[part], W[part], gram, None if correlation is None else correlation[part]
        )
        usable = score[part].gather(1, W[part]) > -torch.inf
        c = omp_on_gram(G, beta, usable, k)
        codes[part] = codes[part].scatter(1, W[part], c.to(r.dtype))
    return codes


def best_k_sparse(
    dictionary: Dictionary,
    r: torch.Tensor,
    start: torch.Tensor,
    k: int,
    *,
    n_candidates: int | None = None,
    max_rounds: int = 2,
    iht_steps: int = 50,
    tol: float = 1e-4,
) -> torch.Tensor:
    """Per token [B, d_sae] the lowest-error k-sparse non-negative codes found from the encoder's codes
    ``start``, searching on inner products within each token's working set W: its support and the
    ``n_candidates`` atoms (default max(k, 64)) most correlated (per unit norm) with its residual over the
    whole dictionary (one d_sae-wide product per round; :mod:`k_sparse_search` for the searches).

    Round 1 (residual of the start's support refitted): the best of the start's support refitted by NNLS,
    NN-OMP to k atoms, IHT from the start until its error stops falling (``tol``) and subspace pursuit from
    the start, each refitted by exact NNLS on its support. Rounds 2 to ``max_rounds``, for the tokens the
    round before improved (all after round 1), on the new residual's working set: the better of the codes
    so far and IHT from them, then :func:`k_sparse_search.best_swaps` (best single swaps until none helps).
    Every step only lowers a token's error, so the result is never worse than the start's refit."""
    D = dictionary.D.to(r.dtype)
    n_atoms = D.shape[0]
    n_candidates = min(n_atoms, n_candidates or max(k, 64))
    start = keep_k_nonnegative(dictionary.without_zero_rows(start.to(r.dtype)), k)
    codes = start
    todo = torch.arange(r.shape[0], device=r.device)
    start_fit = start
    # small SAEs: the working sets' blocks from the cached D·Dᵀ and their β from r·Dᵀ
    gram = cached_gram_blocks(dictionary, r.dtype)
    correlation = r @ D.T if gram is not None else None
    for round_ in range(max_rounds):
        first = round_ == 0
        targets = r[todo]
        fitted = refit_on_support(D, targets, codes[todo]) if first else codes[todo]
        if first:
            start_fit = fitted
        score = normalized((targets - times_dictionary(fitted, D)) @ D.T, D)  # d_sae-wide
        W = working_sets(score, codes[todo] > 0, n_candidates + k)
        improved = torch.zeros(todo.numel(), dtype=torch.bool, device=r.device)
        found = codes.clone()
        for part in _token_groups(todo.numel(), W.shape[1], k):
            G, beta, half_rr = on_working_sets(
                D, targets[part], W[part], gram,
                None if correlation is None else correlation[todo[part]],
            )  # fmt: skip
            usable = score[part].gather(1, W[part]) > -torch.inf
            c0 = codes[todo[part]].gather(1, W[part]).double()
            c, error, before = _search(G, beta, c0, usable, k, half_rr, first=first,
                                       iht_steps=iht_steps, tol=tol)  # fmt: skip
            improved[part] = error < before
            found[todo[part]] = torch.zeros_like(found[todo[part]]).scatter_(
                1, W[part], c.to(r.dtype)
            )
        codes = found
        todo = todo if first else todo[improved]
        if todo.numel() == 0:
            break
    # the start's refit, if the search's products (other sums, other roundings) found no better
    kept = squared_error(D, r, start_fit) <= squared_error(D, r, codes)
    return torch.where(kept.unsqueeze(-1), start_fit, codes)


def _search(
    G: torch.Tensor,
    beta: torch.Tensor,
    c0: torch.Tensor,
    usable: torch.Tensor,
    k: int,
    half_rr: torch.Tensor,
    *,
    first: bool,
    iht_steps: int,
    tol: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One round of :func:`best_k_sparse` on a token group's working sets: (codes [b, m], their error [b],
    the error of c0's refit [b])."""
    refit = nnls_on_mask(G, beta, keep_k(c0.masked_fill(~usable, 0), k) > 0, k)
    candidates = [iht_on_gram(G, beta, c0, usable, k, half_rr, iht_steps, tol=tol)]
    if first:
        candidates += [
            subspace_pursuit_on_gram(G, beta, c0, usable, k, half_rr),
            omp_on_gram(G, beta, usable, k),
        ]
    best = refit
    best_error = refit_error = gram_error(G, beta, refit, half_rr)
    for codes in candidates:
        fitted = nnls_on_mask(G, beta, codes > 0, k)
        error = gram_error(G, beta, fitted, half_rr)
        better = error < best_error
        best = torch.where(better.unsqueeze(-1), fitted, best)
        best_error = torch.where(better, error, best_error)
    if first:
        return best, best_error, refit_error
    polished = best_swaps(G, beta, best, usable, k, half_rr)
    return polished, gram_error(G, beta, polished, half_rr), refit_error
