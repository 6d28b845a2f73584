"""Typed SAEBench output of the ``amortization_gap`` eval."""

from __future__ import annotations

from pydantic.dataclasses import dataclass
from sae_bench.evals.base_eval_output import BaseMetrics, BaseResultDetail

from sae_bench_amortization.evals.amortization_gap.eval_config import AmortizationGapEvalConfig
from sae_bench_amortization.runner.outputs import (
    eval_output,
    metric,
    metric_categories,
    optional_metric,
)

EVAL_TYPE_ID_AMORTIZATION_GAP = "amortization_gap"


@dataclass
class AmortizationMetrics(BaseMetrics):
    l1_coefficient: float = metric("λ", "The sparsity penalty shared by every mode")
    mean_gap: float = metric(
        "Mean Amortization Gap",
        "Mean over tokens of objective(amortized) − objective(non_amortized)",
        display=True,
    )
    mean_relative_gap: float | None = metric(
        "Mean Relative Gap", "mean_gap / mean non-amortized objective", display=True
    )
    median_gap: float | None = optional_metric(
        "Median Amortization Gap", "Median over tokens of the gap (--protocol paper)"
    )


AmortizationMetricCategories = metric_categories(
    "AmortizationMetricCategories",
    "amortization",
    AmortizationMetrics,
    "Amortization",
    "The price of the shared encoder",
)


@dataclass
class ModeRow(BaseResultDetail):
    mode: str = metric("Mode", "amortized, semi:T or non_amortized")
    nmse: float | None = metric(
        "NMSE", "Σ‖x − x̂‖² / Σ‖x − x̄‖² (null when the activations have no variance)"
    )
    l0: float = metric("L0", "Mean number of firing latents per token")
    objective: float = metric("Objective", "Mean ½‖x − x̂‖² + λ‖z‖₁ (sparse-coding space)")
    dead_rate: float = metric("Dead Rate", "Share of latents that never fire")
    dense_rate: float = metric("Dense Rate", "Share firing on more than dense_threshold")
    delta_f1: float | None = metric(
        "ΔF1",
        "Mean over concepts of F1@2 − F1@1 (null without concept labels, or when no concept could be "
        "probed: e.g. codes that carry no information; the reason in undefined)",
    )
    absorption_rate: float | None = metric("Absorption", "Null without concepts")
    seconds_per_1k_tokens: float = metric("Seconds / 1k Tokens", "Inference time")
    l1_coefficient: float | None = optional_metric(
        "λ", "The λ this mode's codes were inferred with (null for encoders)"
    )
    dense_rate_0_2: float | None = optional_metric(
        "Dense Rate ≥ 0.2", "Share firing on ≥ 20% of tokens (--protocol paper)"
    )
    f1_at_1: float | None = optional_metric(
        "F1@1", "1-sparse pseudo-label probe F1 (--protocol paper)"
    )
    f1_at_2: float | None = optional_metric(
        "F1@2", "2-sparse pseudo-label probe F1 (--protocol paper)"
    )
    nmse_refit: float | None = optional_metric(
        "NMSE Refit",
        "NMSE after refitting each token's codes by non-negative least squares on their own support "
        "(same decoder): the support's quality without the L1 shrinkage (null: no variance)",
    )
    explained_variance: float | None = optional_metric(
        "Explained Variance",
        "As SAEBench's core reports it: 1 − mean‖x − x̂‖² / (mean‖x‖² − (mean over tokens and dims of "
        "x²)²) (null, with the reason in undefined, when that denominator is not positive: all-zero "
        "activations, or a mean square of at least d_in)",
    )
    n_concepts_delta_f1: int | None = optional_metric(
        "ΔF1 Concepts",
        "Concepts delta_f1 is the mean over (of at most max_concepts: planted roles first, then the most "
        "frequent; splitting's mean_delta_f1 takes every concept)",
    )
    n_concepts_absorption: int | None = optional_metric(
        "Absorption Concepts",
        "Concepts absorption_rate is the mean over (defined, of the same subset)",
    )
    full_absorption_rate: float | None = optional_metric(
        "Full Absorption",
        "Mean over concepts of the share of the concept's tokens (where its ground-truth probe fires) on "
        "which the main latents are silent and an aligned latent fires (SAEBench-style; defined even when "
        "the main latents never miss; null without concepts and under --protocol paper)",
    )
    undefined: dict[str, str] | None = optional_metric(
        "Why Null", "Metric → why it could not be measured, for this row's null metrics"
    )


AmortizationGapEvalOutput = eval_output(
    "AmortizationGapEvalOutput",
    EVAL_TYPE_ID_AMORTIZATION_GAP,
    "Amortization Gap",
    "Inference modes on one decoder: NMSE, L0, objective, dead/dense, splitting, absorption, time.",
    AmortizationGapEvalConfig,
    AmortizationMetricCategories,
    ModeRow,
    "Modes",
    "One row per mode",
)
