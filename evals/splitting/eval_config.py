"""Config of the ``splitting`` eval."""

from __future__ import annotations

from pydantic.dataclasses import dataclass

from sae_bench_amortization.runner.eval_config import PerModeEvalConfig
from sae_bench_amortization.runner.outputs import setting


@dataclass
class SplittingEvalConfig(PerModeEvalConfig):
    min_positives: int = setting(
        50, "Minimum Positives", "Concepts with fewer positive tokens are skipped."
    )
    seed: int = setting(42, "Seed", "Probe train/test split and negative sampling.")
    probe: str = setting(
        "k-sparse logistic regression on the latents with the largest mean activation difference "
        "between positive and negative tokens; F1 on a stratified 20% held out",
        "Probe",
        "How F1@k is measured.",
    )
