"""Non-negative least squares on each token's own support (pure tensor / scipy math).

Per token with support S = {j : z_j > 0}:  c* = argmin_{c ≥ 0} ‖r − c·D_S‖²,  D_S [|S|, d_in] the rows of
S. Solved on the |S| × |S| Gram matrix: the unconstrained least-squares solution (batched Cholesky) is the
answer wherever it is non-negative; the other tokens go to scipy's exact NNLS (Lawson–Hanson) on a square
root of the Gram matrix. Tokens are taken in groups of similar support size (little padding) whose gathered
atoms and Gram matrices stay under 64 MiB, so memory does not grow with the chunk; a support wider than
1,024 latents is solved by NNLS on its atoms directly, never as a K × K matrix. Latents whose row is all
zero are dropped from every support (their refitted code is 0).
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.optimize import nnls

GATHER_BYTES = 64 * 2**20
MAX_GRAM_SUPPORT = 1024  # wider supports are solved on their atoms, not on a K × K Gram matrix


def refit_on_support(D: torch.Tensor, targets: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
    """Refitted codes [B, d_sae] (zero off each token's support) for D [d_sae, d_in], targets [B, d_in]
    and codes [B, d_sae] on one device."""
    D, targets, codes = D.detach(), targets.detach(), codes.detach()
    zero_rows = ~D.any(dim=1)
    if bool(zero_rows.any()):  # all-zero atoms explain nothing: off every support
        codes = codes.masked_fill(zero_rows, 0)
    refit = torch.zeros_like(codes)
    sizes = (codes > 0).sum(dim=1)
    order = torch.argsort(sizes)  # tokens of similar support size together: little padding
    sorted_sizes = sizes[order].tolist()
    narrow = sum(size <= MAX_GRAM_SUPPORT for size in sorted_sizes)
    for row in order[
        narrow:
    ].tolist():  # huge supports: NNLS on the atoms themselves, token by token
        support = torch.nonzero(codes[row] > 0).flatten()
        refit[row, support] = _nnls_on_atoms(D[support], targets[row]).to(codes.dtype)
    for start, stop in _groups(sorted_sizes[:narrow], D.shape[1] * D.element_size()):
        rows = order[start:stop]
        # the support's latents first, padded with off-support latents (masked out)
        values, index = torch.topk(codes[rows], int(sizes[order[stop - 1]]), dim=1)
        valid = values > 0
        atoms = D[index] * valid[..., None].to(D.dtype)  # [b, K, d_in] in D's dtype
        gram = (atoms @ atoms.transpose(1, 2)).to(torch.float64)  # [b, K, K]
        rhs = (atoms @ targets[rows].to(D.dtype)[..., None]).squeeze(-1).to(torch.float64)  # [b, K]
        solved = nnls_on_gram(gram, rhs, valid)
        refit[rows] = torch.zeros_like(codes[rows]).scatter_(
            1, index, solved.to(codes.dtype) * valid
        )
    return refit


def _nnls_on_atoms(atoms: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """argmin_{c ≥ 0} ‖target − c·atoms‖ for one token with atoms [K, d_in] (no K × K matrix)."""
    A = atoms.to(torch.float64).T.cpu().numpy()
    c, _ = nnls(A, target.to(torch.float64).cpu().numpy(), maxiter=50 * A.shape[1])
    return torch.as_tensor(c, device=atoms.device)


def _groups(sorted_sizes: list[int], atom_bytes: int) -> list[tuple[int, int]]:
    """[start, stop) groups of tokens sorted by support size, empty supports left out: a group grows while
    its gathered atoms [b, K, d_in] and Gram matrices [b, K, K] fit :data:`GATHER_BYTES` and its widest
    support is at most twice its narrowest (or 8), so padding stays small."""
    groups, start = (
        [],
        next((i for i, size in enumerate(sorted_sizes) if size > 0), len(sorted_sizes)),
    )
    while start < len(sorted_sizes):
        stop, low = start + 1, sorted_sizes[start]
        while (
            stop < len(sorted_sizes)
            and sorted_sizes[stop] <= max(2 * low, 8)
            and (stop - start + 1) * sorted_sizes[stop] * max(atom_bytes, 8 * sorted_sizes[stop])
            <= GATHER_BYTES
        ):
            stop += 1
        groups.append((start, stop))
        start = stop
    return groups


def nnls_on_gram(gram: torch.Tensor, rhs: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """argmin_{c ≥ 0} ½cᵀGc − cᵀb per token (G [b, K, K], b [b, K]; entries not ``valid`` fixed at 0):
    :func:`nonneg_quadratic`, then scipy's exact NNLS for the tokens it leaves. With G = D_S D_Sᵀ and
    b = D_S r, the NNLS fit of r on the atoms D_S."""
    result, solved = nonneg_quadratic(gram, rhs, valid)
    for i in torch.nonzero(~solved).flatten().tolist():
        system = torch.where(valid[i, :, None] & valid[i, None, :], gram[i], 0.0)
        result[i] = _nnls_one(system, rhs[i], valid[i])
    return result


def nonneg_quadratic(
    gram: torch.Tensor, b: torch.Tensor, valid: torch.Tensor, *, rounds: int = 8
) -> tuple[torch.Tensor, torch.Tensor]:
    """argmin_{c ≥ 0} ½cᵀGc − bᵀc per token on its valid coordinates (G [n, K, K], b [n, K], valid [n, K]
    bool; c = 0 off valid), batched: solve on a free set by Cholesky (float64), free set = the valid
    coordinates at first; a coordinate that comes out negative leaves it, and when none does, the coordinate
    whose gradient most wants in joins it. A token counts as solved only when its codes pass the optimality
    (KKT) conditions: c ≥ 0, gradient Gc − b zero on the free set and ≥ 0 on the other valid coordinates
    (to 1e-9 of the problem's scale). Returns (c [n, K] in G's dtype, solved [n] bool); an unsolved
    token's c is 0 (for an exact method)."""
    dtype = gram.dtype
    G, b = gram.to(torch.float64), b.to(torch.float64)
    n, K = b.shape
    both = valid[:, :, None] & valid[:, None, :]
    if not bool(both.all()):
        G = G.masked_fill(~both, 0.0)
    b = b.masked_fill(~valid, 0.0)
    largest = G.diagonal(dim1=1, dim2=2).amax(dim=1).clamp_min(1e-300)  # [n]: the problem's scale
    out = torch.zeros_like(b)
    solved = torch.zeros(n, dtype=torch.bool, device=b.device)
    free = valid.clone()
    todo = torch.arange(n, device=b.device)
    for round_ in range(rounds):
        if todo.numel() == 0:
            break
        every = round_ == 0  # all tokens, free = valid: nothing to gather or mask
        g, rhs, f = (G, b, free) if every else (G[todo], b[todo], free[todo])
        # the free coordinates' system (G is zero outside valid), 1 on the other diagonal entries (zero
        # right-hand side: their solution is 0), plus a vanishing ridge (collinear atoms)
        system = g.clone() if every else g.masked_fill(~(f[:, :, None] & f[:, None, :]), 0.0)
        system.diagonal(dim1=1, dim2=2).add_((~f).to(system.dtype) + 1e-12 * largest[todo, None])
        factor, info = torch.linalg.cholesky_ex(system)
        half = torch.linalg.solve_triangular(
            factor, rhs.masked_fill(~f, 0.0)[..., None], upper=False
        )
        c = torch.linalg.solve_triangular(factor.mT, half, upper=True).squeeze(-1)
        gradient = torch.bmm(g, c[..., None]).squeeze(-1) - rhs
        scale = 1e-9 * (rhs.abs().amax(dim=1) + largest[todo] * c.abs().amax(dim=1))[:, None]
        negative = f & (c < 0)
        wants_in = valid[todo] & ~f & (gradient < -scale)
        stationary = (~f | (gradient.abs() <= scale)).all(dim=1)
        done = (info == 0) & ~negative.any(dim=1) & ~wants_in.any(dim=1) & stationary
        out[todo[done]] = c[done]
        solved[todo[done]] = True
        # the others: drop the negative coordinates, or else let the most wanting one in
        drop = negative.any(dim=1)
        entering = torch.where(wants_in, gradient, torch.inf).argmin(dim=1)
        f = torch.where(drop[:, None], f & ~negative, f)
        add = ~drop & wants_in.any(dim=1)
        f[add, entering[add]] = True
        free[todo] = f
        keep = (
            ~done & (info == 0) & (drop | add)
        )  # failed factorizations and stalls: for the exact method
        todo = todo[keep]
    return out.clamp_min(0).to(dtype), solved


def _nnls_one(gram: torch.Tensor, rhs: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Exact NNLS for one token on its valid coordinates: min ‖Rc − R⁻ᵀb‖ with G = RᵀR (eigen-factor,
    so that a singular G is fine)."""
    keep = valid.cpu().numpy()
    G = gram.cpu().numpy()[np.ix_(keep, keep)]
    b = rhs.cpu().numpy()[keep]
    values, vectors = np.linalg.eigh(G)
    values = np.clip(values, 0.0, None)
    root = np.sqrt(values)
    R = root[:, None] * vectors.T  # G = RᵀR
    inverse = np.where(root > root.max() * 1e-12, 1.0 / np.where(root > 0, root, 1.0), 0.0)
    y = inverse * (vectors.T @ b)  # R⁻ᵀb on the range of G
    c, _ = nnls(R, y, maxiter=50 * len(b))
    out = torch.zeros(gram.shape[0], dtype=gram.dtype)
    out[torch.as_tensor(keep)] = torch.as_tensor(c, dtype=gram.dtype)
    return out.to(gram.device)
