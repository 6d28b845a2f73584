"""Typed SAEBench output of the ``amortization_gap`` eval."""

from __future__ import annotations

from pydantic import ConfigDict, Field
from pydantic.dataclasses import dataclass
from sae_bench.evals.base_eval_output import (
    DEFAULT_DISPLAY,
    BaseEvalOutput,
    BaseMetricCategories,
    BaseMetrics,
    BaseResultDetail,
)

from sae_bench_amortization.evals.amortization_gap.eval_config import AmortizationGapEvalConfig

EVAL_TYPE_ID_AMORTIZATION_GAP = "amortization_gap"


@dataclass
class AmortizationMetrics(BaseMetrics):
    l1_coefficient: float = Field(
        title="λ", description="The sparsity penalty shared by every mode"
    )
    mean_gap: float = Field(
        title="Mean Amortization Gap",
        description="Mean over tokens of objective(amortized) − objective(non_amortized)",
        json_schema_extra=DEFAULT_DISPLAY,
    )
    mean_relative_gap: float = Field(
        title="Mean Relative Gap",
        description="mean_gap / mean non-amortized objective",
        json_schema_extra=DEFAULT_DISPLAY,
    )


@dataclass
class AmortizationMetricCategories(BaseMetricCategories):
    amortization: AmortizationMetrics = Field(
        title="Amortization",
        description="The price of the shared encoder",
        json_schema_extra=DEFAULT_DISPLAY,
    )


@dataclass
class ModeRow(BaseResultDetail):
    mode: str = Field(title="Mode", description="amortized, semi:T or non_amortized")
    nmse: float = Field(title="NMSE", description="Σ‖x − x̂‖² / Σ‖x − x̄‖²")
    l0: float = Field(title="L0", description="Mean number of firing latents per token")
    objective: float = Field(
        title="Objective", description="Mean ½‖x − x̂‖² + λ‖z‖₁ (sparse-coding space)"
    )
    dead_rate: float = Field(title="Dead Rate", description="Share of latents that never fire")
    dense_rate: float = Field(
        title="Dense Rate", description="Share firing on more than dense_threshold"
    )
    delta_f1: float | None = Field(
        title="ΔF1", description="Mean over concepts of F1@2 − F1@1 (null without concept labels)"
    )
    absorption_rate: float | None = Field(title="Absorption", description="Null without concepts")
    seconds_per_1k_tokens: float = Field(title="Seconds / 1k Tokens", description="Inference time")


@dataclass(config=ConfigDict(title="Amortization Gap"))
class AmortizationGapEvalOutput(
    BaseEvalOutput[AmortizationGapEvalConfig, AmortizationMetricCategories, ModeRow]
):
    """Inference modes on one decoder: NMSE, L0, objective, dead/dense, splitting, absorption, time."""

    eval_config: AmortizationGapEvalConfig
    eval_id: str
    datetime_epoch_millis: int
    eval_result_metrics: AmortizationMetricCategories
    eval_result_details: list[ModeRow] = Field(
        default_factory=list, title="Modes", description="One row per mode"
    )
    eval_type_id: str = Field(
        default=EVAL_TYPE_ID_AMORTIZATION_GAP, title="Eval Type ID", description="amortization_gap"
    )
