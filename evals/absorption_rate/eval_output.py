"""Typed SAEBench output of the ``absorption_rate`` eval."""

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

from sae_bench_amortization.evals.absorption_rate.eval_config import AbsorptionRateEvalConfig


@dataclass
class AbsorptionMetrics(BaseMetrics):
    absorption_rate: float = Field(
        title="Absorption Rate",
        description="Mean over concepts (conditional)",
        json_schema_extra=DEFAULT_DISPLAY,
    )
    full_absorption_rate: float = Field(
        title="Full Absorption Rate", description="Mean over concepts (unconditional)"
    )
    n_concepts: int = Field(title="Concepts", description="Concepts measured")


@dataclass
class AbsorptionMetricCategories(BaseMetricCategories):
    absorption: AbsorptionMetrics = Field(
        title="Absorption", description="Feature absorption", json_schema_extra=DEFAULT_DISPLAY
    )


@dataclass
class ConceptAbsorption(BaseResultDetail):
    concept: str = Field(title="Concept", description="Concept name")
    absorption_rate: float = Field(
        title="Absorption Rate", description="Conditional on the main latents missing"
    )
    full_absorption_rate: float = Field(
        title="Full Absorption Rate", description="Share of all counted tokens"
    )
    n_tokens: int = Field(
        title="Tokens", description="Sampled tokens where the concept holds and the probe fires"
    )
    main_latents: list[int] = Field(title="Main Latents", description="By the F1-jump rule")
    absorbing_latents: list[int] = Field(
        title="Absorbing Latents", description="Aligned latents that fired instead"
    )


@dataclass(config=ConfigDict(title="Feature Absorption"))
class AbsorptionRateEvalOutput(
    BaseEvalOutput[AbsorptionRateEvalConfig, AbsorptionMetricCategories, ConceptAbsorption]
):
    """How often a concept's main latents stay silent while an aligned latent fires in their place."""

    eval_config: AbsorptionRateEvalConfig
    eval_id: str
    datetime_epoch_millis: int
    eval_result_metrics: AbsorptionMetricCategories
    eval_result_details: list[ConceptAbsorption] = Field(
        default_factory=list, title="Concepts", description="Per concept"
    )
    eval_type_id: str = Field(
        default="absorption_rate", title="Eval Type ID", description="absorption_rate"
    )
