"""Config of the ``splitting`` eval."""

from __future__ import annotations

from pydantic import Field
from pydantic.dataclasses import dataclass

from sae_bench_amortization.mode_config import PerModeEvalConfig


@dataclass
class SplittingEvalConfig(PerModeEvalConfig):
    min_positives: int = Field(
        default=50,
        title="Minimum Positives",
        description="Concepts with fewer positive tokens are skipped.",
    )
    seed: int = Field(
        default=42, title="Seed", description="Probe train/test split and negative sampling."
    )
    probe: str = Field(
        default="k-sparse logistic regression on the latents with the largest mean activation difference "
        "between positive and negative tokens; F1 on a stratified 20% held out",
        title="Probe",
        description="How F1@k is measured.",
    )
