"""The best codes on a given support (pure tensor / scipy math): what a mode's codes would score if only
their coefficients changed. The amortization gap splits at it:

    gap = F(codes) − F(optimum) = [F(codes) − F(best on codes' support)] + [F(best on support) − F(optimum)]
        =        coefficient_gap                  +            support_gap

- ``k_sparse``: NNLS on the support (:func:`~sae_bench_amortization.inference.nnls.refit_on_support`).
- ``l1`` / ``l1_decoder_norm`` (solver units of :class:`~sae_bench_amortization.inference.objectives.Problem`):
  the lasso restricted to the support, min_{c ≥ 0, c = 0 off S} ½‖r − c·D‖² + λΣc, on the support's Gram
  block: exact by a batched active-set search where its optimality (KKT) check passes, else by FISTA
  (adaptive restart) from the codes themselves, kept only where it beats the codes.
Tokens go in groups of similar support size whose gathered rows and Gram blocks stay under 64 MiB;
supports wider than 1,024 latents are not solved (:func:`too_wide`: the callers report the split as
null there).
"""

from __future__ import annotations

import torch

from sae_bench_amortization.inference.dictionary import Dictionary
from sae_bench_amortization.inference.nnls import MAX_GRAM_SUPPORT, _groups, nonneg_quadratic


def lasso_on_support(
    dictionary: Dictionary,
    r: torch.Tensor,
    codes: torch.Tensor,
    lam: float,
    *,
    n_steps: int = 500,
    tol: float = 1e-7,
) -> torch.Tensor:
    """Codes [B, d_sae] minimizing ½‖r − c·D‖² + λΣc over c ≥ 0 on the support of ``codes`` [B, d_sae]
    (zero off it; tokens whose support is wider than 1,024 latents keep ``codes``): exact by the batched
    active-set search of :func:`~sae_bench_amortization.inference.nnls.nonneg_quadratic` where its
    optimality check passes; the tokens it leaves by FISTA from ``codes`` (adaptive restart, step 1/‖G_SS‖),
    stopped after ``n_steps`` or when no coefficient moves by more than ``tol`` of the largest."""
    D = dictionary.D.to(r.dtype)
    codes = dictionary.without_zero_rows(codes.to(r.dtype)).clamp(min=0)
    out = torch.zeros_like(codes)
    sizes = (codes > 0).sum(dim=1)
    order = torch.argsort(sizes)
    sorted_sizes = sizes[order].tolist()
    narrow = sum(size <= MAX_GRAM_SUPPORT for size in sorted_sizes)
    for start, stop in _groups(sorted_sizes[:narrow], D.shape[1] * D.element_size()):
        rows = order[start:stop]
        values, index = torch.topk(codes[rows], int(sizes[order[stop - 1]]), dim=1)
        valid = (values > 0).to(r.dtype)
        atoms = D[index] * valid[..., None]  # [b, K, d_in]
        gram = atoms @ atoms.transpose(1, 2)  # [b, K, K]
        b = (atoms @ r[rows][..., None]).squeeze(-1) - lam * valid  # [b, K]
        initial = values * valid
        c, solved = nonneg_quadratic(gram, b, valid.bool())  # exact where the KKT check passes
        hard = torch.nonzero(~solved).flatten()
        if hard.numel():
            c[hard] = _fista(gram[hard], b[hard], valid[hard], initial[hard], n_steps, tol)
        out[rows] = torch.zeros_like(codes[rows]).scatter_(1, index, c)
    return out


def _fista(
    gram: torch.Tensor,
    b: torch.Tensor,
    valid: torch.Tensor,
    start: torch.Tensor,
    n_steps: int,
    tol: float,
) -> torch.Tensor:
    """min ½cᵀGc − bᵀc over c ≥ 0 (zero where not ``valid``) per token from ``start`` [b, K]: FISTA with
    adaptive restart, step 1/‖G‖ (Gershgorin), never worse than ``start``."""
    step = 1.0 / gram.abs().sum(-1).amax(-1, keepdim=True).clamp_min(1e-12)
    c, y, t = start, start, 1.0
    for i in range(n_steps):
        gradient = torch.bmm(gram, y.unsqueeze(-1)).squeeze(-1) - b
        new = (y - step * gradient).clamp_(min=0) * valid
        t_new = (1 + (1 + 4 * t * t) ** 0.5) / 2
        direction = new - c
        restart = ((y - new) * direction).sum(-1, keepdim=True) > 0
        y = torch.where(restart, new, new + ((t - 1) / t_new) * direction)
        c, t = new, t_new
        if i % 10 == 9 and float(direction.abs().max()) <= tol * max(float(c.abs().max()), 1e-30):
            break
    # FISTA is not monotone
    worse = _quadratic(gram, b, c) > _quadratic(gram, b, start)
    return torch.where(worse.unsqueeze(-1), start, c)


def _quadratic(gram: torch.Tensor, b: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """½cᵀGc − bᵀc per token [b]: the restricted objective up to a constant."""
    return 0.5 * (c * torch.bmm(gram, c.unsqueeze(-1)).squeeze(-1)).sum(-1) - (b * c).sum(-1)


def too_wide(codes: torch.Tensor) -> bool:
    """True when some token's support is wider than 1,024 latents (its restricted fit is not computed)."""
    return bool(((codes > 0).sum(dim=1) > MAX_GRAM_SUPPORT).any())
