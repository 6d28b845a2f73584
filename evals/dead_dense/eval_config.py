"""Config of the ``dead_dense`` eval."""

from __future__ import annotations

from pydantic.dataclasses import dataclass

from sae_bench_amortization.runner.eval_config import PerModeEvalConfig
from sae_bench_amortization.runner.outputs import setting


@dataclass
class DeadDenseEvalConfig(PerModeEvalConfig):
    dense_threshold: float = setting(
        0.1,
        "Dense Threshold",
        "A latent is dense when it fires on more than this share of tokens (the paper uses 0.1).",
    )
    histogram_bins: int = setting(
        20, "Histogram Bins", "Bins of the log10 firing-frequency histogram."
    )
