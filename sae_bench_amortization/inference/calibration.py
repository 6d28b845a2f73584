"""λ calibration: the sparsity penalty at which the codes of an inference mode have a target mean L0 —
non-amortized codes (the shared λ), or T ISTA/FISTA steps from the encoder's codes (a refinement mode's own
λ, asked for by its kind's calibration hook)."""

from __future__ import annotations

import dataclasses
import functools
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import torch

from sae_bench_amortization.errors import InputError
from sae_bench_amortization.inference import L1Objective
from sae_bench_amortization.inference.dictionary import Dictionary, sparse_coding_targets
from sae_bench_amortization.inference.objectives import problem_of
from sae_bench_amortization.inference.solver import ista, lambda_max, mean_l0, solve
from sae_bench_amortization.inference.working_set import gram_fits

if TYPE_CHECKING:  # annotations only
    from sae_lens import SAE

# codes_at(rows, λ, warm start or None, solve tolerance) → codes [rows, d_sae] of those targets
CodesAt = Callable[[slice, float, "torch.Tensor | None", float], torch.Tensor]

NO_CODES = (
    "cannot calibrate λ: on the calibration tokens every x − b_dec is orthogonal to the decoder's positive "
    "cone (e.g. all-zero activations), so no λ gives codes; pass --l1-coefficient X"
)


@dataclass(frozen=True)
class Calibration:
    l1_coefficient: float  # λ
    target_l0: float
    achieved_l0: float  # the calibrated mode's mean L0 at λ on the calibration tokens
    n_tokens: int
    n_solves: int
    mode: str = "non_amortized"  # whose L0 was matched
    seconds: float | None = None  # wall time of the calibration

    @property
    def relative_error(self) -> float:
        return abs(self.achieved_l0 - self.target_l0) / max(self.target_l0, 1e-12)


def _timed(calibrate):
    """Record the calibration's wall time in its result (``Calibration.seconds``)."""

    @functools.wraps(calibrate)
    def timed(*args, **kwargs) -> Calibration:
        start = time.perf_counter()
        calibration = calibrate(*args, **kwargs)
        return dataclasses.replace(calibration, seconds=round(time.perf_counter() - start, 3))

    return timed


@_timed
def calibrate_lambda(
    dictionary: Dictionary,
    targets: torch.Tensor,
    target_l0: float,
    *,
    rel_tol: float = 0.02,
    max_solves: int = 40,
    solve_tol: float = 1e-4,
    codes_at: CodesAt | None = None,
    mode: str = "non_amortized",
    search_tokens: int = 128,
) -> Calibration:
    """λ at which the mean L0 of the codes of targets [N, d_in] is within rel_tol of target_l0.

    ``codes_at(rows, λ, warm, tol)`` → codes of ``targets[rows]`` (default: the non-amortized solve to
    ``tol``; e.g. T ISTA steps from fixed codes for a semi mode, which ignore ``tol``). Mean L0 falls as λ grows.
    Where solves are cheap (the Gram matrix is cached, or N ≤ 2·search_tokens): λ halved from λ_max,
    then log-bisection, every solve on all tokens. Where they are not (wide dictionaries), two stages, so
    that calibrating costs about two solves: λ is searched on the first ``search_tokens`` tokens with a
    loose tolerance (safeguarded secant steps on log L0 against log λ from λ_max/4, warm starts from the
    sparser side), then on all tokens from there (outward steps until bracketed, then secant steps).
    """
    if not target_l0 > 0:
        raise InputError(
            f"cannot calibrate λ: the target mean L0 is {target_l0} (the encoder never fires on the "
            "calibration tokens); pass --l1-coefficient X"
        )
    if codes_at is None:

        def solved(rows: slice, lam: float, warm: torch.Tensor | None, tol: float = solve_tol):
            return solve(dictionary, targets[rows], lam, tol=tol, z0=warm)

        codes_at = solved

    n = targets.shape[0]
    cheap = n <= 2 * search_tokens or gram_fits(dictionary.D.shape[0], targets.dtype)
    if cheap:  # few tokens, or the Gram matrix is cached: solves are cheap
        return _bracket_and_bisect(
            dictionary, targets, target_l0, rel_tol=rel_tol, max_solves=max_solves,
            codes_at=lambda lam, warm: codes_at(slice(0, n), lam, warm, solve_tol), mode=mode,
        )  # fmt: skip
    search_rows = slice(0, search_tokens)
    high = lambda_max(dictionary, targets[search_rows])
    if high <= 0:
        raise InputError(NO_CODES)
    # searching needs no exact codes; half the tolerance on L0, so that all tokens land within it
    searched = _search(
        lambda lam, warm: codes_at(search_rows, lam, warm, max(solve_tol, 1e-2)), target_l0,
        rel_tol / 2, max_solves, start=high / 4, outward=(2.0, 4.0),
    )  # fmt: skip
    start, _ = min(searched, key=lambda item: abs(item[1] - target_l0))
    history = _search(  # all tokens: outward steps from there until bracketed, then secant steps
        lambda lam, warm: codes_at(slice(0, n), lam, warm, solve_tol), target_l0, rel_tol,
        max_solves, start=start, outward=(2.0, 2.0),
    )  # fmt: skip
    lam, l0 = min(history, key=lambda item: abs(item[1] - target_l0))
    n_solves = len(searched) + len(history)
    return Calibration(lam, target_l0, l0, n, n_solves, mode)


def _search(
    codes_at: Callable[[float, torch.Tensor | None], torch.Tensor], target_l0: float, rel_tol: float,
    max_solves: int, *, start: float, outward: tuple[float, float], warm_starts: bool = True,
) -> list[tuple[float, float]]:  # fmt: skip
    """[(λ, mean L0)] of safeguarded secant steps on log L0 against log λ from ``start``: outward (λ
    divided by ``outward[0]`` towards denser codes, multiplied by ``outward[1]`` towards sparser ones)
    until the target is bracketed, then regula falsi in log-log inside the bracket; warm starts from the
    sparser side (``warm_starts``: where L0 must not depend on the path, e.g. the final solves, none).
    Stops within rel_tol of target_l0 or after ``max_solves``."""
    history: list[tuple[float, float]] = []
    sparse_side: tuple[float, float] | None = None  # (λ, L0 ≤ target)
    dense_side: tuple[float, float] | None = None  # (λ, L0 > target)
    warm, lam = None, start
    while len(history) < max_solves:
        codes = codes_at(lam, warm)
        l0 = mean_l0(codes)
        history.append((lam, l0))
        if abs(l0 - target_l0) <= rel_tol * target_l0:
            break
        if l0 > target_l0:
            dense_side = (lam, l0)
        else:
            sparse_side = (lam, l0)
            warm = codes if warm_starts else None  # warm starts from the sparser side
        lam = _next_lambda(sparse_side, dense_side, target_l0, lam, outward)
    return history


def _next_lambda(sparse_side, dense_side, target_l0: float, lam: float, outward) -> float:
    """The next λ to try: outward until bracketed, then the log-log secant inside the bracket (kept away
    from its ends), log-bisection when a side has L0 = 0."""
    if dense_side is None:  # towards denser codes (gently: dense solves are the expensive ones)
        return lam / outward[0]
    if sparse_side is None:
        return lam * outward[1]
    (lam_s, l0_s), (lam_d, l0_d) = sparse_side, dense_side
    log_lo, log_hi = math.log(lam_d), math.log(lam_s)
    if l0_s <= 0:
        return math.exp((log_lo + log_hi) / 2)
    fraction = math.log(l0_d / target_l0) / math.log(l0_d / l0_s)
    fraction = min(max(fraction, 0.1), 0.9)  # safeguard: stay inside the bracket
    return math.exp(log_lo + fraction * (log_hi - log_lo))


def _bracket_and_bisect(
    dictionary: Dictionary, targets: torch.Tensor, target_l0: float, *, rel_tol: float,
    max_solves: int, codes_at: Callable[[float, torch.Tensor | None], torch.Tensor], mode: str,
) -> Calibration:  # fmt: skip
    """Bisect log λ so that the mean L0 of the codes of targets [N, d_in] is within rel_tol of target_l0
    (the one-stage search used where solves are cheap: every solve on all tokens).

    Mean L0 falls as λ grows (0 at λ_max = max (r·Dᵀ)). λ is halved from λ_max until the codes are dense
    enough, then log λ is bisected; each solve warm-starts from the sparser codes of a λ above it.
    ``codes_at(λ, warm)`` → codes of all targets.
    """
    if not target_l0 > 0:
        raise InputError(
            f"cannot calibrate λ: the target mean L0 is {target_l0} (the encoder never fires on the "
            "calibration tokens); pass --l1-coefficient X"
        )
    high = lambda_max(dictionary, targets)
    if high <= 0:
        raise InputError(NO_CODES)
    history: list[tuple[float, float]] = []  # (λ, mean L0) of every solve

    def try_lambda(lam: float, warm: torch.Tensor | None) -> tuple[torch.Tensor, float]:
        codes = codes_at(lam, warm)
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
    sae: SAE,
    activations: torch.Tensor,
    target_l0: float | Literal["encoder"] = "encoder",
    *,
    objective: L1Objective = "l1",
) -> Calibration:
    """λ at which non-amortized codes of activations [N, d_in] reach target_l0 ("encoder": the SAE's own
    L0) under ``objective`` (``l1`` or ``l1_decoder_norm``; the L0 of the codes is the L0 of the solvers'
    rescaled codes)."""
    with torch.no_grad():
        activations = activations.to(sae.W_dec.device)
        targets = sparse_coding_targets(sae, activations)
        if target_l0 == "encoder":
            target_l0 = float((sae.encode(activations) > 0).sum(-1).double().mean())
        return calibrate_lambda(problem_of(sae, objective).dictionary, targets, float(target_l0))


def calibrate_steps_l1_coefficient(
    sae: SAE,
    activations: torch.Tensor,
    n_steps: int,
    method: Literal["ista", "fista"] = "ista",
    target_l0: float | Literal["encoder"] = "encoder",
    *,
    label: str,
    objective: L1Objective = "l1",
) -> Calibration:
    """λ at which ``n_steps`` ISTA/FISTA steps from the encoder's codes of activations [N, d_in] reach
    target_l0 ("encoder": the SAE's own mean L0) — a refinement mode's own λ, density matched per mode;
    ``label``: the mode's name, recorded as whose L0 was matched."""
    with torch.no_grad():
        activations = activations.to(sae.W_dec.device)
        targets = sparse_coding_targets(sae, activations)
        codes = sae.encode(activations)
        if target_l0 == "encoder":
            target_l0 = float((codes > 0).sum(-1).double().mean())
        problem = problem_of(sae, objective)
        dictionary, start = problem.dictionary, problem.to_solver(codes)

        def codes_at(rows: slice, lam: float, _warm: object, _tol: float) -> torch.Tensor:
            return ista(dictionary, targets[rows], lam, start[rows], n_steps, method=method)

        return calibrate_lambda(
            dictionary, targets, float(target_l0), codes_at=codes_at, mode=label
        )
