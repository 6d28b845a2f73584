"""Non-amortized sparse coding to tolerance with per-token working sets.

Codes are sparse (tens of actives among thousands of atoms), so each token's problem is solved on a small
working set W of K atoms, with the Gram matrix G = D·Dᵀ (cached per dictionary) gathered to [B, K, K]:

1. c = r·Dᵀ; W = the K atoms of largest c (plus the support of a warm start).
2. FISTA on the restricted problem  min_{z_W ≥ 0} ½ z_Wᵀ G_WW z_W − (c_W − λ)ᵀ z_W,  with the per-token
   step 1/L_W from the Gershgorin bound on G_WW (much larger than 1/L for the full dictionary).
3. KKT check over every atom (R = r − z·D): off the support optimality needs (R·Dᵀ)_j ≤ λ, on it
   (R·Dᵀ)_j = λ, both to ``tol``·λ. Tokens that pass are done; the others keep their support, swap in
   their largest violators, and go back to 2 warm-started (K doubles when a support fills it).

The fixed point is the same as full-dictionary ISTA's; only the work per iteration shrinks. Atoms whose
row of D is all zero never enter a working set and start at 0 (their code is always 0).
"""

from __future__ import annotations

import warnings

import torch

from sae_bench_amortization.inference.dictionary import Dictionary

GRAM_CACHE_BYTES = 256 << 20  # the full D·Dᵀ is cached up to this size (d_sae 8192 in float32)


def _restricted_fista(
    gram_w: torch.Tensor,
    b_w: torch.Tensor,
    z: torch.Tensor,
    max_steps: int,
    *,
    tol: float,
    lipschitz: float,
):
    """FISTA on min_{z ≥ 0} ½ zᵀ G z − bᵀ z per token; gram_w [n, K, K], b_w and z [n, K].

    Step 1/L_W with L_W = min(Gershgorin bound of G_WW, ‖D‖₂²): both bound λ_max(G_WW) from above.
    """
    gershgorin = gram_w.abs().sum(-1).amax(-1, keepdim=True)
    step = 1.0 / gershgorin.clamp(min=1e-12, max=lipschitz)
    scaled_gram = gram_w * step.unsqueeze(-1)
    scaled_b = b_w * step
    y, t = z, 1.0
    for k in range(max_steps):
        z_new = torch.baddbmm(y.unsqueeze(1), y.unsqueeze(1), scaled_gram, alpha=-1).squeeze(1)
        z_new = z_new.add_(scaled_b).clamp_(min=0)
        t_new = (1 + (1 + 4 * t * t) ** 0.5) / 2
        difference = z_new - z
        y = z_new + ((t - 1) / t_new) * difference
        z, t = z_new, t_new
        if k % 10 == 9 and float(difference.abs().max()) <= tol * max(float(z.abs().max()), 1e-12):
            break
    return z


def _sparse_rows(columns: torch.Tensor, values: torch.Tensor, n_columns: int) -> torch.Tensor:
    """A CSR matrix [n, n_columns] with values [n, K] at columns [n, K] (K per row, sorted)."""
    n, k = columns.shape
    crow = torch.arange(0, n * k + 1, k, device=columns.device)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "sparse CSR support is in beta"
        return torch.sparse_csr_tensor(
            crow,
            columns.reshape(-1),
            values.reshape(-1),
            size=(n, n_columns),
            check_invariants=False,
        )


class GramBlocks:
    """Gathers G[W_i, W_j] blocks [n, K, K] into reused buffers (allocating 16 MB tensors per round costs
    more than the gather itself)."""

    def __init__(self, gram: torch.Tensor):
        self.flat = gram.reshape(-1)
        self.n_atoms = gram.shape[0]
        self.index_dtype = torch.int32 if self.n_atoms**2 < 2**31 else torch.int64
        self.index = torch.empty(0, dtype=self.index_dtype, device=gram.device)
        self.values = torch.empty(0, dtype=gram.dtype, device=gram.device)

    def __call__(self, working: torch.Tensor) -> torch.Tensor:
        n, k = working.shape
        size = n * k * k
        if self.index.numel() < size:
            self.index = torch.empty(size, dtype=self.index_dtype, device=working.device)
            self.values = torch.empty(size, dtype=self.flat.dtype, device=working.device)
        w = working.to(self.index_dtype)
        index = self.index[:size].view(n, k, k)
        torch.add((w * self.n_atoms).unsqueeze(2), w.unsqueeze(1), out=index)
        values = torch.index_select(self.flat, 0, index.view(-1), out=self.values[:size])
        return values.view(n, k, k)


class _ComputedGramBlocks:
    """G[W_i, W_j] = D[W]·D[W]ᵀ computed per call from the gathered decoder rows [n, K, d_in]: no
    d_sae × d_sae matrix anywhere (wide SAEs: 16 GiB at 65k latents, 4 TiB at 1M)."""

    def __init__(self, D: torch.Tensor):
        self.D = D

    def __call__(self, working: torch.Tensor) -> torch.Tensor:
        rows = self.D[working]  # [n, K, d_in]
        return torch.bmm(rows, rows.transpose(1, 2))


def gram_fits(n_atoms: int, dtype: torch.dtype, cache_bytes: int = GRAM_CACHE_BYTES) -> bool:
    """Whether the full Gram matrix [n_atoms, n_atoms] in ``dtype`` is kept (within ``cache_bytes``)."""
    return n_atoms * n_atoms * torch.finfo(dtype).bits // 8 <= cache_bytes


def cached_gram_blocks(
    dictionary: Dictionary, dtype: torch.dtype, cache_bytes: int = GRAM_CACHE_BYTES
) -> GramBlocks | None:
    """The full Gram matrix's blocks when it fits ``cache_bytes``, else None: wider SAEs form their working
    sets' blocks from the decoder rows, never the d_sae × d_sae matrix."""
    if not gram_fits(dictionary.D.shape[0], dtype, cache_bytes):
        return None
    return GramBlocks(dictionary.gram.to(dtype))


def gram_blocks_for(dictionary: Dictionary, dtype: torch.dtype, cache_bytes: int):
    """The cached Gram matrix's blocks when it fits ``cache_bytes``, else blocks computed per round."""
    cached = cached_gram_blocks(dictionary, dtype, cache_bytes)
    return cached if cached is not None else _ComputedGramBlocks(dictionary.D.to(dtype))


def working_set_solve(
    dictionary: Dictionary,
    r: torch.Tensor,
    lam: float,
    *,
    tol: float = 1e-4,
    max_steps: int = 100_000,
    z0: torch.Tensor | None = None,
    k_init: int | None = None,
    inner_steps: int = 80,
    n_new: int = 8,
    max_rounds: int = 500,
    max_gram_elements: int = 2**24,
    gram_cache_bytes: int = GRAM_CACHE_BYTES,
) -> torch.Tensor:
    """Codes z [B, d_sae] minimizing ½‖r − z·D‖² + λ‖z‖₁ (z ≥ 0) per token, to KKT tolerance ``tol``·λ.

    Working sets start at ``k_init`` atoms (default 16, or 32 for dictionaries too wide to cache the Gram
    matrix); each round swaps up to ``n_new`` of a token's largest
    violators in (growing the set when a support fills it). ``max_steps`` bounds the inner FISTA steps
    summed over rounds. The gathered Gram blocks [n, K, K] are built for at
    most ``max_gram_elements`` entries at a time (64 MiB in float32): memory stays bounded however dense
    the codes are. The full Gram matrix D·Dᵀ is cached only while it takes at most ``gram_cache_bytes``
    (256 MiB: d_sae ≤ 8192 in float32); wider dictionaries gather their rows and form each token's block
    per round, so memory is the dictionary plus O(chunk × K × d_in).
    """
    D = dictionary.D.to(r.dtype)
    Dt = D.T
    n_tokens, n_atoms = r.shape[0], D.shape[0]
    codes = torch.zeros(n_tokens, n_atoms, dtype=r.dtype, device=r.device)
    if n_tokens == 0:
        return codes
    gram_blocks = gram_blocks_for(dictionary, r.dtype, gram_cache_bytes)
    wide = isinstance(gram_blocks, _ComputedGramBlocks)
    row_elements = D.shape[1] if wide else 0
    if k_init is None:  # wide dictionaries: fewer, larger rounds (each costs a d_sae-wide GEMM)
        k_init = 32 if wide else 16
    correlations = r @ Dt  # [B, d_sae]
    outside_buffer = torch.empty_like(correlations)
    k = min(n_atoms, k_init)
    if z0 is not None:
        z0 = dictionary.without_zero_rows(z0)
        k = min(n_atoms, max(k, int((z0 > 0).sum(-1).max()) + n_new))
        score = torch.where(z0 > 0, torch.inf, correlations)
    else:
        score = correlations
    if dictionary.n_zero_rows:  # all-zero atoms last: they never fire
        score = score.masked_fill(dictionary.zero_rows.to(score.device), -torch.inf)
    working = score.topk(k, dim=-1, sorted=False).indices.sort(dim=-1).values
    z_w = working.new_zeros(working.shape, dtype=r.dtype) if z0 is None else z0.gather(1, working)
    todo = torch.arange(n_tokens, device=r.device)
    kkt_tol = tol * max(lam, 1e-12)
    lipschitz = dictionary.lipschitz
    steps_left = max_steps
    for round_index in range(max_rounds):
        n, k = working.shape
        # hard (ill-conditioned) tokens get longer runs in later rounds
        n_inner = max(1, min(inner_steps * 2 ** min(round_index, 5), steps_left))
        slice_size = max(1, max_gram_elements // (k * (k + row_elements)))
        b_all = correlations[todo.unsqueeze(1), working] - lam
        z_parts, gradient_parts = [], []
        for start in range(0, n, slice_size):
            rows = slice(start, start + slice_size)
            gram_w = gram_blocks(working[rows])
            z_slice = _restricted_fista(
                gram_w, b_all[rows], z_w[rows], n_inner, tol=tol, lipschitz=lipschitz
            )
            z_parts.append(z_slice)
            gradient_parts.append(torch.bmm(z_slice.unsqueeze(1), gram_w).squeeze(1) - b_all[rows])
        z_w, gradient_w = torch.cat(z_parts), torch.cat(gradient_parts)
        steps_left -= n_inner
        codes[todo.unsqueeze(1), working] = z_w
        # KKT inside W (restricted gradient): = 0 on the support, ≥ 0 at zeros.
        inside_bad = torch.where(z_w > 0, gradient_w.abs(), -gradient_w).amax(-1) > kkt_tol
        # KKT outside W: (R·Dᵀ)_j ≤ λ.
        residual = r[todo] - _sparse_rows(working, z_w, n_atoms) @ D
        outside = torch.mm(residual, Dt, out=outside_buffer[:n])
        outside.scatter_(1, working, -torch.inf)
        outside_bad = outside.amax(-1) > lam + kkt_tol
        unfinished = inside_bad | outside_bad
        n_left = int(unfinished.sum())
        if n_left == 0 or steps_left <= 0:
            break
        # Next working set: the old one's most useful atoms (support first, then the most negative
        # gradients), plus the largest violators outside it.
        support = int((z_w[unfinished] > 0).sum(-1).max())
        n_add = min(n_new, n_atoms - k)  # atoms outside W that can come in
        if (
            support > k - n_add
        ):  # a full support: keep it all and grow — by half the set at least, so
            n_add = min(max(n_add, k // 2), n_atoms - k)  # wide codes take few KKT rounds (GEMMs)
        n_keep = k if support > k - n_add else k - n_add
        if n_add > 0 and n_left > n // 2:
            added = outside.topk(n_add, dim=-1, sorted=False).indices[unfinished]
        elif n_add > 0:
            added = outside[unfinished].topk(n_add, dim=-1, sorted=False).indices
        todo, working, z_w, gradient_w = (
            todo[unfinished],
            working[unfinished],
            z_w[unfinished],
            gradient_w[unfinished],
        )
        if n_add == 0:
            added = working[:, :0]
        keep_score = torch.where(z_w > 0, torch.inf, -gradient_w)
        kept = keep_score.topk(n_keep, dim=-1, sorted=False).indices
        working, order = torch.cat([working.gather(1, kept), added], dim=1).sort(dim=-1)
        z_w = torch.cat(
            [z_w.gather(1, kept), torch.zeros_like(added, dtype=r.dtype)], dim=1
        ).gather(1, order)
    return codes
