"""Typed SAEBench output of the ``dead_dense`` eval."""

from __future__ import annotations

from pydantic.dataclasses import dataclass
from sae_bench.evals.base_eval_output import BaseMetrics, BaseResultDetail

from sae_bench_amortization.evals.dead_dense.eval_config import DeadDenseEvalConfig
from sae_bench_amortization.runner.outputs import eval_output, metric, metric_categories

EVAL_TYPE_ID_DEAD_DENSE = "dead_dense"


@dataclass
class PathologyMetrics(BaseMetrics):
    dead_rate: float = metric(
        "Dead Rate",
        "Fraction of latents that never fire (code > 0) on the evaluation tokens",
        display=True,
    )
    dense_rate: float = metric(
        "Dense Rate",
        "Fraction of latents whose firing frequency is above dense_threshold",
        display=True,
    )
    alive_fraction: float = metric("Alive Fraction", "1 - dead_rate")
    mean_l0: float = metric("Mean L0", "Mean number of firing latents per token")
    n_tokens: int = metric("Tokens", "Number of evaluation tokens read")


DeadDenseMetricCategories = metric_categories(
    "DeadDenseMetricCategories",
    "pathologies",
    PathologyMetrics,
    "Pathologies",
    "Dead and dense latents",
)


@dataclass
class FrequencyHistogramBin(BaseResultDetail):
    bin: str = metric("Bin", "'dead', or the log10-frequency interval of alive latents")
    log10_frequency_low: float | None = metric("Low Edge", "log10 frequency, inclusive")
    log10_frequency_high: float | None = metric("High Edge", "log10 frequency")
    n_latents: int = metric("Latents", "Number of latents in this bin")


DeadDenseEvalOutput = eval_output(
    "DeadDenseEvalOutput",
    EVAL_TYPE_ID_DEAD_DENSE,
    "Dead / Dense Latents",
    "Share of latents that never fire (dead) or fire on more than a threshold of tokens (dense).",
    DeadDenseEvalConfig,
    DeadDenseMetricCategories,
    FrequencyHistogramBin,
    "log10 Firing-Frequency Histogram",
    "Latents per log10 firing-frequency bin; dead latents in their own row",
)
