"""λ calibration: the sparsity penalty at which the codes of an inference mode have a target mean L0 —
non-amortized codes (the shared λ), or T ISTA/FISTA steps from the encoder's codes (a semi mode's own λ)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from sae_bench_amortization.inference.dictionary import (
    Dictionary,
    dictionary_of,
    sparse_coding_targets,
)
from sae_bench_amortization.inference.solver import lambda_max, mean_l0, solve


@dataclass(frozen=True)
class Calibration:
    l1_coefficient: float  # λ
    target_l0: float
    achieved_l0: float  # the calibrated mode's mean L0 at λ on the calibration tokens
    n_tokens: int
    n_solves: int
    mode: str = "non_amortized"  # whose L0 was matched

    @property
    def relative_error(self) -> float:
        return abs(self.achieved_l0 - self.target_l0) / max(self.target_l0, 1e-12)


def calibrate_lambda(
    dictionary: Dictionary,
    targets: torch.Tensor,
    target_l0: float,
    rel_tol: float = 0.02,
    max_solves: int = 40,
    solve_tol: float = 1e-4,
    codes_at=None,
    mode: str = "non_amortized",
) -> Calibration:
    """Bisect log λ so that the mean L0 of non-amortized codes of targets [N, d_in] is within rel_tol of target_l0.

    Mean L0 falls as λ grows (0 at λ_max = max (r·Dᵀ)). λ is halved from λ_max until the codes are dense
    enough, then log λ is bisected; each solve warm-starts from the sparser codes of a λ above it.
    ``codes_at(λ, warm)`` → codes replaces the non-amortized solve (e.g. T ISTA steps from fixed codes).
    """
    if not target_l0 > 0:
        raise ValueError(f"target L0 must be positive, got {target_l0}")
    high = lambda_max(dictionary, targets)
    if high <= 0:
        raise ValueError(
            "every target is orthogonal to the dictionary's positive cone: no λ gives codes"
        )
    history: list[tuple[float, float]] = []  # (λ, mean L0) of every solve

    def try_lambda(lam: float, warm: torch.Tensor | None) -> tuple[torch.Tensor, float]:
        if codes_at is not None:
            codes = codes_at(lam, warm)
        else:
            codes = solve(dictionary, targets, lam, tol=solve_tol, z0=warm)
        history.append((lam, mean_l0(codes)))
        return codes, history[-1][1]

    def done(l0: float) -> bool:
        return abs(l0 - target_l0) <= rel_tol * target_l0 or len(history) >= max_solves

    lam, warm, low, l0 = high, None, None, math.inf
    if (
        codes_at is not None
    ):  # a few steps from fixed codes can stay dense at λ_max: raise the upper end
        warm, l0 = try_lambda(high, None)
        while l0 > target_l0 and not done(l0):
            low, high = high, high * 4
            warm, l0 = try_lambda(high, None)
        lam = high
    # Bracket from above (sparse solves are cheap; dense ones are not): halve λ until codes are dense enough.
    while low is None and not done(l0):
        lam /= 2
        codes, l0 = try_lambda(lam, warm)
        if done(l0):
            break
        if l0 > target_l0:
            low = lam
        else:
            high, warm = lam, codes
    # Bisect log λ inside [low, high]; warm-start from the sparser end's codes.
    while low is not None and not done(l0):
        lam = math.sqrt(low * high)
        codes, l0 = try_lambda(lam, warm)
        if l0 > target_l0:
            low = lam
        else:
            high, warm = lam, codes
    lam, l0 = min(history, key=lambda item: abs(item[1] - target_l0))
    return Calibration(lam, target_l0, l0, targets.shape[0], len(history), mode)


def calibrate_l1_coefficient(
    sae, activations: torch.Tensor, target_l0: float | str = "encoder"
) -> Calibration:
    """λ at which non-amortized codes of activations [N, d_in] reach target_l0 ("encoder": the SAE's own L0)."""
    with torch.no_grad():
        activations = activations.to(sae.W_dec.device)
        targets = sparse_coding_targets(sae, activations)
        if target_l0 == "encoder":
            target_l0 = float((sae.encode(activations) > 0).sum(-1).double().mean())
        return calibrate_lambda(dictionary_of(sae), targets, float(target_l0))


def calibrate_semi_l1_coefficient(
    sae,
    activations: torch.Tensor,
    n_steps: int,
    method: str = "ista",
    target_l0: float | str = "encoder",
) -> Calibration:
    """λ at which ``n_steps`` ISTA/FISTA steps from the encoder's codes of activations [N, d_in] reach
    target_l0 ("encoder": the SAE's own mean L0) — a semi mode's own λ, density matched per mode."""
    from sae_bench_amortization.inference.solver import ista

    with torch.no_grad():
        activations = activations.to(sae.W_dec.device)
        targets = sparse_coding_targets(sae, activations)
        start = sae.encode(activations)
        if target_l0 == "encoder":
            target_l0 = float((start > 0).sum(-1).double().mean())
        dictionary = dictionary_of(sae)

        def codes_at(lam: float, _warm) -> torch.Tensor:
            return ista(dictionary, targets, lam, start, n_steps, method)

        return calibrate_lambda(
            dictionary, targets, float(target_l0), codes_at=codes_at, mode=f"semi:{n_steps}"
        )
