"""Which sparse-coding problem the less amortized modes solve on an SAE's fixed decoder (pure tensor math).

Per token, with D [d_sae, d_in] the SAE's decoder rows and r [d_in] its sparse-coding target
(:mod:`~sae_bench_amortization.inference.dictionary`):

- ``l1`` (the paper's): min_{z ≥ 0} ½‖r − z·D‖² + λ Σ_j z_j.
- ``l1_decoder_norm``: min_{z ≥ 0} ½‖r − z·D‖² + λ Σ_j ‖d_j‖ z_j — the penalty SAE-Lens's standard SAEs
  are trained with (gated and JumpReLU SAEs weigh by decoder norms too). It is solved as ``l1`` on unit
  rows: with u_j = ‖d_j‖ z_j and D̃ = D's rows divided by their norms, ½‖r − u·D̃‖² + λ Σ_j u_j is the same
  problem, so every solver, λ_max and calibration apply unchanged; codes go back as z_j = u_j / ‖d_j‖.
  A semi:T step on u is ISTA with the weighted soft threshold λ‖d_j‖ and a per-latent step 1/(L̃‖d_j‖²).
  Identical to ``l1`` when every row has unit norm.
- ``k_sparse``: min_{z ≥ 0, ‖z‖₀ ≤ k} ½‖r − z·D‖² (no λ). NP-hard: solvers give upper bounds.

All-zero rows keep a norm of 0 here: they are left out of the coding (code 0), never divided by.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass

import torch

from sae_bench_amortization.inference import Objective
from sae_bench_amortization.inference.dictionary import Dictionary, dictionary_of


@dataclass(frozen=True)
class Problem:
    """One SAE's sparse-coding problem as the solvers see it.

    ``dictionary``: the rows the solvers code with (unit rows for ``l1_decoder_norm``); ``scale`` [d_sae]:
    solver codes = codes × scale (``l1_decoder_norm``: the decoder norms), None when they are the codes.
    """

    objective: Objective
    dictionary: Dictionary
    scale: torch.Tensor | None = None

    def to_solver(self, codes: torch.Tensor) -> torch.Tensor:
        """Codes [B, d_sae] in the solvers' units."""
        return codes if self.scale is None else codes * self.scale.to(codes.dtype)

    def from_solver(self, solved: torch.Tensor) -> torch.Tensor:
        """The solvers' codes [B, d_sae] back in the SAE's units (all-zero rows: 0)."""
        if self.scale is None:
            return solved
        scale = self.scale.to(solved.dtype)
        return torch.where(scale > 0, solved / torch.where(scale > 0, scale, 1), 0)


_PROBLEMS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def problem_of(sae, objective: Objective) -> Problem:
    """The SAE's problem under ``objective``, cached with its :func:`dictionary_of` (rebuilt when the
    decoder changes)."""
    dictionary = dictionary_of(sae)
    if objective != "l1_decoder_norm":
        return Problem(objective, dictionary)
    cached = _PROBLEMS.get(sae)
    if cached is not None and cached[0] is dictionary:
        return cached[1]
    norms = dictionary.D.norm(dim=1)
    unit = dictionary.D / torch.where(norms > 0, norms, 1).unsqueeze(1)
    problem = Problem(objective, Dictionary(unit.contiguous(), dictionary.b_dec), norms)
    _PROBLEMS[sae] = (dictionary, problem)
    return problem


def penalty_weights(D: torch.Tensor, objective: str) -> torch.Tensor | None:
    """The L1 weights w [d_sae] of ``objective`` on rows D (None: all 1, or no penalty for k_sparse)."""
    return D.norm(dim=1) if objective == "l1_decoder_norm" else None


def objective_value(
    D: torch.Tensor,
    r: torch.Tensor,
    z: torch.Tensor,
    lam: float,
    weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """Per token [B] (float64): ½‖r − z·D‖² + λ Σ_j w_j z_j (w = 1 when ``weights`` is None; λ = 0 for
    the k-sparse problem's plain squared error)."""
    residual = (r - z @ D).double()
    penalty = z.double() if weights is None else z.double() * weights.double()
    return 0.5 * (residual * residual).sum(dim=-1) + lam * penalty.sum(dim=-1)


def k_of(sae, activations: torch.Tensor | None) -> int:
    """The k of the k-sparse problem: the SAE's own k (TopK), else its encoder's mean L0 on
    ``activations`` [N, d_in], rounded (at least 1)."""
    own = getattr(sae.cfg, "k", None)
    if own is not None:
        return int(own)
    if activations is None:
        raise ValueError(
            "objective k_sparse on an SAE without its own k needs k or calibration_activations [N, d_in]"
        )
    with torch.no_grad():
        codes = sae.encode(activations.to(sae.W_dec.device, sae.W_dec.dtype))
    return max(1, round(float((codes > 0).sum(-1).double().mean())))
