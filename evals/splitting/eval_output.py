"""Typed SAEBench output of the ``splitting`` eval."""

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

from sae_bench_amortization.evals.splitting.eval_config import SplittingEvalConfig


@dataclass
class SplittingMetrics(BaseMetrics):
    mean_delta_f1: float = Field(
        title="Mean ΔF1",
        description="Mean over concepts of F1@2 − F1@1",
        json_schema_extra=DEFAULT_DISPLAY,
    )
    mean_f1_at_1: float = Field(title="Mean F1@1", description="Mean 1-sparse probe F1")
    mean_f1_at_2: float = Field(title="Mean F1@2", description="Mean 2-sparse probe F1")
    n_concepts: int = Field(title="Concepts", description="Concepts probed")


@dataclass
class SplittingMetricCategories(BaseMetricCategories):
    splitting: SplittingMetrics = Field(
        title="Splitting", description="Feature splitting", json_schema_extra=DEFAULT_DISPLAY
    )


@dataclass
class ConceptSplitting(BaseResultDetail):
    concept: str = Field(title="Concept", description="Concept name")
    f1_at_1: float = Field(title="F1@1", description="1-sparse probe F1")
    f1_at_2: float = Field(title="F1@2", description="2-sparse probe F1")
    delta_f1: float = Field(title="ΔF1", description="F1@2 − F1@1")
    top_latents: list[int] = Field(
        title="Top Latents", description="Latents by mean activation difference"
    )


@dataclass(config=ConfigDict(title="Feature Splitting (ΔF1)"))
class SplittingEvalOutput(
    BaseEvalOutput[SplittingEvalConfig, SplittingMetricCategories, ConceptSplitting]
):
    """How much a second latent adds to a concept's k-sparse probe: a large ΔF1 means the concept is split."""

    eval_config: SplittingEvalConfig
    eval_id: str
    datetime_epoch_millis: int
    eval_result_metrics: SplittingMetricCategories
    eval_result_details: list[ConceptSplitting] = Field(
        default_factory=list, title="Concepts", description="Per concept"
    )
    eval_type_id: str = Field(default="splitting", title="Eval Type ID", description="splitting")
