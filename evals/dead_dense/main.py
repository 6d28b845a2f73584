"""``dead_dense``: share of latents that never fire, and of latents that fire on too many tokens."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import torch
from sae_lens import SAE

from sae_bench_amortization.activations.base import ActivationBatch, ActivationSource
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
from sae_bench_amortization.metrics.accumulator import encode_stream
from sae_bench_amortization.metrics.firing import Firing, FiringResult, log_frequency_histogram
from sae_bench_amortization.runner.loop import EvalContext, Evaluated, saebench_style


def evaluate_sae(
    sae: SAE,
    activations: ActivationSource,
    config: DeadDenseEvalConfig,
    on_codes: Callable[[torch.Tensor, ActivationBatch], None] | None = None,
) -> tuple[PathologyMetrics, FiringResult]:
    """Stream the source through ``sae.encode`` and count firings (:class:`Firing`); ``on_codes(codes,
    batch)``: also told each batch's codes (the ground-truth tap)."""
    check_width(sae, activations)
    firing = Firing(sae.cfg.d_sae, config.dense_threshold)
    device, dtype = sae.W_dec.device, sae.W_dec.dtype

    def encode(acts: torch.Tensor) -> torch.Tensor:
        return sae.encode(acts.to(device=device, dtype=dtype))

    encode_stream(activations.iter_batches(config.batch_size), encode, [firing], on_codes)
    result = firing.result()
    return PathologyMetrics(**dataclasses.asdict(result.pathologies)), result


def evaluate(context: EvalContext) -> Evaluated:
    """One SAE × mode: pathology metrics, the histogram, and the feature-frequency file beside them."""
    config = context.config
    if context.mode is not None and context.mode.spec.needs_lambda:
        print_zero_rows_note(context.base_sae, context.spec.sae_name)
    metrics, firing = evaluate_sae(context.sae, context.source, config, context.ground_truth)
    histogram = log_frequency_histogram(firing.frequency, firing.n_tokens, config.histogram_bins)
    categories = DeadDenseMetricCategories(pathologies=metrics)
    details = [FrequencyHistogramBin(**row) for row in histogram]
    evaluated = context.result(
        DeadDenseEvalOutput, categories, details, dataclasses.asdict(metrics)
    )
    frequency_file = (
        {"feature_frequency": firing.frequency, "firing_counts": firing.counts},
        {
            "n_tokens": str(firing.n_tokens),
            "sae_name": context.spec.sae_name,
            "inference_mode": config.inference_mode,
        },
    )
    evaluated.artifacts["feature_frequency.safetensors"] = frequency_file
    return evaluated


run_eval = saebench_style(EVAL)  # SAEBench's run_eval(config, selected_saes, ...) shape
