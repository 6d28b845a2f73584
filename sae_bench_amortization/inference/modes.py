"""Inference modes on one decoder, as the CLI names them: ``amortized``, ``semi:T``, ``non_amortized``."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import torch

from sae_bench_amortization.errors import InputError, suggest

MODE_NAMES = ("amortized", "semi:T", "non_amortized")


@dataclass(frozen=True)
class InferenceMode:
    """amortized: the SAE's encoder; semi:T: T ISTA/FISTA steps from its codes; non_amortized: from zero to tolerance."""

    name: str  # as written: "amortized", "semi:5", "non_amortized"
    n_steps: int | None = None  # semi:T → T

    @property
    def kind(self) -> str:
        return self.name.split(":")[0]

    @property
    def file_tag(self) -> str:
        """The mode in a file name: ':' written as '-'."""
        return self.name.replace(":", "-")


AMORTIZED = InferenceMode("amortized")


def parse_mode(text: str) -> InferenceMode:
    """'amortized' | 'semi:T' (T ≥ 0 integer) | 'non_amortized'; anything else is an InputError."""
    if not isinstance(text, str):
        raise InputError(f"inference mode must be a string, got {text!r}")
    if text in ("amortized", "non_amortized"):
        return InferenceMode(text)
    match = re.fullmatch(r"semi:(.*)", text)
    if match:
        steps = match.group(1)
        if not re.fullmatch(r"\d{1,6}", steps):
            raise InputError(
                f"inference mode '{text}': T in semi:T must be a non-negative integer, got '{steps}'"
            )
        return InferenceMode(f"semi:{int(steps)}", int(steps))
    raise InputError(
        f"unknown inference mode '{text}'{suggest(text, ['amortized', 'non_amortized', 'semi:5'])}; "
        f"choose from {', '.join(MODE_NAMES)}"
    )


def parse_modes(texts: list[str] | None) -> list[InferenceMode]:
    modes = [parse_mode(t) for t in (texts or ["amortized"])]
    return list(dict.fromkeys(modes))


def result_sae_id(sae_id: str, mode: InferenceMode, modes: list[InferenceMode]) -> str:
    """sae_id for a mode's result file: unchanged for amortized alone, else ``<sae_id>__<mode>``."""
    if modes == [AMORTIZED]:
        return sae_id
    return f"{sae_id}__{mode.file_tag}"


@dataclass
class InferenceSettings:
    """Which modes to run and how λ is chosen (given, or calibrated to the amortized L0 per SAE)."""

    modes: list[InferenceMode] = field(default_factory=lambda: [AMORTIZED])
    l1_coefficient: float | None = None
    method: str = "fista"
    tol: float = 1e-4  # non_amortized: KKT tolerance, relative to λ
    calibration_tokens: int = 4096
    modes_given: bool = (
        False  # False: the user named no mode, so an eval may use its own default modes
    )

    def __post_init__(self) -> None:
        if self.l1_coefficient is not None and not (
            self.l1_coefficient >= 0 and self.l1_coefficient < float("inf")
        ):
            raise InputError(
                f"--l1-coefficient must be a non-negative number, got {self.l1_coefficient}"
            )

    @property
    def needs_lambda(self) -> bool:
        return any(mode != AMORTIZED for mode in self.modes)


def mode_sae(sae, mode: InferenceMode, l1_coefficient: float | None, settings: InferenceSettings):
    """The SAE whose ``encode`` implements ``mode`` on ``sae``'s decoder."""
    if mode == AMORTIZED:
        return sae
    from sae_bench_amortization.adapters import ISTARefinedSAE

    if mode.kind == "semi":
        return ISTARefinedSAE.from_sae(
            sae,
            n_steps=mode.n_steps,
            init="encoder",
            l1_coefficient=l1_coefficient,
            method=settings.method,
        )
    return ISTARefinedSAE.from_sae(
        sae, n_steps=None, init="zero", l1_coefficient=l1_coefficient, tol=settings.tol
    )


def calibration_record(calibration: Any) -> dict[str, Any]:
    return {} if calibration is None else dict(calibration.__dict__)


def first_tokens(source, n_tokens: int, batch_size: int = 4096) -> torch.Tensor:
    """The first n_tokens activations [n, d_in] of a source (for λ calibration)."""
    chunks, seen = [], 0
    for batch in source.iter_batches(batch_size):
        chunks.append(batch.acts[: n_tokens - seen])
        seen += chunks[-1].shape[0]
        if seen >= n_tokens:
            break
    return torch.cat(chunks)
