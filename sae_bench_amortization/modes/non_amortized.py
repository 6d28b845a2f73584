"""``non_amortized``: sparse coding from zero to tolerance on the decoder."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from sae_bench_amortization.inference import Objective
from sae_bench_amortization.modes.kind import InferenceMode, ModeKind

if TYPE_CHECKING:  # annotations only: SAE-Lens loads when the mode is built
    from sae_lens import SAE


@dataclass(frozen=True)
class NonAmortizedSettings:
    """The KKT tolerance, relative to λ (no command-line option; ``InferenceSettings.tol``'s default); the
    problem (``objective``; k for ``k_sparse``, whose codes are the best of several searches from the
    encoder's: an upper bound on its optimum)."""

    tol: float
    objective: Objective
    k: int | None


def build(
    sae: SAE, mode: InferenceMode, l1_coefficient: float | None, settings: NonAmortizedSettings
) -> SAE:
    from sae_bench_amortization.adapters.ista_refined import ISTARefinedSAE  # SAE-Lens loads lazily

    return ISTARefinedSAE.from_sae(
        sae, n_steps=None, init="zero", l1_coefficient=l1_coefficient, tol=settings.tol,
        objective=settings.objective, k=settings.k,
    )  # fmt: skip


KIND = ModeKind(
    name="non_amortized", syntax="non_amortized", pattern=r"non_amortized", rank=2, needs_lambda=True,
    role="optimum", help="sparse coding to tolerance", build=build, settings=NonAmortizedSettings,
)  # fmt: skip
