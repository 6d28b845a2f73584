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
    gram_block,
    gram_error,
    iht_on_gram,
    keep_k,
    nnls_on_mask,
    omp_on_gram,
    subspace_pursuit_on_gram,
)
from sae_bench_amortization.inference.nnls import nnls_on_gram
from sae_bench_amortization.inference.solver import times_dictionary
from sae_bench_amortization.inference.working_set import GramBlocks, cached_gram_blocks

keep_k_nonnegative = (
    keep_k  # P_k on codes [B, d_sae]: the k largest non-negative entries of each row
)


def normalized(
    correlation: torch.Tensor, D: torch.Tensor, norms: torch.Tensor | None = None
) -> torch.Tensor:
    """Correlations R·d_j [B, d_sae] divided by ‖d_j‖ (``norms`` [d_sae] if known): adding atom j alone
    lowers ½‖R‖² by (R·d_j)₊² / 2‖d_j‖², so atoms are ranked by this, not by the raw correlation
    (all-zero rows: −inf)."""
    norms = D.norm(dim=1) if norms is None else norms
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
    top-k of it; the new support lies among the old one and the k atoms off it of most negative gradient
    (whatever the step μ, since off the support the entries are −μ·∇_j), so the halvings work on 2k
    entries per token, and a halving that keeps the whole support moves the residual by −μ·∇_S·D_S,
    taken once per step."""
    D = dictionary.D.to(r.dtype)
    n_atoms = D.shape[0]
    width = min(k, n_atoms)
    start = keep_k_nonnegative(dictionary.without_zero_rows(z0.to(r.dtype)), k)
    values, indices = start.topk(width, dim=-1)  # the support (and zeros when it is smaller)
    residual = entries_times_dictionary(values, indices, D) - r
    error = 0.5 * (residual.double() ** 2).sum(-1)
    n_pool = min(width, n_atoms - width)
    # one gradient buffer for every step (a fresh tensor per step pays its page faults)
    gradient = r.new_empty(r.shape[0], n_atoms)
    for _ in range(n_steps):
        torch.matmul(residual, D.T, out=gradient)  # [B, d_sae]: the one d_sae-wide product
        on_support = values > 0
        direction = torch.where(on_support, gradient.gather(1, indices), 0)
        moved = entries_times_dictionary(direction, indices, D)  # direction·D [B, d_in]
        numerator = (direction * direction).sum(-1)
        empty = ~on_support.any(dim=-1)  # no support yet: along the whole (negative) gradient
        if bool(empty.any()):
            whole = gradient[empty].clamp(max=0)
            moved[empty] = whole @ D
            numerator[empty] = (whole * whole).sum(-1)
        step = (numerator / (moved * moved).sum(-1).clamp_min(1e-30)).unsqueeze(-1)
        support_gradient = gradient.gather(1, indices)
        # the k most negative entries off the support (the support's masked in place: done with it)
        best = gradient.scatter_(1, indices, torch.inf).topk(n_pool, dim=-1, largest=False)
        pool = torch.cat([indices, best.indices], dim=1)  # [B, 2k]
        pool_values = torch.cat([values, torch.where(best.values < torch.inf, 0, -torch.inf)], 1)
        pool_gradient = torch.cat([support_gradient, best.values], dim=1)
        full = on_support.all(
            -1
        )  # whole support: a step that keeps it moves the residual by −μ·moved
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
            # the support kept whole, no entry clamped: z − μ·∇_S, residual − μ·moved (no product)
            same = full[rows] & (where_kept < width).all(-1) & (kept > 0).all(-1)
            kept = torch.where(
                same.unsqueeze(-1), values[rows] - step[rows] * direction[rows], kept
            )
            kept_indices = torch.where(same.unsqueeze(-1), indices[rows], kept_indices)
            candidate_residual = residual[rows] - step[rows] * moved[rows]
            changed = (~same).nonzero().squeeze(-1)
            candidate_residual[changed] = (
                entries_times_dictionary(kept[changed], kept_indices[changed], D) - r[rows[changed]]
            )
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


class RowGather:
    """The rows of D [d_sae, d_in] at atoms [n, m] as [n, m, d_in], into one buffer reused across calls
    (a fresh tensor per call costs more in page faults than the gather itself)."""

    def __init__(self, D: torch.Tensor):
        self.D = D
        self.buffer = D.new_empty(0)

    def __call__(self, atoms: torch.Tensor) -> torch.Tensor:
        size = atoms.numel() * self.D.shape[1]
        if self.buffer.numel() < size:
            self.buffer = self.D.new_empty(size)
        out = self.buffer[:size].view(atoms.numel(), self.D.shape[1])
        torch.index_select(self.D, 0, atoms.reshape(-1), out=out)
        return out.view(*atoms.shape, self.D.shape[1])


def on_working_sets(
    D: torch.Tensor,
    r: torch.Tensor,
    W: torch.Tensor,
    gram: GramBlocks | None = None,
    correlation: torch.Tensor | None = None,
    known: tuple[torch.Tensor, torch.Tensor] | None = None,
    rows_of: RowGather | None = None,
):
    """(G [b, m, m], β [b, m], ½‖r‖² [b]) in float64 for the atoms W [b, m] of D [d_sae, d_in] and
    targets r [b, d_in]. Given the cached Gram matrix's blocks (``gram``) and r·Dᵀ [b, d_sae]
    (``correlation``), gathered from them; else the products are taken in D's dtype, gathering the rows
    of at most :data:`GATHER_BYTES` at a time. ``known`` = (G, β) of W's first w atoms ([b, w, w], [b, w]):
    only the other atoms' rows of G are formed. ``rows_of``: a reused gather of D's rows."""
    half_rr = 0.5 * (r.double() ** 2).sum(-1)
    if gram is not None and correlation is not None:
        return gram(W).double(), correlation.gather(1, W).double(), half_rr
    n_tokens, m = W.shape
    w = 0 if known is None else known[0].shape[1]
    G = torch.empty(n_tokens, m, m, dtype=torch.float64, device=r.device)
    beta = torch.empty(n_tokens, m, dtype=torch.float64, device=r.device)
    if known is not None:
        G[:, :w, :w], beta[:, :w] = known
    size = max(1, GATHER_BYTES // (m * D.shape[1] * D.element_size()))
    rows_of = rows_of or RowGather(D)
    for i in range(0, n_tokens, size):
        rows = rows_of(W[i : i + size])  # [s, m, d_in]
        new = torch.bmm(rows[:, w:], rows.mT)  # [s, m − w, m]: the rows of G not known
        G[i : i + size, w:] = new
        G[i : i + size, :w, w:] = new[:, :, :w].mT
        target = r[i : i + size].to(D.dtype).unsqueeze(-1)
        beta[i : i + size, w:] = torch.bmm(rows[:, w:], target).squeeze(-1)
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
    ``start``, searching on inner products within each token's working set W: k atoms S (its support,
    padded) and the ``n_candidates`` atoms (default max(k, 64)) most correlated (per unit norm) with its
    residual over the whole dictionary (one d_sae-wide product per round; :mod:`k_sparse_search` for the
    searches). Tokens go in groups (:func:`_token_groups`) through every round.

    Round 1, S = the start's support: the best of the start's support refitted by NNLS, NN-OMP to k atoms,
    IHT from the start until its error stops falling (``tol``) and subspace pursuit from the start, each
    refitted by exact NNLS on its support. Rounds 2 to ``max_rounds``, for the tokens the round before
    improved (all after round 1), S = the codes so far, candidates from the new residual: the better of the
    codes so far and IHT from them, then :func:`k_sparse_search.best_swaps` (best single swaps until none
    helps). G_SS and β_S come from the refit (round 1) or the round before, so a round forms only the
    candidates' rows of G. Every step only lowers a token's error, so the result is never worse than the
    start's refit."""
    D = dictionary.D.to(r.dtype)
    n_atoms = D.shape[0]
    width = min(k, n_atoms)
    n_candidates = min(n_atoms - width, n_candidates or max(k, 64))
    start = keep_k_nonnegative(dictionary.without_zero_rows(start.to(r.dtype)), k)
    # small SAEs: the working sets' blocks from the cached D·Dᵀ and their β from r·Dᵀ
    gram = cached_gram_blocks(dictionary, r.dtype)
    norms, rows_of = D.norm(dim=1), RowGather(D)
    codes = torch.zeros_like(start)
    for part in _token_groups(r.shape[0], width + n_candidates, k):
        codes[part] = _search_group(
            D, r[part], start[part], width, n_candidates, norms, gram, rows_of,
            max_rounds=max_rounds, iht_steps=iht_steps, tol=tol,
        )  # fmt: skip
    return codes


def _search_group(
    D: torch.Tensor,
    r: torch.Tensor,
    start: torch.Tensor,
    width: int,
    n_candidates: int,
    norms: torch.Tensor,
    gram: GramBlocks | None,
    rows_of: RowGather,
    *,
    max_rounds: int,
    iht_steps: int,
    tol: float,
) -> torch.Tensor:
    """:func:`best_k_sparse` on one token group: targets r [b, d_in], start codes [b, d_sae] (at most
    ``width`` actives), row norms of D [d_sae]; codes [b, d_sae]."""
    correlation = r @ D.T if gram is not None else None  # [b, d_sae]
    values, support = start.topk(width, dim=-1)  # S [b, w]: the support, padded with zero entries
    # the start's refit on S, from S's own block of G (kept as W's first block)
    known = on_working_sets(D, r, support, gram, correlation, rows_of=rows_of)[:2]
    refit = nnls_on_gram(*known, values > 0)  # [b, w] on S
    start_values, start_support = refit.to(r.dtype), support
    found_values, found_support = start_values.clone(), support.clone()  # [b, w]: codes as entries
    todo, c_S = torch.arange(r.shape[0], device=r.device), refit
    for round_ in range(max_rounds):
        first = round_ == 0
        targets = r[todo]
        residual = targets - entries_times_dictionary(c_S.to(r.dtype), support, D)
        score = normalized(residual @ D.T, D, norms)  # [n, d_sae]: the one d_sae-wide product
        score = score.nan_to_num(neginf=-torch.finfo(score.dtype).max)  # below any real score
        candidates = score.scatter_(1, support, -torch.inf).topk(n_candidates, dim=-1).indices
        W = torch.cat([support, candidates], dim=1)  # [n, m]: S first
        G, beta, half_rr = on_working_sets(
            D, targets, W, gram, None if correlation is None else correlation[todo], known, rows_of
        )
        usable = norms[W] > 0
        c0 = torch.cat(
            [(values if first else c_S).double(), beta.new_zeros(len(todo), n_candidates)], 1
        )
        given = torch.cat([refit, beta.new_zeros(len(todo), n_candidates)], 1) if first else c0
        c, error, before = _search(G, beta, c0, usable, width, half_rr, given,
                                   first=first, iht_steps=iht_steps, tol=tol)  # fmt: skip
        # the next round's S: the codes' k largest slots (all their actives), with their block of G and β
        c_S, slots = c.topk(width, dim=-1)
        support, known = W.gather(1, slots), (gram_block(G, slots), beta.gather(1, slots))
        found_values[todo], found_support[todo] = c_S.to(r.dtype), support
        keep = torch.ones_like(todo, dtype=torch.bool) if first else error < before
        todo, c_S, support = todo[keep], c_S[keep], support[keep]
        known = (known[0][keep], known[1][keep])
        if todo.numel() == 0:
            break
    # the start's refit, if the search's products (other sums, other roundings) found no better
    start_residual = r - entries_times_dictionary(start_values, start_support, D)
    found_residual = r - entries_times_dictionary(found_values, found_support, D)
    kept = (start_residual.double() ** 2).sum(-1) <= (found_residual.double() ** 2).sum(-1)
    values = torch.where(kept.unsqueeze(-1), start_values, found_values)
    atoms = torch.where(kept.unsqueeze(-1), start_support, found_support)
    return torch.zeros_like(start).scatter_(1, atoms, values)


def _search(
    G: torch.Tensor,
    beta: torch.Tensor,
    c0: torch.Tensor,
    usable: torch.Tensor,
    k: int,
    half_rr: torch.Tensor,
    refit: torch.Tensor,
    *,
    first: bool,
    iht_steps: int,
    tol: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One round of :func:`best_k_sparse` on a token group's working sets from codes c0 [b, m] and their
    NNLS refit on their support ``refit`` [b, m]: (codes [b, m], their error [b], the refit's error [b])."""
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
