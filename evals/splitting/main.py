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
from sae_bench_amortization.metrics.accumulator import encode_stream
from sae_bench_amortization.metrics.concepts import (
    ConceptProbes,
    SplittingResult,
    SplittingSettings,
)
from sae_bench_amortization.runner.loop import EvalContext, Evaluated, saebench_style


def splitting_metrics(result: SplittingResult) -> SplittingMetrics:
    return SplittingMetrics(
        mean_delta_f1=result.mean_delta_f1,
        mean_f1_at_1=result.mean_f1_at_1,
        mean_f1_at_2=result.mean_f1_at_2,
        n_concepts=result.n_concepts,
        null_reason=result.null_reason,
    )


def check(requirements) -> None:
    """Before any work: the source must carry concept labels."""
    require_concepts(requirements.source, "splitting")


def evaluate(context: EvalContext) -> Evaluated:
    """One SAE × mode: ΔF1 per concept of the source's labels."""
    require_concepts(context.source, "splitting")
    if context.mode is not None and context.mode.spec.needs_lambda:
        print_zero_rows_note(context.base_sae, context.spec.sae_name)
    config, source = context.config, context.source
    probes = ConceptProbes(
        source.concept_names or [],
        seed=config.seed,
        splitting=SplittingSettings(config.min_positives),
    )
    batches = source.iter_batches(config.batch_size)
    encode_stream(batches, context.encode, [probes], context.ground_truth)
    result = probes.result().splitting
    assert result is not None  # asked for
    metrics = splitting_metrics(result)
    summary = {"mean_delta_f1": metrics.mean_delta_f1, "n_concepts": metrics.n_concepts}
    details = [ConceptSplitting(**row) for row in result.rows]
    return context.result(
        SplittingEvalOutput, SplittingMetricCategories(splitting=metrics), details, summary
    )


run_eval = saebench_style(EVAL)  # SAEBench's run_eval(config, selected_saes, ...) shape
