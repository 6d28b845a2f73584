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
        solved = _nnls_on_gram(gram, rhs, valid)
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


def _nnls_on_gram(gram: torch.Tensor, rhs: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """argmin_{c ≥ 0} cᵀGc − 2cᵀb per token (G [b, K, K], b [b, K]; padded entries fixed at 0)."""
    K = gram.shape[-1]
    eye = torch.eye(K, dtype=gram.dtype, device=gram.device)
    scale = gram.diagonal(dim1=1, dim2=2).amax(dim=1).clamp_min(1e-300)[:, None, None]
    # padded coordinates get a unit diagonal and zero right-hand side: their solution is 0
    system = (
        torch.where(valid[:, :, None] & valid[:, None, :], gram, 0.0) + eye * (~valid)[:, None, :]
    )
    ridged = (
        system + 1e-12 * scale * eye
    )  # collinear atoms: a vanishing ridge keeps Cholesky defined
    factor, info = torch.linalg.cholesky_ex(ridged)
    solution = torch.cholesky_solve(rhs[..., None], factor).squeeze(-1)
    exact = (info == 0) & ((solution >= 0) | ~valid).all(dim=1)
    result = torch.where(exact[:, None], solution, 0.0).clamp_min(0)
    for i in torch.nonzero(~exact).flatten().tolist():
        result[i] = _nnls_one(system[i], rhs[i], valid[i])
    return result


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
