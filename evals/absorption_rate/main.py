"""``absorption_rate``: how often a concept's main latents are silent and an aligned latent fires instead.

Definition (``config.absorption_definition``): concept labels of the activations, or SAEBench's first-letter
machinery on a TransformerLens model (auto: the latter when the source is one, read at
``blocks.L.hook_resid_post``). SAEBench's probes are trained once per run in the run's private work folder
(its probe files are pickles: never loaded from a shared place).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import torch

from sae_bench_amortization.activations.base import (
    ActivationBatch,
    ActivationSource,
    require_concepts,
)
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
from sae_bench_amortization.metrics.accumulator import encode_stream
from sae_bench_amortization.metrics.concepts import (
    AbsorptionResult,
    AbsorptionSettings,
    ConceptProbes,
)
from sae_bench_amortization.runner.loop import EvalContext, Evaluated, saebench_style


def absorption_result(
    encode: Callable[[torch.Tensor], torch.Tensor],
    source: ActivationSource,
    decoder: torch.Tensor,
    config: AbsorptionRateEvalConfig,
    on_codes: Callable[[torch.Tensor, ActivationBatch], None] | None = None,
) -> AbsorptionResult:
    """Stream the source once through ``encode`` into :class:`ConceptProbes`: per-concept absorption
    against ``decoder`` [d_sae, d_in] (``on_codes(codes, batch)`` is told each batch's codes)."""
    settings = AbsorptionSettings(
        decoder,
        min_positives=config.min_positives,
        max_k=config.max_k,
        f1_jump_threshold=config.f1_jump_threshold,
        cosine_threshold=config.cosine_threshold,
    )
    probes = ConceptProbes(source.concept_names or [], seed=config.seed, absorption=settings)
    encode_stream(source.iter_batches(config.batch_size), encode, [probes], on_codes)
    result = probes.result().absorption
    assert result is not None  # asked for
    return result


def absorption_metrics(result: AbsorptionResult) -> AbsorptionMetrics:
    return AbsorptionMetrics(
        absorption_rate=result.absorption_rate,
        full_absorption_rate=result.full_absorption_rate,
        n_concepts=result.n_concepts,
        null_reason=result.null_reason,
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
        metrics = absorption_metrics(AbsorptionResult.of(rows))
    else:
        require_concepts(source, "absorption_rate")
        decoder = context.sae.W_dec
        result = absorption_result(context.encode, source, decoder, config, context.ground_truth)
        rows, metrics = result.rows, absorption_metrics(result)
    summary = {"absorption_rate": metrics.absorption_rate, "n_concepts": metrics.n_concepts}
    categories = AbsorptionMetricCategories(absorption=metrics)
    details = [ConceptAbsorption(**row) for row in rows]
    return context.result(AbsorptionRateEvalOutput, categories, details, summary, config)


run_eval = saebench_style(EVAL)  # SAEBench's run_eval(config, selected_saes, ...) shape
