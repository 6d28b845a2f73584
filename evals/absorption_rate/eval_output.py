"""Typed SAEBench output of the ``absorption_rate`` eval."""

from __future__ import annotations

from pydantic import ConfigDict
from pydantic.dataclasses import dataclass
from sae_bench.evals.base_eval_output import (
    BaseEvalOutput,
    BaseMetricCategories,
    BaseMetrics,
    BaseResultDetail,
)

from sae_bench_amortization.evals.absorption_rate.eval_config import AbsorptionRateEvalConfig
from sae_bench_amortization.registry import HIGHER_IS_WORSE
from sae_bench_amortization.runner.outputs import (
    GroundTruthMetrics,
    category,
    details_field,
    ground_truth_category,
    metric,
    optional_metric,
    type_id_field,
)


@dataclass
class AbsorptionMetrics(BaseMetrics):
    absorption_rate: float | None = metric(
        "Absorption Rate",
        "Mean over the concepts where it is defined (conditional; null when defined on none)",
        display=True,
        direction=HIGHER_IS_WORSE,
        bounds=(0.0, 1.0),
        label="absorption rate",
        topic="absorption",
        figures=("pathologies", "steps"),
    )
    full_absorption_rate: float | None = metric(
        "Full Absorption Rate",
        "Mean over the concepts where it is defined (unconditional)",
        direction=HIGHER_IS_WORSE,
        bounds=(0.0, 1.0),
        topic="absorption",
    )
    n_concepts: int = metric("Concepts", "Concepts where the absorption rate is defined")
    null_reason: str | None = optional_metric(
        "Why Null", "Why absorption_rate could not be measured (null when it was)"
    )


@dataclass
class AbsorptionMetricCategories(BaseMetricCategories):
    absorption: AbsorptionMetrics = category("Absorption", "Feature absorption")


@dataclass
class AbsorptionMetricCategoriesWithGroundTruth(AbsorptionMetricCategories):
    ground_truth: GroundTruthMetrics = ground_truth_category()


@dataclass
class ConceptAbsorption(BaseResultDetail):
    concept: str = metric("Concept", "Concept name")
    absorption_rate: float | None = metric(
        "Absorption Rate",
        "Conditional on the main latents missing (null when they never miss: 0/0)",
    )
    full_absorption_rate: float | None = metric(
        "Full Absorption Rate", "Share of all counted tokens (null when none is counted)"
    )
    n_tokens: int = metric("Tokens", "Sampled tokens where the concept holds and the probe fires")
    main_latents: list[int] = metric("Main Latents", "By the F1-jump rule")
    absorbing_latents: list[int] = metric("Absorbing Latents", "Aligned latents that fired instead")
    n_concept_tokens: int | None = optional_metric(
        "Concept Tokens", "Sampled tokens where the concept holds"
    )
    n_probe_fires: int | None = optional_metric(
        "Probe Fires",
        "Of those, where the ground-truth probe fires (full_absorption_rate's denominator)",
    )
    n_main_silent: int | None = optional_metric(
        "Main Latents Silent",
        "Of those, where every main latent is silent (absorption_rate's denominator)",
    )
    n_absorbed: int | None = optional_metric(
        "Absorbed", "Of those, where an aligned latent fires instead (both rates' numerator)"
    )
    reason: str | None = optional_metric("Why Null", "Why a rate of this concept is null")


@dataclass(config=ConfigDict(title="Feature Absorption"))
class AbsorptionRateEvalOutput(
    BaseEvalOutput[AbsorptionRateEvalConfig, AbsorptionMetricCategories, ConceptAbsorption]
):
    """How often a concept's main latents stay silent while an aligned latent fires in their place."""

    eval_config: AbsorptionRateEvalConfig
    eval_id: str
    datetime_epoch_millis: int
    eval_result_metrics: AbsorptionMetricCategories
    eval_result_details: list[ConceptAbsorption] = details_field("Concepts", "Per concept")
    eval_type_id: str = type_id_field("absorption_rate")
