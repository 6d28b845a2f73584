"""How codes are inferred on an SAE's fixed decoder: amortized, semi-amortized (ISTA/FISTA steps from the
encoder output) and non-amortized (sparse coding to tolerance), plus the λ calibration."""

import math
from typing import Literal

from sae_bench_amortization.errors import InputError

Method = Literal[
    "ista", "fista"
]  # the step of semi:T: the paper's ISTA update, or accelerated (FISTA)
METHODS: tuple[Method, ...] = ("ista", "fista")
Init = Literal[
    "encoder", "zero"
]  # where refinement starts: the encoder's codes (semi), or zero (non)


def check_l1_coefficient(value: float, name: str = "l1_coefficient") -> None:
    """λ must be a non-negative finite number (InputError, a ValueError, naming ``name`` otherwise)."""
    if not (isinstance(value, int | float) and 0 <= value < math.inf):
        raise InputError(f"{name} must be a non-negative finite number, got {value}")


# the sparse-coding problem the less amortized modes solve (inference.objectives has the math)
Objective = Literal["l1", "l1_decoder_norm", "k_sparse"]
L1Objective = Literal["l1", "l1_decoder_norm"]  # the problems with a λ
OBJECTIVES: tuple[Objective, ...] = ("l1", "l1_decoder_norm", "k_sparse")
L1_OBJECTIVES: tuple[L1Objective, ...] = ("l1", "l1_decoder_norm")
ObjectiveChoice = Literal["l1", "l1_decoder_norm", "k_sparse", "auto"]
OBJECTIVE_CHOICES: tuple[ObjectiveChoice, ...] = (*OBJECTIVES, "auto")
# auto: the problem each architecture is trained with (JumpReLU: its L1 surrogate of the L0 penalty;
# BatchTopK SAEs load as JumpReLU); other architectures keep the paper's l1
AUTO_OBJECTIVES: dict[str, Objective] = {
    "topk": "k_sparse",
    "standard": "l1_decoder_norm",
    "gated": "l1_decoder_norm",
    "jumprelu": "l1_decoder_norm",
}


def resolve_objective(choice: ObjectiveChoice, architecture: str) -> Objective:
    """The objective ``choice`` means for an SAE of ``architecture`` (``auto``: :data:`AUTO_OBJECTIVES`)."""
    if choice == "auto":
        return AUTO_OBJECTIVES.get(architecture, "l1")
    return choice
