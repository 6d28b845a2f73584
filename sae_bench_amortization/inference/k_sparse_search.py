"""Non-negative k-sparse coding inside each token's working set of atoms, on inner products only (pure
tensor math).

A token's working set W holds m atoms (its current support and the atoms most correlated with it). The
searches here see only G = D_W·D_Wᵀ [b, m, m] and β = D_W·r [b, m] (float64): the error of codes c [b, m]
on W is ½‖r‖² − cᵀβ + ½cᵀGc, so a search step costs O(m²) or O(m·k²) per token, never a d_sae-wide
product. ``usable`` [b, m] marks the atoms a search may pick (all-zero rows may not). Every function
returns feasible codes: non-negative, at most k actives.
"""

from __future__ import annotations

import torch

from sae_bench_amortization.inference.nnls import nnls_on_gram


def gram_error(
    G: torch.Tensor,
    beta: torch.Tensor,
    c: torch.Tensor,
    half_rr: torch.Tensor,
    rows: torch.Tensor | None = None,
) -> torch.Tensor:
    """½‖r − c·D_W‖² [n] from G [b, m, m], β [b, m], codes c [n, m] and ½‖r‖² [b] for the tokens ``rows``
    [n] (default: all, n = b), reading G in place."""
    if rows is not None:
        beta, half_rr = beta[rows], half_rr[rows]
    return half_rr - (c * beta).sum(-1) + 0.5 * (c * times_gram(G, c, rows)).sum(-1)


def times_gram(G: torch.Tensor, c: torch.Tensor, rows: torch.Tensor | None = None) -> torch.Tensor:
    """G·c [n, m] for G [b, m, m] (symmetric) and sparse codes c [n, m] of the tokens ``rows`` [n] of G
    (default: all, n = b): from the rows of G on each token's support only (reading w·m of its m²
    entries, w the widest support)."""
    width = int((c != 0).sum(-1).max()) if c.numel() else 0
    if width == 0:
        return torch.zeros_like(c)
    if rows is None:
        if 2 * width > c.shape[1]:
            return torch.bmm(G, c.unsqueeze(-1)).squeeze(-1)
        rows = torch.arange(c.shape[0], device=c.device)
    at = c.abs().topk(width, dim=-1).indices
    gathered = G[rows[:, None], at]  # [n, w, m]
    return torch.bmm(c.gather(1, at).unsqueeze(1), gathered).squeeze(1)


def gram_block(G: torch.Tensor, at: torch.Tensor, rows: torch.Tensor | None = None) -> torch.Tensor:
    """G[rows, at, at] [n, w, w]: each token's block on its atoms ``at`` [n, w] of G [b, m, m] (tokens
    ``rows`` [n], default all), by one flat gather (no [n, m, m] copy)."""
    if rows is None:
        rows = torch.arange(at.shape[0], device=at.device)
    m = G.shape[1]
    flat = rows[:, None, None] * (m * m) + at[:, :, None] * m + at[:, None, :]
    return G.reshape(-1)[flat]


def quadratic_on_support(
    G: torch.Tensor, v: torch.Tensor, k: int, rows: torch.Tensor | None = None
) -> torch.Tensor:
    """vᵀGv [n] for v [n, m] with at most k nonzeros per row, from G's k × k block on each support; G
    [b, m, m] is indexed by ``rows`` [n] (default: all, n = b), so no [n, m, m] copy is made."""
    at = (
        v.abs().topk(min(k, v.shape[1]), dim=-1).indices
    )  # zeros past a smaller support add nothing
    values = v.gather(1, at)
    block = gram_block(G, at, rows)  # [n, k, k]
    return (values.unsqueeze(-1) * block * values.unsqueeze(1)).sum((1, 2))


def sparse_gram_error(
    G: torch.Tensor,
    beta: torch.Tensor,
    c: torch.Tensor,
    half_rr: torch.Tensor,
    rows: torch.Tensor,
    k: int,
) -> torch.Tensor:
    """:func:`gram_error` [n] of codes c [n, m] with at most k nonzeros, for the tokens ``rows`` [n] of
    G [b, m, m], β [b, m] and ½‖r‖² [b] (:func:`quadratic_on_support`: no [n, m, m] copy)."""
    linear = (c * beta[rows]).sum(-1)
    return half_rr[rows] - linear + 0.5 * quadratic_on_support(G, c, k, rows)


def keep_k(c: torch.Tensor, k: int) -> torch.Tensor:
    """c [b, m] with negatives set to 0 and all but each row's k largest entries set to 0."""
    c = c.clamp(min=0)
    if k >= c.shape[-1]:
        return c
    values, indices = c.topk(k, dim=-1)
    return torch.zeros_like(c).scatter_(-1, indices, values)


def masked_system(
    G: torch.Tensor,
    beta: torch.Tensor,
    mask: torch.Tensor,
    width: int,
    rows: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Each token's system on its atoms in ``mask`` [n, m] (at most ``width``, the masked atoms first):
    (slots [n, w], valid [n, w], G's block [n, w, w], β on them [n, w]); G [b, m, m] and β [b, m] are
    indexed by ``rows`` [n] (default: all), read in place."""
    width = min(width, mask.shape[1])
    values, slots = mask.to(G.dtype).topk(width, dim=-1)
    block = gram_block(G, slots, rows)
    return slots, values > 0, block, (beta if rows is None else beta[rows]).gather(1, slots)


def nnls_on_mask(
    G: torch.Tensor,
    beta: torch.Tensor,
    mask: torch.Tensor,
    width: int,
    rows: torch.Tensor | None = None,
) -> torch.Tensor:
    """Exact NNLS of each token on its atoms in ``mask`` [n, m] (at most ``width`` per token): codes [n, m].
    G [b, m, m] and β [b, m] are indexed by ``rows`` [n] (default: all, n = b), read in place."""
    slots, valid, sub, rhs = masked_system(G, beta, mask, width, rows)
    solved = nnls_on_gram(sub, rhs, valid)
    return torch.zeros_like(mask, dtype=beta.dtype).scatter_(1, slots, solved * valid)


def least_squares_on_mask(
    G: torch.Tensor,
    beta: torch.Tensor,
    mask: torch.Tensor,
    width: int,
    rows: torch.Tensor | None = None,
) -> torch.Tensor:
    """Unconstrained least-squares codes [n, m] of each token on its atoms in ``mask`` [n, m] (at most
    ``width`` per token; one Cholesky solve with a vanishing ridge for collinear atoms), G [b, m, m] and
    β [b, m] indexed by ``rows`` [n] (default: all), read in place. A token whose block does not factor
    gets 0."""
    slots, valid, block, rhs = masked_system(G, beta, mask, width, rows)
    rhs = rhs.masked_fill(~valid, 0)
    eye = torch.eye(width, dtype=G.dtype, device=G.device)
    scale = block.diagonal(dim1=1, dim2=2).amax(-1).clamp_min(1e-300)[:, None, None]
    system = block.masked_fill(~(valid[:, :, None] & valid[:, None, :]), 0)
    system = system + eye * (~valid).unsqueeze(-1) + 1e-12 * scale * eye
    factor, info = torch.linalg.cholesky_ex(system)
    solved = torch.cholesky_solve(rhs.unsqueeze(-1), factor).squeeze(-1)
    solved = torch.where((info == 0).unsqueeze(-1) & valid, solved, 0)
    return torch.zeros_like(mask, dtype=beta.dtype).scatter_(1, slots, solved)


def omp_on_gram(G: torch.Tensor, beta: torch.Tensor, usable: torch.Tensor, k: int) -> torch.Tensor:
    """Orthogonal matching pursuit with non-negative picks to k atoms: each pick is the usable atom most
    positively correlated with the residual per unit norm; the inverse H of the picked atoms' Gram matrix
    grows by one row per pick (block inverse: u = H·g, s = G_qq − gᵀu; O(k²) per token, batched
    products only), and the fit's negative coefficients are clamped to 0 for the residual. Codes [b, m];
    :func:`nnls_on_mask` on their support gives the exact fit."""
    n_tokens, m = beta.shape
    width = min(k, m)
    diagonal = G.diagonal(dim1=1, dim2=2)
    norms = diagonal.clamp_min(0).sqrt()
    usable = usable & (norms > 0)
    chosen = torch.zeros_like(usable)
    H = beta.new_zeros(n_tokens, width, width)  # inverse of G[picks, picks], zero past the picks
    picks = torch.zeros(n_tokens, width, dtype=torch.long, device=G.device)
    G_WP = beta.new_zeros(n_tokens, m, width)  # G[:, picks]
    b_P = beta.new_zeros(n_tokens, width)
    c_P = beta.new_zeros(n_tokens, width)  # the picks' coefficients, clamped at 0
    active = torch.ones(n_tokens, dtype=torch.bool, device=G.device)
    for i in range(width):
        # (r − c·D_W)·d_j, from the i picks so far
        correlation = beta - torch.bmm(G_WP[:, :, :i], c_P[:, :i].unsqueeze(-1)).squeeze(-1)
        score = torch.where(
            usable & ~chosen, correlation / torch.where(usable, norms, 1), -torch.inf
        )
        best = score.argmax(dim=-1, keepdim=True)  # [b, 1]
        active &= score.gather(1, best).squeeze(-1) > 0  # no atom lowers the error: stop
        if not bool(active.any()):
            break
        chosen.scatter_(1, best, active.unsqueeze(-1))
        g = G.gather(2, best.unsqueeze(1).expand(-1, m, 1)).squeeze(-1)  # [b, m]: G[:, new]
        g_P = g.gather(1, picks[:, :i])  # G[picks, new]
        known = H[:, :i, :i]  # H is zero past the first i picks
        u = torch.bmm(known, g_P.unsqueeze(-1)).squeeze(-1)  # [b, i]
        g_new = diagonal.gather(1, best).squeeze(-1)
        schur = (g_new - (g_P * u).sum(-1)).clamp_min(1e-10 * g_new.clamp_min(1e-300))
        scale = torch.where(active, 1 / schur, 0).unsqueeze(-1)  # a stopped token's H stays
        known.add_((u * scale).unsqueeze(-1) * u.unsqueeze(1))  # (a batched matmul on a view loops)
        H[:, i, :i] = -u * scale
        H[:, :i, i] = -u * scale
        H[:, i, i] = scale.squeeze(-1)
        picks[:, i] = best.squeeze(-1)
        G_WP[:, :, i] = g * active.unsqueeze(-1)
        b_P[:, i] = beta.gather(1, best).squeeze(-1) * active
        c_P[:, : i + 1] = torch.bmm(H[:, : i + 1, : i + 1], b_P[:, : i + 1, None]).squeeze(-1)
        c_P.clamp_(min=0)
    return torch.zeros_like(beta).scatter_add_(1, picks, c_P)


def iht_on_gram(
    G: torch.Tensor,
    beta: torch.Tensor,
    c0: torch.Tensor,
    usable: torch.Tensor,
    k: int,
    half_rr: torch.Tensor,
    n_steps: int,
    *,
    tol: float | None = None,
    max_halvings: int = 8,
) -> torch.Tensor:
    """Normalized iterative hard thresholding from c0 [b, m] (projected to k usable actives): c ← P_k(c −
    μ∇), ∇ = Gc − β, μ = ‖∇_S‖² / ∇_SᵀG∇_S on the support S, halved until the token's error does not rise
    (else it keeps its codes). With ``tol``, a token stops once its error falls by less than ``tol``
    (relative) in a step; the others go on (their Gram blocks read in place, not copied)."""
    c = keep_k(c0.masked_fill(~usable, 0), k)
    error = gram_error(G, beta, c, half_rr)
    active = torch.arange(c.shape[0], device=c.device)  # the tokens still stepping
    for _ in range(n_steps):
        if active.numel() == 0:
            break
        c_a, before = c[active], error[active]
        gradient = times_gram(G, c_a, active) - beta[active]
        empty = ~(c_a > 0).any(dim=-1, keepdim=True)  # no support yet: along the whole gradient
        direction = torch.where(empty, gradient.clamp(max=0), torch.where(c_a > 0, gradient, 0))
        curvature = quadratic_on_support(G, torch.where(empty, 0, direction), k, active)
        dense = empty.squeeze(-1).nonzero().squeeze(-1)
        if dense.numel():  # rare: the whole gradient, not k entries
            d = direction[dense]
            G_dense = G[active[dense]]
            curvature[dense] = (d * torch.bmm(G_dense, d.unsqueeze(-1)).squeeze(-1)).sum(-1)
        step = ((direction * direction).sum(-1) / curvature.clamp_min(1e-30)).unsqueeze(-1)
        todo = torch.ones(active.numel(), dtype=torch.bool, device=c.device)
        new_c, new_error = c_a.clone(), before.clone()
        for _ in range(max_halvings):
            rows = todo.nonzero().squeeze(-1)
            if rows.numel() == 0:
                break
            candidate = keep_k(
                (c_a[rows] - step[rows] * gradient[rows]).masked_fill(~usable[active[rows]], 0), k
            )
            candidate_error = sparse_gram_error(G, beta, candidate, half_rr, active[rows], k)
            better = candidate_error <= before[rows]
            new_c[rows[better]], new_error[rows[better]] = (
                candidate[better],
                candidate_error[better],
            )
            todo[rows[better]] = False
            step[rows[~better]] /= 2
        c[active], error[active] = new_c, new_error
        if tol is not None:
            active = active[before - new_error > tol * before.clamp_min(1e-30)]
    return c


def subspace_pursuit_on_gram(
    G: torch.Tensor,
    beta: torch.Tensor,
    c0: torch.Tensor,
    usable: torch.Tensor,
    k: int,
    half_rr: torch.Tensor,
    *,
    max_rounds: int = 10,
) -> torch.Tensor:
    """Subspace pursuit (Dai & Milenkovic 2009) with non-negative fits from c0 [b, m]: each round adds the
    k usable atoms most correlated with the residual (per unit norm), fits least squares on the ≤ 2k (as
    the original: the fit only ranks them), keeps the k largest positive and refits them by exact NNLS; a
    token keeps the new codes only when its error falls, and stops when it does not (the same round would
    fail again)."""
    norms = G.diagonal(dim1=1, dim2=2).clamp_min(0).sqrt()
    usable = usable & (norms > 0)
    c = nnls_on_mask(G, beta, keep_k(c0.masked_fill(~usable, 0), k) > 0, k)
    error = gram_error(G, beta, c, half_rr)
    n_added = min(k, G.shape[1])
    # the tokens still searching: one whose round failed would repeat it, so it is done
    todo = torch.arange(c.shape[0], device=c.device)
    for _ in range(max_rounds):
        if todo.numel() == 0:
            break
        c_t = c[todo]
        correlation = beta[todo] - times_gram(G, c_t, todo)
        score = torch.where(
            usable[todo] & (c_t <= 0),
            correlation / torch.where(usable[todo], norms[todo], 1),
            -torch.inf,
        )
        added = score.topk(n_added, dim=-1)
        merged = (c_t > 0).scatter(1, added.indices, added.values > 0)
        wide = least_squares_on_mask(G, beta, merged, 2 * k, todo)
        candidate = nnls_on_mask(G, beta, keep_k(wide, k) > 0, k, todo)
        candidate_error = gram_error(G, beta, candidate, half_rr, todo)
        better = candidate_error < error[todo]
        c[todo[better]], error[todo[better]] = candidate[better], candidate_error[better]
        todo = todo[better]
    return c


def best_swaps(
    G: torch.Tensor,
    beta: torch.Tensor,
    c: torch.Tensor,
    usable: torch.Tensor,
    k: int,
    half_rr: torch.Tensor,
    *,
    max_trials: int = 8,
    max_moves: int | None = None,
) -> torch.Tensor:
    """Local search on supports by the best single move: swap one active atom p for an inactive atom q,
    or (below k actives) add q. Every move's least-squares error on its new support comes in closed form
    from H = G_SS⁻¹ (removing p: c ← c − (c_p/H_pp)·H_p, error + c_p²/2H_pp; adding q: error −
    ρ_q'²/2s_q', ρ' the residual's correlation with q and s' its Schur complement), O(m·k²) per token
    for all m·k moves. The ``max_trials`` best predicted moves are refitted by exact NNLS in order (its error is
    never below the prediction, so a move predicted not to help cannot), the first that improves is kept;
    until no token improves, at most ``max_moves`` times (default 2k + 8). Codes c [b, m] must be NNLS fits
    on their supports (as :func:`nnls_on_mask` gives); returns codes [b, m]."""
    n_tokens, m = beta.shape
    width = min(k, m)
    max_moves = 2 * k + 8 if max_moves is None else max_moves
    c = c.clone()
    error = gram_error(G, beta, c, half_rr)
    todo = torch.arange(n_tokens, device=G.device)
    eye = torch.eye(width, dtype=G.dtype, device=G.device)
    for _ in range(max_moves):
        if todo.numel() == 0:
            break
        bt, ct, err = beta[todo], c[todo], error[todo]
        values, slots = ct.topk(width, dim=-1)  # the support first; the other slots are empty
        valid = values > 0
        # [n, m, width]: G's support columns, from its support rows (G is symmetric; no G[todo] copy)
        G_WS = (G[todo[:, None], slots] * valid.unsqueeze(-1)).mT
        G_SS = G_WS.gather(1, slots.unsqueeze(-1).expand(-1, -1, width)) * valid.unsqueeze(-1)
        scale = G_SS.diagonal(dim1=1, dim2=2).amax(-1).clamp_min(1e-300)[:, None, None]
        factor, info = torch.linalg.cholesky_ex(
            G_SS + eye * (~valid).unsqueeze(-1) + 1e-12 * scale * eye
        )
        H = torch.cholesky_inverse(factor)  # [n, width, width]; an empty slot's block is 1
        c_S = torch.where(valid, values, 0)
        rho = bt - torch.bmm(G_WS, c_S.unsqueeze(-1)).squeeze(-1)  # [n, m]: residual · d_q
        V = torch.bmm(G_WS, H)  # [n, m, width]
        diagonal = G.diagonal(dim1=1, dim2=2)[todo]
        schur = diagonal - (V * G_WS).sum(-1)  # [n, m]: ‖d_q‖² less its part in span(D_S)
        H_pp = H.diagonal(dim1=1, dim2=2)
        removal = 0.5 * c_S * c_S / H_pp  # [n, width]: error added by dropping slot p (0 if empty)
        rho_after = rho.unsqueeze(-1) + (c_S / H_pp).unsqueeze(1) * V  # [n, m, width]
        schur_after = schur.unsqueeze(-1) + V * V / H_pp.unsqueeze(1)
        inactive = usable[todo] & ~(ct > 0)
        possible = (
            inactive.unsqueeze(-1)
            & (rho_after > 0)
            & (schur_after > 1e-10 * diagonal.clamp_min(1e-300).unsqueeze(-1))
        )
        predicted = removal.unsqueeze(1) - 0.5 * rho_after.square() / schur_after.clamp_min(1e-300)
        predicted = torch.where(possible & (info == 0)[:, None, None], predicted, torch.inf)
        n_trials = min(max_trials, m * width)
        gains, moves = predicted.flatten(1).topk(n_trials, dim=-1, largest=False)  # [n, trials]
        best_c, best_error = ct.clone(), err.clone()
        accepted = torch.zeros_like(err, dtype=torch.bool)
        for t in range(
            n_trials
        ):  # in order of predicted gain; a token takes its first improving move
            hopeful = ~accepted & (gains[:, t] < -1e-12 * err.abs().clamp_min(1e-300))
            rows = hopeful.nonzero().squeeze(-1)
            if rows.numel() == 0:
                break
            q, p = moves[rows, t] // width, moves[rows, t] % width
            trial = (ct[rows] > 0).scatter(1, slots[rows].gather(1, p.unsqueeze(-1)), False)
            trial = trial.scatter(1, q.unsqueeze(-1), True)
            trial_c = nnls_on_mask(G, beta, trial, width, todo[rows])
            trial_error = gram_error(G, beta, trial_c, half_rr, todo[rows])
            better = trial_error < err[rows] - 1e-12 * err[rows].abs()
            best_c[rows[better]], best_error[rows[better]] = trial_c[better], trial_error[better]
            accepted[rows[better]] = True
        improved = best_error < err
        c[todo], error[todo] = best_c, best_error
        todo = todo[improved]
    return c
