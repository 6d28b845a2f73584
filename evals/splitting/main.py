"""``splitting``: ΔF1 = F1@2 − F1@1 of k-sparse probes on SAE latents, per labelled concept."""

from __future__ import annotations

from pathlib import Path

from sae_bench_amortization.concept_evals import (
    encoder_on,
    mean_over,
    require_concepts,
    run_concept_eval,
)
from sae_bench_amortization.evals.splitting.eval_config import SplittingEvalConfig
from sae_bench_amortization.evals.splitting.eval_output import (
    ConceptSplitting,
    SplittingEvalOutput,
    SplittingMetricCategories,
    SplittingMetrics,
)
from sae_bench_amortization.inference.modes import InferenceSettings
from sae_bench_amortization.metrics.concepts import splitting_scores
from sae_bench_amortization.registry import ActivationFactory, SAEOutcome

__all__ = ["encoder_on", "require_concepts", "run_eval", "splitting_metrics"]


def splitting_metrics(rows: list[dict]) -> SplittingMetrics:
    return SplittingMetrics(
        mean_delta_f1=mean_over(rows, "delta_f1"),
        mean_f1_at_1=mean_over(rows, "f1_at_1"),
        mean_f1_at_2=mean_over(rows, "f1_at_2"),
        n_concepts=len(rows),
    )


def run_eval(
    config: SplittingEvalConfig,
    selected_saes: list,
    activations: ActivationFactory,
    device: str,
    output_path: str | Path,
    force_rerun: bool = False,
    dtype: str = "float32",
    inference: InferenceSettings | None = None,
) -> list[SAEOutcome]:
    """SAEBench-shaped entry: ``selected_saes`` as (release, sae_id), (name, SAE) or SAESpec."""

    def rows_of(sae, source, config: SplittingEvalConfig, run_name: str):
        require_concepts(source, "splitting")
        rows = splitting_scores(
            encoder_on(sae), source, config.batch_size, config.min_positives, config.seed
        )
        return rows, {}

    def output_of(run_config, rows, fields):
        metrics = splitting_metrics(rows)
        output = SplittingEvalOutput(
            eval_config=run_config,
            eval_result_metrics=SplittingMetricCategories(splitting=metrics),
            eval_result_details=[ConceptSplitting(**row) for row in rows],
            **fields,
        )
        return output, {"mean_delta_f1": metrics.mean_delta_f1, "n_concepts": metrics.n_concepts}

    return run_concept_eval(
        "splitting",
        config,
        selected_saes,
        activations,
        device,
        output_path,
        force_rerun,
        dtype,
        inference,
        rows_of,
        output_of,
    )
