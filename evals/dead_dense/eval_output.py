"""Typed SAEBench output of the ``dead_dense`` eval."""

from __future__ import annotations

from pydantic import ConfigDict
from pydantic.dataclasses import dataclass
from sae_bench.evals.base_eval_output import (
    BaseEvalOutput,
    BaseMetricCategories,
    BaseMetrics,
    BaseResultDetail,
)

from sae_bench_amortization.evals.dead_dense.eval_config import DeadDenseEvalConfig
from sae_bench_amortization.registry import HIGHER_IS_WORSE
from sae_bench_amortization.runner.outputs import (
    GroundTruthMetrics,
    category,
    details_field,
    ground_truth_category,
    metric,
    type_id_field,
)

EVAL_TYPE_ID_DEAD_DENSE = "dead_dense"


@dataclass
class PathologyMetrics(BaseMetrics):
    dead_rate: float = metric(
        "Dead Rate",
        "Fraction of latents that never fire (code > 0) on the evaluation tokens",
        display=True,
        direction=HIGHER_IS_WORSE,
        bounds=(0.0, 1.0),
        label="dead latents (share)",
        unit="share of latents",
        topic="firing",
        figures=("pathologies",),
    )
    dense_rate: float = metric(
        "Dense Rate",
        "Fraction of latents whose firing frequency is above dense_threshold",
        display=True,
        direction=HIGHER_IS_WORSE,
        bounds=(0.0, 1.0),
        label="dense latents (share)",
        unit="share of latents",
        topic="firing",
        figures=("pathologies",),
    )
    alive_fraction: float = metric("Alive Fraction", "1 - dead_rate")
    mean_l0: float = metric(
        "Mean L0",
        "Mean number of firing latents per token",
        bounds=(0.0, None),
        label="L0 (mean active latents per token)",
        unit="latents",
        shared="l0",
        topic="sparsity",
    )
    n_tokens: int = metric("Tokens", "Number of evaluation tokens read")


@dataclass
class DeadDenseMetricCategories(BaseMetricCategories):
    pathologies: PathologyMetrics = category("Pathologies", "Dead and dense latents")


@dataclass
class DeadDenseMetricCategoriesWithGroundTruth(DeadDenseMetricCategories):
    ground_truth: GroundTruthMetrics = ground_truth_category()


@dataclass
class FrequencyHistogramBin(BaseResultDetail):
    bin: str = metric("Bin", "'dead', or the log10-frequency interval of alive latents")
    log10_frequency_low: float | None = metric("Low Edge", "log10 frequency, inclusive")
    log10_frequency_high: float | None = metric("High Edge", "log10 frequency")
    n_latents: int = metric("Latents", "Number of latents in this bin")


@dataclass(config=ConfigDict(title="Dead / Dense Latents"))
class DeadDenseEvalOutput(
    BaseEvalOutput[DeadDenseEvalConfig, DeadDenseMetricCategories, FrequencyHistogramBin]
):
    """Share of latents that never fire (dead) or fire on more than a threshold of tokens (dense)."""

    eval_config: DeadDenseEvalConfig
    eval_id: str
    datetime_epoch_millis: int
    eval_result_metrics: DeadDenseMetricCategories
    eval_result_details: list[FrequencyHistogramBin] = details_field(
        "log10 Firing-Frequency Histogram",
        "Latents per log10 firing-frequency bin; dead latents in their own row",
    )
    eval_type_id: str = type_id_field(EVAL_TYPE_ID_DEAD_DENSE)
