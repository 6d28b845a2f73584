"""Typed SAEBench output of the ``amortization_gap`` eval."""

from __future__ import annotations

from typing import Any

from pydantic import ConfigDict, Field
from pydantic.dataclasses import dataclass
from sae_bench.evals.base_eval_output import (
    BaseEvalOutput,
    BaseMetricCategories,
    BaseMetrics,
    BaseResultDetail,
)

from sae_bench_amortization.evals.amortization_gap.eval_config import AmortizationGapEvalConfig
from sae_bench_amortization.registry import HIGHER_IS_WORSE, LOWER_IS_WORSE
from sae_bench_amortization.runner.outputs import (
    GroundTruthByMode,
    category,
    details_field,
    ground_truth_category,
    metric,
    optional_metric,
    type_id_field,
)

SHARE = (0.0, 1.0)  # bounds of a rate

EVAL_TYPE_ID_AMORTIZATION_GAP = "amortization_gap"


@dataclass
class AmortizationMetrics(BaseMetrics):
    l1_coefficient: float | None = metric(
        "λ",
        "The sparsity penalty shared by every mode (null under k_sparse: no penalty)",
        per_mode_row="every",
    )
    mean_gap: float = metric(
        "Mean Amortization Gap",
        "Mean over tokens of objective(amortized) − objective(non_amortized)",
        display=True,
        direction=HIGHER_IS_WORSE,
        lambda_dependent=True,
        per_mode_row="encoder",
    )
    mean_relative_gap: float | None = metric(
        "Mean Relative Gap",
        "mean_gap / mean non-amortized objective",
        display=True,
        direction=HIGHER_IS_WORSE,
        lambda_dependent=True,
        per_mode_row="encoder",
    )
    coefficient_gap: float | None = optional_metric(
        "Coefficient Gap",
        "The part of mean_gap that re-sizing the encoder's own latents recovers: objective(amortized) − "
        "objective(the best codes on the encoder's supports)",
        direction=HIGHER_IS_WORSE,
        lambda_dependent=True,
    )
    support_gap: float | None = optional_metric(
        "Support Gap",
        "The rest of mean_gap (coefficient_gap + support_gap = mean_gap): objective(the best codes on the "
        "encoder's supports) − objective(non_amortized), from choosing other latents",
        direction=HIGHER_IS_WORSE,
        lambda_dependent=True,
    )
    median_gap: float | None = optional_metric(
        "Median Amortization Gap",
        "Median over tokens of the gap (--protocol paper)",
        direction=HIGHER_IS_WORSE,
        lambda_dependent=True,
        protocol="paper",
    )


@dataclass
class AmortizationMetricCategories(BaseMetricCategories):
    amortization: AmortizationMetrics = category("Amortization", "The price of the shared encoder")


@dataclass
class AmortizationMetricCategoriesWithGroundTruth(AmortizationMetricCategories):
    ground_truth: GroundTruthByMode = ground_truth_category()


@dataclass
class ModeRow(BaseResultDetail):
    mode: str = metric("Mode", "amortized, semi:T or non_amortized", column=0)
    nmse: float | None = metric(
        "NMSE",
        "Σ‖x − x̂‖² / Σ‖x − x̄‖² (null when the activations have no variance)",
        direction=HIGHER_IS_WORSE,
        bounds=(0.0, None),
        label="NMSE (lower is better)",
        short="NMSE",
        legend="Σ‖x − x̂‖² / Σ‖x − x̄‖², reconstruction error (lower is better)",
        always_shown=True,
        fmt=".4f",
        column=1,
        topic="reconstruction",
        figures=("pathologies", "steps"),
    )
    l0: float = metric(
        "L0",
        "Mean number of firing latents per token",
        bounds=(0.0, None),
        label="L0 (mean active latents per token)",
        unit="latents",
        short="L0",
        legend="mean active latents per token: the density every mode is matched to",
        always_shown=True,
        fmt=".2f",
        column=4,
        topic="sparsity",
    )
    objective: float = metric(
        "Objective",
        "Mean ½‖x − x̂‖² + λ‖z‖₁ (sparse-coding space)",
        direction=HIGHER_IS_WORSE,
        lambda_dependent=True,
        short="objective",
        legend="mean objective of the problem in the title (½‖x − x̂‖² + its penalty; lower is better)",
        always_shown=True,
        fmt=".4f",
        column=5,
    )
    dead_rate: float = metric(
        "Dead Rate",
        "Share of latents that never fire",
        direction=HIGHER_IS_WORSE,
        bounds=SHARE,
        label="dead latents (share)",
        unit="share of latents",
        short="dead",
        legend="share of latents that never fire",
        fmt=".3f",
        column=6,
        topic="firing",
        figures=("pathologies",),
    )
    dense_rate: float = metric(
        "Dense Rate",
        "Share firing on more than dense_threshold",
        direction=HIGHER_IS_WORSE,
        bounds=SHARE,
        label="dense latents (share)",
        unit="share of latents",
        short="dense",
        legend="share of latents firing on more than dense_threshold of tokens",
        fmt=".3f",
        column=7,
        topic="firing",
        figures=("pathologies",),
    )
    delta_f1: float | None = metric(
        "ΔF1",
        "Mean over concepts of F1@2 − F1@1, over the concepts where every mode of this result defines "
        "it (n_concepts_delta_f1; null without concept labels, or when no concept could be probed in "
        "every mode: e.g. codes that carry no information; the reason in undefined)",
        direction=HIGHER_IS_WORSE,
        bounds=(-1.0, 1.0),
        label="ΔF1 (amortization_gap's concepts)",
        short="ΔF1",
        legend="F1@2 − F1@1 of k-sparse concept probes (splitting); (n) concepts, the same in every mode",
        count="n_concepts_delta_f1",
        fmt=".4f",
        column=11,
        shared="delta_f1_subset",  # over a concept subset: kept apart from splitting's all-concept mean
        topic="splitting",
        figures=("pathologies",),
    )
    absorption_rate: float | None = metric(
        "Absorption",
        "Conditional: mean over concepts of the share of the main latents' misses on which an aligned "
        "latent fires, over the concepts where every mode of this result defines it (n_concepts_"
        "absorption; null without concepts, or when that set is empty: the reason in undefined)",
        direction=HIGHER_IS_WORSE,
        bounds=SHARE,
        label="absorption (amortization_gap's concepts)",
        short="absorb|miss",
        legend="absorbed share of the main latents' misses (conditional); (n) concepts where every mode "
        "misses",
        count="n_concepts_absorption",
        fmt=".3f",
        column=13,
        shared="absorption_rate_subset",  # kept apart from absorption_rate's all-concept mean
        topic="absorption",
        figures=("pathologies", "steps"),
    )
    seconds_per_1k_tokens: float = metric(
        "Seconds / 1k Tokens",
        "Inference time",
        unit="seconds",
        short="s/1k tok",
        legend="seconds of inference per 1,000 tokens",
        fmt=".4f",
        column=14,
    )
    coefficient_gap: float | None = optional_metric(
        "Coefficient Gap",
        "objective(this mode) − objective(the best codes on this mode's own supports): what re-sizing "
        "the chosen latents alone would recover (k_sparse: NNLS; L1 objectives: the lasso on the support)",
        direction=HIGHER_IS_WORSE,
        short="coef gap",
        legend="objective − that of the best codes on this mode's own supports (re-sizing recovers it)",
        fmt=".4f",
        figures=("steps",),
        column=16,
    )
    support_gap: float | None = optional_metric(
        "Support Gap",
        "objective(the best codes on this mode's supports) − objective(non_amortized): the rest of the "
        "gap, from choosing other latents (coefficient_gap + support_gap = this mode's gap; can be < 0 "
        "under k_sparse, where non_amortized is a search, not the optimum)",
        direction=HIGHER_IS_WORSE,
        short="supp gap",
        legend="objective of those best codes − non_amortized's (choosing other latents recovers it)",
        fmt=".4f",
        figures=("steps",),
        column=17,
    )
    l1_coefficient: float | None = optional_metric(
        "λ",
        "The λ this mode's codes were inferred with (null for encoders)",
        short="λ",
        legend="the L1 penalty this mode's codes were inferred with",
        fmt=".4g",
        column=15,
    )
    dense_rate_0_2: float | None = optional_metric(
        "Dense Rate ≥ 0.2",
        "Share firing on ≥ 20% of tokens (--protocol paper)",
        direction=HIGHER_IS_WORSE,
        bounds=SHARE,
        unit="share of latents",
        short="dense.2",
        legend="share of latents firing on at least 20% of tokens (the paper's)",
        fmt=".3f",
        column=8,
        protocol="paper",
        topic="firing",
    )
    f1_at_1: float | None = optional_metric(
        "F1@1",
        "1-sparse pseudo-label probe F1 (--protocol paper)",
        bounds=SHARE,
        short="F1@1",
        legend="1-sparse probe F1 on the paper's pseudo-label",
        fmt=".3f",
        column=9,
        protocol="paper",
        topic="splitting",
    )
    f1_at_2: float | None = optional_metric(
        "F1@2",
        "2-sparse pseudo-label probe F1 (--protocol paper)",
        bounds=SHARE,
        column=10,
        protocol="paper",
        topic="splitting",
    )
    nmse_refit: float | None = optional_metric(
        "NMSE Refit",
        "NMSE after refitting each token's codes by non-negative least squares on their own support "
        "(same decoder): the support's quality without the L1 shrinkage (null: no variance)",
        direction=HIGHER_IS_WORSE,
        bounds=(0.0, None),
        label="NMSE, codes refitted on their support",
        short="NMSE-refit",
        legend="NMSE after refitting each token's codes on their own support (NNLS)",
        always_shown=True,
        fmt=".4f",
        column=2,
        topic="reconstruction",
        figures=("pathologies", "steps"),
    )
    explained_variance: float | None = optional_metric(
        "Explained Variance",
        "As SAEBench's core reports it: 1 − mean‖x − x̂‖² / (mean‖x‖² − (mean over tokens and dims of "
        "x²)²) (null, with the reason in undefined, when that denominator is not positive: all-zero "
        "activations, or a mean square of at least d_in)",
        direction=LOWER_IS_WORSE,
        bounds=(None, 1.0),
        short="EV",
        legend="explained variance as SAEBench's core reports it (1 is perfect)",
        fmt=".4f",
        column=3,
        topic="reconstruction",
    )
    n_concepts_delta_f1: int | None = optional_metric(
        "ΔF1 Concepts",
        "Concepts delta_f1 is the mean over: those (of at most max_concepts: planted roles first, then "
        "the most frequent; splitting's mean_delta_f1 takes every concept) on which every mode of this "
        "result defines ΔF1 — the same set, and count, in every row",
    )
    n_concepts_absorption: int | None = optional_metric(
        "Absorption Concepts",
        "Concepts absorption_rate (the conditional rate) is the mean over: those on which every mode of "
        "this result defines it — the same set, and count, in every row",
    )
    n_concepts_full_absorption: int | None = optional_metric(
        "Full Absorption Concepts",
        "Concepts full_absorption_rate is the mean over: those on which every mode of this result "
        "defines it — the same set, and count, in every row",
    )
    full_absorption_rate: float | None = optional_metric(
        "Full Absorption",
        "Mean over concepts of the share of the concept's tokens (where its ground-truth probe fires) on "
        "which the main latents are silent and an aligned latent fires (SAEBench-style; defined even when "
        "the main latents never miss), over the concepts where every mode of this result defines it "
        "(n_concepts_full_absorption; null without concepts and under --protocol paper)",
        direction=HIGHER_IS_WORSE,
        bounds=SHARE,
        short="absorb",
        legend="share of a concept's tokens absorbed (main latents silent, an aligned latent fires); "
        "(n) concepts",
        count="n_concepts_full_absorption",
        fmt=".4f",
        column=12,
        shared="full_absorption_rate_subset",
        topic="absorption",
    )
    concepts: list[dict[str, Any]] | None = Field(
        default=None,
        title="Concepts",
        description="Per concept probed: the evidence the concept-averaged metrics are means of — "
        "concept, f1_at_1, f1_at_2, delta_f1, top_latents, n_positives, absorption_rate, "
        "full_absorption_rate, n_tokens, main_latents, absorbing_latents, n_concept_tokens, "
        "n_probe_fires, n_main_silent, n_absorbed, splitting_reason and absorption_reason (why a value "
        "is null); null without concept labels",
    )
    undefined: dict[str, str] | None = optional_metric(
        "Why Null", "Metric → why it could not be measured, for this row's null metrics"
    )


@dataclass(config=ConfigDict(title="Amortization Gap"))
class AmortizationGapEvalOutput(
    BaseEvalOutput[AmortizationGapEvalConfig, AmortizationMetricCategories, ModeRow]
):
    """Inference modes on one decoder: NMSE, L0, objective, dead/dense, splitting, absorption, time."""

    eval_config: AmortizationGapEvalConfig
    eval_id: str
    datetime_epoch_millis: int
    eval_result_metrics: AmortizationMetricCategories
    eval_result_details: list[ModeRow] = details_field("Modes", "One row per mode")
    eval_type_id: str = type_id_field(EVAL_TYPE_ID_AMORTIZATION_GAP)
