"""``absorption_rate``: how often a concept's main latents are silent and an aligned latent fires instead.

Definition (``config.absorption_definition``): concept labels of the activations, or SAEBench's first-letter
machinery on a TransformerLens model (auto: the latter when the source is one, read at
``blocks.L.hook_resid_post``). SAEBench's probes are trained once per run in the run's private work folder
(its probe files are pickles: never loaded from a shared place).
"""

from __future__ import annotations

import dataclasses

from sae_bench_amortization.activations.base import require_concepts
from sae_bench_amortization.evals.absorption_rate import EVAL
from sae_bench_amortization.evals.absorption_rate.eval_config import AbsorptionRateEvalConfig
from sae_bench_amortization.evals.absorption_rate.eval_output import (
    AbsorptionMetricCategories,
    AbsorptionMetrics,
    AbsorptionRateEvalOutput,
    ConceptAbsorption,
)
from sae_bench_amortization.evals.absorption_rate.first_letter import (
    first_letter_rows,
    use_saebench_first_letter,
)
from sae_bench_amortization.inference.dictionary import print_zero_rows_note
from sae_bench_amortization.metrics.concepts import (
    SplittingAccumulator,
    absorption_scores,
    mean_over,
    n_measured,
    null_reason,
)
from sae_bench_amortization.runner.loop import EvalContext, Evaluated, saebench_style


def absorption_rows(
    encode, source, sae_W_dec, config: AbsorptionRateEvalConfig, on_codes=None
) -> list[dict]:
    """Stream the source once through ``encode``; per-concept absorption rows (``on_codes(codes,
    batch)`` is told each batch's codes)."""
    tokens = SplittingAccumulator(source.concept_names, seed=config.seed, keep_inputs=True)
    for batch in source.iter_batches(config.batch_size):
        codes = encode(batch.acts)
        tokens.update(codes, batch.concepts, batch.acts)
        if on_codes is not None:
            on_codes(codes, batch)
    return absorption_scores(
        tokens,
        sae_W_dec,
        config.min_positives,
        config.max_k,
        config.f1_jump_threshold,
        config.cosine_threshold,
    )


def absorption_metrics(rows: list[dict]) -> AbsorptionMetrics:
    return AbsorptionMetrics(
        absorption_rate=mean_over(rows, "absorption_rate"),
        full_absorption_rate=mean_over(rows, "full_absorption_rate"),
        n_concepts=n_measured(rows, "absorption_rate"),
        null_reason=null_reason(rows, "absorption_rate", "absorption"),
    )


def check(requirements) -> None:
    """Before any work: the definition applies to the source (concept labels, or a TransformerLens model
    read at blocks.L.hook_resid_post)."""
    source, config = requirements.source, requirements.config
    if not use_saebench_first_letter(source, config.absorption_definition):
        require_concepts(source, "absorption_rate")


def evaluate(context: EvalContext) -> Evaluated:
    """One SAE × mode: absorption per concept, by the definition the config and the source select."""
    config, source = context.config, context.source
    if context.mode is not None and context.mode.spec.needs_lambda:
        print_zero_rows_note(context.base_sae, context.spec.sae_name)
    if use_saebench_first_letter(source, config.absorption_definition):
        rows, how = first_letter_rows(
            context.sae, source, config, context.work_dir, context.run_name
        )
        config = dataclasses.replace(config, **how)
    else:
        require_concepts(source, "absorption_rate")
        rows = absorption_rows(
            context.encode, source, context.sae.W_dec, config, context.ground_truth
        )
    metrics = absorption_metrics(rows)
    summary = {"absorption_rate": metrics.absorption_rate, "n_concepts": metrics.n_concepts}
    categories = AbsorptionMetricCategories(absorption=metrics)
    details = [ConceptAbsorption(**row) for row in rows]
    return context.result(AbsorptionRateEvalOutput, categories, details, summary, config)


run_eval = saebench_style(EVAL)  # SAEBench's run_eval(config, selected_saes, ...) shape
