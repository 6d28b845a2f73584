"""Config of the ``dead_dense`` eval."""

from __future__ import annotations

from pydantic import Field
from pydantic.dataclasses import dataclass

from sae_bench_amortization.mode_config import PerModeEvalConfig


@dataclass
class DeadDenseEvalConfig(PerModeEvalConfig):
    dense_threshold: float = Field(
        default=0.1,
        title="Dense Threshold",
        description="A latent is dense when it fires on more than this share of tokens (the paper uses 0.1).",
    )
    histogram_bins: int = Field(
        default=20,
        title="Histogram Bins",
        description="Bins of the log10 firing-frequency histogram.",
    )
