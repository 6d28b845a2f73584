"""``splitting``: ΔF1 = F1@2 − F1@1 of k-sparse probes on SAE latents, per labelled concept."""

from __future__ import annotations

from sae_bench_amortization.activations.base import require_concepts
from sae_bench_amortization.evals.splitting import EVAL
from sae_bench_amortization.evals.splitting.eval_output import (
    ConceptSplitting,
    SplittingEvalOutput,
    SplittingMetricCategories,
    SplittingMetrics,
)
from sae_bench_amortization.inference.dictionary import print_zero_rows_note
from sae_bench_amortization.metrics.concepts import (
    mean_over,
    n_measured,
    null_reason,
    splitting_scores,
)
from sae_bench_amortization.runner.loop import EvalContext, Evaluated, saebench_style


def splitting_metrics(rows: list[dict]) -> SplittingMetrics:
    return SplittingMetrics(
        mean_delta_f1=mean_over(rows, "delta_f1"),
        mean_f1_at_1=mean_over(rows, "f1_at_1"),
        mean_f1_at_2=mean_over(rows, "f1_at_2"),
        n_concepts=n_measured(rows, "delta_f1"),
        null_reason=null_reason(rows, "delta_f1", "ΔF1"),
    )


def check(requirements) -> None:
    """Before any work: the source must carry concept labels."""
    require_concepts(requirements.source, "splitting")


def evaluate(context: EvalContext) -> Evaluated:
    """One SAE × mode: ΔF1 per concept of the source's labels."""
    require_concepts(context.source, "splitting")
    if context.mode is not None and context.mode.spec.needs_lambda:
        print_zero_rows_note(context.base_sae, context.spec.sae_name)
    config = context.config
    rows = splitting_scores(
        context.encode,
        context.source,
        config.batch_size,
        config.min_positives,
        config.seed,
        context.ground_truth,
    )
    metrics = splitting_metrics(rows)
    summary = {"mean_delta_f1": metrics.mean_delta_f1, "n_concepts": metrics.n_concepts}
    details = [ConceptSplitting(**row) for row in rows]
    return context.result(
        SplittingEvalOutput, SplittingMetricCategories(splitting=metrics), details, summary
    )


run_eval = saebench_style(EVAL)  # SAEBench's run_eval(config, selected_saes, ...) shape
