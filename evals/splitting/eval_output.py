"""Typed SAEBench output of the ``splitting`` eval."""

from __future__ import annotations

from pydantic import ConfigDict
from pydantic.dataclasses import dataclass
from sae_bench.evals.base_eval_output import (
    BaseEvalOutput,
    BaseMetricCategories,
    BaseMetrics,
    BaseResultDetail,
)

from sae_bench_amortization.evals.splitting.eval_config import SplittingEvalConfig
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
class SplittingMetrics(BaseMetrics):
    mean_delta_f1: float | None = metric(
        "Mean ΔF1",
        "Mean of F1@2 − F1@1 over the concepts that could be probed (null when none could)",
        display=True,
        direction=HIGHER_IS_WORSE,
        bounds=(-1.0, 1.0),
        label="ΔF1 = F1@2 − F1@1 (splitting)",
        shared="delta_f1",
        topic="splitting",
        figures=("pathologies",),
    )
    mean_f1_at_1: float | None = metric("Mean F1@1", "Mean 1-sparse probe F1")
    mean_f1_at_2: float | None = metric("Mean F1@2", "Mean 2-sparse probe F1")
    n_concepts: int = metric("Concepts", "Concepts probed")
    null_reason: str | None = optional_metric(
        "Why Null", "Why mean_delta_f1 could not be measured (null when it was)"
    )


@dataclass
class SplittingMetricCategories(BaseMetricCategories):
    splitting: SplittingMetrics = category("Splitting", "Feature splitting")


@dataclass
class SplittingMetricCategoriesWithGroundTruth(SplittingMetricCategories):
    ground_truth: GroundTruthMetrics = ground_truth_category()


@dataclass
class ConceptSplitting(BaseResultDetail):
    concept: str = metric("Concept", "Concept name")
    f1_at_1: float | None = metric("F1@1", "1-sparse probe F1")
    f1_at_2: float | None = metric("F1@2", "2-sparse probe F1")
    delta_f1: float | None = metric(
        "ΔF1",
        "F1@2 − F1@1 (null when the concept cannot be probed, e.g. too few positives, or the codes carry "
        "no information on it: no latent fires, or its top latent is constant)",
    )
    top_latents: list[int] = metric("Top Latents", "Latents by mean activation difference")
    n_positives: int | None = optional_metric(
        "Positives", "Tokens of the probe sample where the concept holds (ΔF1's positives)"
    )
    n_negatives: int | None = optional_metric(
        "Negatives", "Tokens of the probe sample where it does not (ΔF1's negatives)"
    )
    reason: str | None = optional_metric("Why Null", "Why this concept could not be probed")


@dataclass(config=ConfigDict(title="Feature Splitting (ΔF1)"))
class SplittingEvalOutput(
    BaseEvalOutput[SplittingEvalConfig, SplittingMetricCategories, ConceptSplitting]
):
    """How much a second latent adds to a concept's k-sparse probe: a large ΔF1 means the concept is split."""

    eval_config: SplittingEvalConfig
    eval_id: str
    datetime_epoch_millis: int
    eval_result_metrics: SplittingMetricCategories
    eval_result_details: list[ConceptSplitting] = details_field("Concepts", "Per concept")
    eval_type_id: str = type_id_field("splitting")
