"""Config of the ``amortization_gap`` eval."""

from __future__ import annotations

from typing import Literal, get_args

from pydantic.dataclasses import dataclass
from sae_bench.evals.base_eval_output import BaseEvalConfig

from sae_bench_amortization.runner.eval_config import k_sparse_k_setting, objective_setting
from sae_bench_amortization.runner.outputs import setting

DEFAULT_MODES = ["amortized", "semi:5", "semi:25", "non_amortized"]
PAPER_MODES = ["amortized", "semi:5", "semi:30", "semi:50", "non_amortized"]
ProtocolName = Literal["default", "paper"]
PROTOCOLS: tuple[ProtocolName, ...] = get_args(ProtocolName)


@dataclass
class AmortizationGapEvalConfig(BaseEvalConfig):
    modes: list[str] | None = setting(
        None,
        "Inference Modes",
        "Modes compared on the same tokens and decoder (amortized and non_amortized always run: the gap "
        f"needs both); none given: {', '.join(DEFAULT_MODES)} (protocol paper: "
        f"{', '.join(PAPER_MODES)}).",
    )
    protocol: str = setting(
        "default",
        "Metric Protocol",
        "'default': this package's definitions; 'paper': the paper's unified protocol over the first "
        "50,000 tokens at most (definitions in `definitions`).",
    )
    lambda_scope: str = setting(
        "shared",
        "λ Calibration Scope",
        "shared: one λ per SAE (non-amortized L0 matched to the encoder's); per_mode: each semi:T mode its "
        "own λ (its mean L0 within 2% of the encoder's). The gap and every row's objective use the shared λ.",
    )
    definitions: dict | None = setting(
        None, "Definitions", "Every metric's definition (protocol paper)."
    )
    l1_coefficient: float | None = setting(
        None, "L1 Coefficient", "λ shared by every mode (one per SAE)."
    )
    lambda_calibration: dict | None = setting(
        None,
        "λ Calibration",
        "How λ was found: non-amortized L0 matched to the amortized L0 on calibration tokens.",
    )
    objective: str = objective_setting()
    k_sparse_k: int | None = k_sparse_k_setting()
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
    n_tokens: int | None = setting(
        None, "Evaluation Tokens", "Tokens read (the longest pass over the source)."
    )
    skip_tokens: int = setting(
        0,
        "Skipped Tokens",
        "Tokens of the source skipped before these (a held-out span: --skip-tokens).",
    )
    batch_size: int = setting(4096, "Batch Size", "Tokens per chunk.")
    activation_source: str = setting("", "Activation Source", "Where tokens came from.")
