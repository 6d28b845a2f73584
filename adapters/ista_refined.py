"""``ISTARefinedSAE``: any SAE-Lens SAE whose codes are refined by sparse coding on its own decoder.

``init="encoder"`` starts from the SAE's own codes and runs ``n_steps`` ISTA/FISTA steps
(semi-amortized); ``init="zero"`` starts from zero (non-amortized; ``n_steps=None`` solves to tolerance).
``objective`` picks the problem (:mod:`~sae_bench_amortization.inference.objectives`): ``l1`` (the
paper's), ``l1_decoder_norm`` (the L1 penalty weighted by decoder-row norm), or ``k_sparse`` (at most k
actives, no λ: ``n_steps`` IHT steps from the encoder's codes, or with ``n_steps=None`` the best of
several searches from them — an upper bound on the NP-hard optimum; the encoder's codes are always the
start, whatever ``init``).
Latents whose decoder row is all zero are left out of the sparse coding (always 0 when solved to tolerance;
:mod:`~sae_bench_amortization.inference.dictionary`), and decoding never divides by their norm of 0.
``decode`` is the base SAE's decoder, so ``forward(x) = decode(encode(x))``. It is an SAE-Lens ``SAE``
(architecture ``"ista_refined"``): HookedSAETransformer, SAEBench and ``save_model`` /
``SAE.load_from_disk`` take it like any other.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from sae_lens import SAE
from sae_lens.saes.sae import SAEConfig

from sae_bench_amortization.adapters._base import inherited_cfg_fields
from sae_bench_amortization.inference import (
    OBJECTIVES,
    Init,
    Method,
    Objective,
    check_l1_coefficient,
)
from sae_bench_amortization.inference.calibration import (
    calibrate_l1_coefficient,
)
from sae_bench_amortization.inference.dictionary import decode, sparse_coding_targets
from sae_bench_amortization.inference.k_sparse import best_k_sparse, iht
from sae_bench_amortization.inference.objectives import k_of, problem_of
from sae_bench_amortization.inference.solver import ista, map_chunks, solve

BASE_ARCHITECTURES = (
    "standard",
    "topk",
    "jumprelu",
    "gated",
    "loca",
)  # BatchTopK loads as jumprelu


@dataclass
class ISTARefinedSAEConfig(SAEConfig):
    """The base SAE's config (``base_cfg``, a ``cfg.to_dict()``) plus the refinement settings."""

    base_cfg: dict[str, Any] = field(default_factory=dict)
    n_steps: int | None = 5  # None: to tolerance
    init: Init = "encoder"  # "encoder" (semi-amortized) or "zero" (non-amortized)
    l1_coefficient: float = 0.0  # λ
    method: Method = "ista"  # "ista" (the paper's update) or "fista"
    tol: float | None = None
    keep_top_k: bool = False  # TopK bases: keep at most k actives per token after each step
    objective: Objective = "l1"  # the problem solved: l1 (the paper's), l1_decoder_norm, k_sparse
    k: int | None = None  # k_sparse: the budget of actives per token
    chunk_size: int = 4096
    calibration: dict[str, Any] | None = None  # how λ was found, when calibrated

    @classmethod
    def architecture(cls) -> str:
        return "ista_refined"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.init not in ("encoder", "zero"):
            raise ValueError(f"init must be 'encoder' or 'zero', got {self.init!r}")
        if self.method not in ("ista", "fista"):
            raise ValueError(f"method must be 'ista' or 'fista', got {self.method!r}")
        if self.n_steps is not None and self.n_steps < 0:
            raise ValueError(f"n_steps must be >= 0 or None, got {self.n_steps}")
        check_l1_coefficient(self.l1_coefficient)
        if self.objective not in OBJECTIVES:
            raise ValueError(
                f"objective must be one of {', '.join(OBJECTIVES)}, got {self.objective!r}"
            )
        if self.objective == "k_sparse" and (self.k is None or self.k < 1):
            raise ValueError(f"objective k_sparse needs k >= 1, got {self.k}")


class ISTARefinedSAE(SAE[ISTARefinedSAEConfig]):
    """An SAE-Lens SAE whose ``encode`` refines (or replaces) the base encoder by sparse coding."""

    base: SAE

    # from_sae: the SAE to wrap (no placeholder weights are allocated)
    _base_given: SAE | None = None

    def initialize_weights(self) -> None:
        given = type(self)._base_given
        if given is not None:
            self.base = given
            return
        base_cfg = {**self.cfg.base_cfg, "device": str(self.cfg.device), "dtype": self.cfg.dtype}
        self.base = SAE.from_dict(base_cfg)

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            base = self.__dict__.get("_modules", {}).get("base")
            if base is None or name.startswith("_"):
                raise
            return getattr(base, name)  # W_enc, b_enc, W_dec, b_dec, threshold, ...

    # ------------------------------------------------------------------------------ construction

    @classmethod
    def from_sae(
        cls,
        sae: SAE,
        *,
        n_steps: int | None = 5,
        init: Init = "encoder",
        l1_coefficient: float | None = None,
        target_l0: float | None = None,
        calibration_activations: torch.Tensor | None = None,
        method: Method = "ista",
        tol: float | None = None,
        keep_top_k: bool = False,
        chunk_size: int = 4096,
        objective: Objective = "l1",
        k: int | None = None,
    ) -> ISTARefinedSAE:
        """Wrap ``sae`` (its weights are shared, not copied).

        ``l1`` / ``l1_decoder_norm``: exactly one of ``l1_coefficient`` (λ) and ``target_l0`` is given.
        With ``target_l0``, λ is found by bisection so that non-amortized codes of
        ``calibration_activations`` [N, d_in] have that mean L0 within 2%; ``target_l0="encoder"`` uses the
        SAE encoder's own mean L0 on those activations. ``k_sparse``: no λ; ``k`` defaults to the SAE's own
        k (TopK), else to its encoder's mean L0 on ``calibration_activations``, rounded.
        """
        if objective not in OBJECTIVES:
            raise ValueError(f"objective must be one of {', '.join(OBJECTIVES)}, got {objective!r}")
        if objective == "k_sparse":
            if l1_coefficient or target_l0 is not None:
                raise ValueError(
                    "objective k_sparse has no λ: give neither l1_coefficient nor target_l0"
                )
            l1_coefficient = 0.0
            k = k if k is not None else k_of(sae, calibration_activations)
        elif (l1_coefficient is None) == (target_l0 is None):
            raise ValueError("give exactly one of l1_coefficient and target_l0")
        architecture = sae.cfg.architecture()
        if architecture not in BASE_ARCHITECTURES:
            raise ValueError(
                f"base architecture {architecture!r} is not supported ({', '.join(BASE_ARCHITECTURES)})"
            )
        if keep_top_k and architecture != "topk":
            raise ValueError("keep_top_k needs a TopK base SAE")
        calibration = None
        if target_l0 is not None and objective != "k_sparse":  # k_sparse refused λ above
            if calibration_activations is None:
                raise ValueError("target_l0 needs calibration_activations [N, d_in]")
            calibration = calibrate_l1_coefficient(
                sae, calibration_activations, target_l0, objective=objective
            )
            l1_coefficient = calibration.l1_coefficient
        assert l1_coefficient is not None  # given, or calibrated above
        cfg = ISTARefinedSAEConfig(
            **inherited_cfg_fields(sae),
            base_cfg=sae.cfg.to_dict(),
            n_steps=n_steps,
            init=init,
            l1_coefficient=float(l1_coefficient),
            method=method,
            tol=tol,
            keep_top_k=keep_top_k,
            chunk_size=chunk_size,
            objective=objective,
            k=k,
            calibration=None if calibration is None else calibration.__dict__,
        )
        cls._base_given = sae  # share the base SAE itself (weights, hooks, normalization state)
        try:
            return cls(cfg)
        finally:
            cls._base_given = None

    # --------------------------------------------------------------------------------- inference

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Refined codes [..., d_sae] for inputs [..., d_in]."""
        base = self.base
        shape = x.shape
        flat = x.reshape(-1, shape[-1])
        targets = sparse_coding_targets(base, flat)
        from_encoder = self.cfg.init == "encoder" or self.cfg.objective == "k_sparse"
        start = base.encode(flat) if from_encoder else None
        codes = self.refine(targets, start)
        return self.hook_sae_acts_post(codes.reshape(*shape[:-1], -1))

    def refine(self, targets: torch.Tensor, start: torch.Tensor | None) -> torch.Tensor:
        """Codes [B, d_sae] from sparse-coding targets [B, d_in] and a start (None: zero), in chunks."""
        cfg = self.cfg
        problem = problem_of(self.base, cfg.objective)
        dictionary = problem.dictionary
        top_k = int(self.base.cfg.k) if cfg.keep_top_k else None
        n_steps = cfg.n_steps
        with torch.no_grad():
            if cfg.objective == "k_sparse":
                k = int(cfg.k or 0)
                if start is None:
                    raise ValueError("k_sparse refines the encoder's codes: give a start")
                if n_steps is None:  # the best of several searches

                    def step(r, z0):
                        return best_k_sparse(dictionary, r, z0, k)
                else:

                    def step(r, z0):
                        return iht(dictionary, r, z0, k, n_steps)

                return map_chunks(step, cfg.chunk_size, targets, start)
            if n_steps is None:  # to tolerance

                def step(r, z0):
                    return solve(dictionary, r, cfg.l1_coefficient, tol=cfg.tol or 1e-4, z0=z0)
            else:

                def step(r, z0):
                    return ista(
                        dictionary,
                        r,
                        cfg.l1_coefficient,
                        z0,
                        n_steps,
                        method=cfg.method,
                        tol=cfg.tol,
                        top_k=top_k,
                    )

            solver_start = None if start is None else problem.to_solver(start)
            return problem.from_solver(map_chunks(step, cfg.chunk_size, targets, solver_start))

    def decode(self, feature_acts: torch.Tensor) -> torch.Tensor:
        return self.hook_sae_recons(decode(self.base, feature_acts))  # all-zero rows: no NaN

    def process_state_dict_for_loading(self, state_dict: dict[str, Any]) -> None:
        if not any(key.startswith("base.") for key in state_dict):  # a bare base state dict
            for key in list(state_dict):
                state_dict[f"base.{key}"] = state_dict.pop(key)
