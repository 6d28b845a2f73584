"""``semi:T``: T ISTA/FISTA steps on the decoder, from the encoder's codes (semi-amortized inference).
Its λ can be its own: the λ at which its T steps match the encoder's mean L0 (``--lambda-calibration
per_mode``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from sae_bench_amortization.inference import L1Objective, Objective
from sae_bench_amortization.modes.kind import InferenceMode, ModeKind, ModeOption

if TYPE_CHECKING:  # annotations only: torch and SAE-Lens load when the mode is built
    import torch
    from sae_lens import SAE

    from sae_bench_amortization.inference.calibration import Calibration


@dataclass(frozen=True)
class SemiSettings:
    """The step: ISTA (the paper's update) or FISTA; the problem (``objective``, k for ``k_sparse``: IHT
    steps). No defaults here: they are ``InferenceSettings``'s."""

    method: Literal["ista", "fista"]
    objective: Objective
    k: int | None


def _steps(mode: InferenceMode) -> int:
    if mode.n_steps is None:
        raise ValueError(f"{mode.name} has no step count")
    return mode.n_steps


def build(
    sae: SAE, mode: InferenceMode, l1_coefficient: float | None, settings: SemiSettings
) -> SAE:
    from sae_bench_amortization.adapters.ista_refined import ISTARefinedSAE  # SAE-Lens loads lazily

    return ISTARefinedSAE.from_sae(
        sae,
        n_steps=_steps(mode),
        init="encoder",
        l1_coefficient=l1_coefficient,
        method=settings.method,
        objective=settings.objective,
        k=settings.k,
    )


def calibrate(
    sae: SAE, tokens: torch.Tensor, mode: InferenceMode, settings: SemiSettings
) -> Calibration:
    """λ at which the mode's T steps from the encoder's codes of tokens [N, d_in] reach its mean L0."""
    if settings.objective == "k_sparse":
        raise ValueError("k_sparse has no λ to calibrate")
    return calibrate_semi_l1_coefficient(
        sae, tokens, _steps(mode), settings.method, objective=settings.objective
    )


def calibrate_semi_l1_coefficient(
    sae: SAE,
    activations: torch.Tensor,
    n_steps: int,
    method: Literal["ista", "fista"] = "ista",
    target_l0: float | Literal["encoder"] = "encoder",
    *,
    objective: L1Objective = "l1",
) -> Calibration:
    """λ at which ``n_steps`` ISTA/FISTA steps from the encoder's codes of activations [N, d_in] reach
    target_l0 ("encoder": the SAE's own mean L0) — a semi mode's own λ, density matched per mode."""
    # here: `saebench run --help` reads the kinds without loading torch
    from sae_bench_amortization.inference.calibration import calibrate_steps_l1_coefficient

    return calibrate_steps_l1_coefficient(
        sae, activations, n_steps, method, target_l0, label=KIND.written(n_steps),
        objective=objective,
    )  # fmt: skip


KIND = ModeKind(
    name="semi", syntax="semi:T", pattern=r"semi:(\d{1,6})", rank=1, needs_lambda=True,
    role="refinement", help="T ISTA steps (--solver fista: FISTA; --objective k_sparse: IHT) from the encoder's codes", build=build,
    calibrate=calibrate, settings=SemiSettings,
    options=(ModeOption("--solver", "steps of semi:T: ista (the paper's update; default) or fista",
                        field="method", choices=("ista", "fista")),),
)  # fmt: skip
