"""Typed SAEBench output of the ``dead_dense`` eval."""

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

from sae_bench_amortization.evals.dead_dense.eval_config import DeadDenseEvalConfig

EVAL_TYPE_ID_DEAD_DENSE = "dead_dense"


@dataclass
class PathologyMetrics(BaseMetrics):
    dead_rate: float = Field(
        title="Dead Rate",
        description="Fraction of latents that never fire (code > 0) on the evaluation tokens",
        json_schema_extra=DEFAULT_DISPLAY,
    )
    dense_rate: float = Field(
        title="Dense Rate",
        description="Fraction of latents whose firing frequency is above dense_threshold",
        json_schema_extra=DEFAULT_DISPLAY,
    )
    alive_fraction: float = Field(title="Alive Fraction", description="1 - dead_rate")
    mean_l0: float = Field(title="Mean L0", description="Mean number of firing latents per token")
    n_tokens: int = Field(title="Tokens", description="Number of evaluation tokens read")


@dataclass
class DeadDenseMetricCategories(BaseMetricCategories):
    pathologies: PathologyMetrics = Field(
        title="Pathologies", description="Dead and dense latents", json_schema_extra=DEFAULT_DISPLAY
    )


@dataclass
class FrequencyHistogramBin(BaseResultDetail):
    bin: str = Field(
        title="Bin", description="'dead', or the log10-frequency interval of alive latents"
    )
    log10_frequency_low: float | None = Field(
        title="Low Edge", description="log10 frequency, inclusive"
    )
    log10_frequency_high: float | None = Field(title="High Edge", description="log10 frequency")
    n_latents: int = Field(title="Latents", description="Number of latents in this bin")


@dataclass(config=ConfigDict(title="Dead / Dense Latents"))
class DeadDenseEvalOutput(
    BaseEvalOutput[DeadDenseEvalConfig, DeadDenseMetricCategories, FrequencyHistogramBin]
):
    """Share of latents that never fire (dead) or fire on more than a threshold of tokens (dense)."""

    eval_config: DeadDenseEvalConfig
    eval_id: str
    datetime_epoch_millis: int
    eval_result_metrics: DeadDenseMetricCategories
    eval_result_details: list[FrequencyHistogramBin] = Field(
        default_factory=list,
        title="log10 Firing-Frequency Histogram",
        description="Latents per log10 firing-frequency bin; dead latents in their own row",
    )
    eval_type_id: str = Field(
        default=EVAL_TYPE_ID_DEAD_DENSE, title="Eval Type ID", description="dead_dense"
    )
