"""Config of the ``splitting`` eval."""

from __future__ import annotations

from pydantic import Field
from pydantic.dataclasses import dataclass
from sae_bench.evals.base_eval_output import BaseEvalConfig


@dataclass
class SplittingEvalConfig(BaseEvalConfig):
    min_positives: int = Field(
        default=50,
        title="Minimum Positives",
        description="Concepts with fewer positive tokens are skipped.",
    )
    inference_mode: str = Field(
        default="amortized", title="Inference Mode", description="How codes were inferred."
    )
    l1_coefficient: float | None = Field(
        default=None, title="L1 Coefficient", description="λ (None for amortized)."
    )
    lambda_calibration: dict | None = Field(
        default=None, title="λ Calibration", description="How λ was found."
    )
    n_tokens: int | None = Field(
        default=None, title="Evaluation Tokens", description="Tokens requested."
    )
    batch_size: int = Field(default=4096, title="Batch Size", description="Tokens per chunk.")
    seed: int = Field(
        default=42, title="Seed", description="Probe train/test split and negative sampling."
    )
    activation_source: str = Field(
        default="", title="Activation Source", description="Where tokens came from."
    )
    probe: str = Field(
        default="k-sparse logistic regression on the latents with the largest mean activation difference "
        "between positive and negative tokens; F1 on a stratified 20% held out",
        title="Probe",
        description="How F1@k is measured.",
    )
