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
