"""The eval_config fields every per-mode eval of this package records (dead_dense, splitting,
absorption_rate): which inference mode made the codes, with which λ, on which tokens."""

from __future__ import annotations

from pydantic import Field
from pydantic.dataclasses import dataclass
from sae_bench.evals.base_eval_output import BaseEvalConfig


@dataclass
class PerModeEvalConfig(BaseEvalConfig):
    inference_mode: str = Field(
        default="amortized",
        title="Inference Mode",
        description="How codes were inferred on the SAE's decoder: 'amortized' (its encoder), 'semi:T' "
        "(T ISTA/FISTA steps from the encoder's codes) or 'non_amortized' (sparse coding to tolerance).",
    )
    l1_coefficient: float | None = Field(
        default=None,
        title="L1 Coefficient",
        description="λ of the sparse-coding objective ½‖x − decode(z)‖² + λ‖z‖₁ (None for amortized).",
    )
    lambda_calibration: dict | None = Field(
        default=None,
        title="λ Calibration",
        description="How λ was found: target L0 (the amortized L0), achieved non-amortized L0, tokens, solves.",
    )
    n_tokens: int | None = Field(
        default=None,
        title="Evaluation Tokens",
        description="Tokens requested (None: every token of the source).",
    )
    batch_size: int = Field(default=4096, title="Batch Size", description="Tokens per chunk.")
    activation_source: str = Field(
        default="",
        title="Activation Source",
        description="Where the evaluated activations came from.",
    )
