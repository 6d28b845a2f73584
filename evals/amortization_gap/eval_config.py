"""Config of the ``amortization_gap`` eval."""

from __future__ import annotations

from pydantic import Field
from pydantic.dataclasses import dataclass
from sae_bench.evals.base_eval_output import BaseEvalConfig

DEFAULT_MODES = ["amortized", "semi:5", "semi:25", "non_amortized"]


@dataclass
class AmortizationGapEvalConfig(BaseEvalConfig):
    modes: list[str] = Field(
        default_factory=lambda: list(DEFAULT_MODES),
        title="Inference Modes",
        description="Modes compared on the same tokens and decoder (amortized and non_amortized always run: "
        "the gap needs both).",
    )
    l1_coefficient: float | None = Field(
        default=None, title="L1 Coefficient", description="λ shared by every mode (one per SAE)."
    )
    lambda_calibration: dict | None = Field(
        default=None,
        title="λ Calibration",
        description="How λ was found: non-amortized L0 matched to the amortized L0 on calibration tokens.",
    )
    loca_paths: list[str] = Field(
        default_factory=list,
        title="LocA-SAE Paths",
        description="LocA-SAE folders run as mode 'loca' beside the SAEs (paired in order).",
    )
    dense_threshold: float = Field(
        default=0.1, title="Dense Threshold", description="As in dead_dense."
    )
    max_concepts: int = Field(
        default=32,
        title="Max Concepts",
        description="ΔF1 and absorption per mode use up to this many concepts: planted roles (parent, "
        "child, composite) first, then the most frequent (the splitting and absorption_rate evals use all).",
    )
    n_tokens: int | None = Field(
        default=None, title="Evaluation Tokens", description="Tokens requested."
    )
    batch_size: int = Field(default=4096, title="Batch Size", description="Tokens per chunk.")
    activation_source: str = Field(
        default="", title="Activation Source", description="Where tokens came from."
    )
