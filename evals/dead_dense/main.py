"""``dead_dense``: share of latents that never fire, and of latents that fire on too many tokens."""

from __future__ import annotations

import dataclasses

from sae_bench_amortization.activations.sources import check_width
from sae_bench_amortization.evals.dead_dense import EVAL
from sae_bench_amortization.evals.dead_dense.eval_config import DeadDenseEvalConfig
from sae_bench_amortization.evals.dead_dense.eval_output import (
    DeadDenseEvalOutput,
    DeadDenseMetricCategories,
    FrequencyHistogramBin,
    PathologyMetrics,
)
from sae_bench_amortization.inference.dictionary import print_zero_rows_note
from sae_bench_amortization.metrics.firing import (
    FiringCounter,
    log_frequency_histogram,
    pathologies,
)
from sae_bench_amortization.runner.loop import EvalContext, Evaluated, saebench_style


def evaluate_sae(
    sae, activations, config: DeadDenseEvalConfig, on_codes=None
) -> tuple[PathologyMetrics, FiringCounter]:
    """Stream the source through ``sae.encode`` and count firings. activations: an ActivationSource;
    ``on_codes(codes, batch)``: also told each batch's codes (the ground-truth tap)."""
    check_width(sae, activations)
    counter = FiringCounter(sae.cfg.d_sae)
    device, dtype = sae.W_dec.device, sae.W_dec.dtype
    for batch in activations.iter_batches(config.batch_size):
        codes = sae.encode(batch.acts.to(device=device, dtype=dtype))
        counter.update(codes)
        if on_codes is not None:
            on_codes(codes, batch)
    stats = pathologies(counter, config.dense_threshold)
    return PathologyMetrics(**dataclasses.asdict(stats)), counter


def evaluate(context: EvalContext) -> Evaluated:
    """One SAE × mode: pathology metrics, the histogram, and the feature-frequency file beside them."""
    config = context.config
    if context.mode is not None and context.mode.spec.needs_lambda:
        print_zero_rows_note(context.base_sae, context.spec.sae_name)
    metrics, counter = evaluate_sae(context.sae, context.source, config, context.ground_truth)
    histogram = log_frequency_histogram(counter.frequency, counter.n_tokens, config.histogram_bins)
    categories = DeadDenseMetricCategories(pathologies=metrics)
    details = [FrequencyHistogramBin(**row) for row in histogram]
    evaluated = context.result(
        DeadDenseEvalOutput, categories, details, dataclasses.asdict(metrics)
    )
    frequency_file = (
        {"feature_frequency": counter.frequency, "firing_counts": counter.counts},
        {
            "n_tokens": str(counter.n_tokens),
            "sae_name": context.spec.sae_name,
            "inference_mode": context.mode.name,
        },
    )
    evaluated.artifacts["feature_frequency.safetensors"] = frequency_file
    return evaluated


run_eval = saebench_style(EVAL)  # SAEBench's run_eval(config, selected_saes, ...) shape
