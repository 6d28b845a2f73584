"""How codes are inferred on an SAE's fixed decoder: amortized, semi-amortized (ISTA/FISTA steps from the
encoder output) and non-amortized (sparse coding to tolerance), plus the λ calibration."""

import math

from sae_bench_amortization.errors import InputError


def check_l1_coefficient(value: float, name: str = "l1_coefficient") -> None:
    """λ must be a non-negative finite number (InputError, a ValueError, naming ``name`` otherwise)."""
    if not (isinstance(value, int | float) and 0 <= value < math.inf):
        raise InputError(f"{name} must be a non-negative finite number, got {value}")
