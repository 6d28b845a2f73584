"""Config of the ``amortization_gap`` eval."""

from __future__ import annotations

from pydantic.dataclasses import dataclass
from sae_bench.evals.base_eval_output import BaseEvalConfig

from sae_bench_amortization.runner.outputs import setting

DEFAULT_MODES = ["amortized", "semi:5", "semi:25", "non_amortized"]


@dataclass
class AmortizationGapEvalConfig(BaseEvalConfig):
    modes: list[str] = setting(
        DEFAULT_MODES,
        "Inference Modes",
        "Modes compared on the same tokens and decoder (amortized and non_amortized always run: "
        "the gap needs both).",
    )
    l1_coefficient: float | None = setting(
        None, "L1 Coefficient", "λ shared by every mode (one per SAE)."
    )
    lambda_calibration: dict | None = setting(
        None,
        "λ Calibration",
        "How λ was found: non-amortized L0 matched to the amortized L0 on calibration tokens.",
    )
    loca_paths: list[str] = setting(
        [],
        "LocA-SAE Paths",
        "LocA-SAE folders run as mode 'loca' beside the SAEs (paired in order).",
    )
    dense_threshold: float = setting(0.1, "Dense Threshold", "As in dead_dense.")
    max_concepts: int = setting(
        32,
        "Max Concepts",
        "ΔF1 and absorption per mode use up to this many concepts: planted roles (parent, "
        "child, composite) first, then the most frequent (the splitting and absorption_rate evals use all).",
    )
    n_tokens: int | None = setting(None, "Evaluation Tokens", "Tokens requested.")
    batch_size: int = setting(4096, "Batch Size", "Tokens per chunk.")
    activation_source: str = setting("", "Activation Source", "Where tokens came from.")
