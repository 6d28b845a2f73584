"""``dead_dense``: share of latents that never fire, and of latents that fire on too many tokens."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from sae_bench_amortization.activations.sources import check_width
from sae_bench_amortization.eval_loop import Evaluated, ModeRun, for_each_sae, output_fields
from sae_bench_amortization.evals.dead_dense.eval_config import DeadDenseEvalConfig
from sae_bench_amortization.evals.dead_dense.eval_output import (
    DeadDenseEvalOutput,
    DeadDenseMetricCategories,
    FrequencyHistogramBin,
    PathologyMetrics,
)
from sae_bench_amortization.inference.modes import InferenceSettings
from sae_bench_amortization.loading import SAESpec, as_specs
from sae_bench_amortization.metrics.firing import (
    FiringCounter,
    log_frequency_histogram,
    pathologies,
)
from sae_bench_amortization.registry import ActivationFactory, SAEOutcome


def evaluate_sae(
    sae, activations, config: DeadDenseEvalConfig
) -> tuple[PathologyMetrics, FiringCounter]:
    """Stream the source through ``sae.encode`` and count firings. activations: an ActivationSource."""
    check_width(sae, activations)
    counter = FiringCounter(sae.cfg.d_sae)
    device, dtype = sae.W_dec.device, sae.W_dec.dtype
    for batch in activations.iter_batches(config.batch_size):
        counter.update(sae.encode(batch.acts.to(device=device, dtype=dtype)))
    stats = pathologies(counter, config.dense_threshold)
    return PathologyMetrics(**dataclasses.asdict(stats)), counter


def run_eval(
    config: DeadDenseEvalConfig,
    selected_saes: list,
    activations: ActivationFactory,
    device: str,
    output_path: str | Path,
    force_rerun: bool = False,
    dtype: str = "float32",
    inference: InferenceSettings | None = None,
) -> list[SAEOutcome]:
    """SAEBench-shaped entry: ``selected_saes`` as (release, sae_id), (name, SAE) or SAESpec."""

    def evaluate(spec: SAESpec, sae, run: ModeRun) -> Evaluated:
        source = activations.for_sae(sae)
        run_config = dataclasses.replace(
            config, activation_source=source.describe(), **run.config_fields()
        )
        metrics, counter = evaluate_sae(sae, source, run_config)
        histogram = log_frequency_histogram(
            counter.frequency, counter.n_tokens, run_config.histogram_bins
        )
        output = DeadDenseEvalOutput(
            eval_config=run_config,
            eval_result_metrics=DeadDenseMetricCategories(pathologies=metrics),
            eval_result_details=[FrequencyHistogramBin(**row) for row in histogram],
            **output_fields(spec, sae),
        )
        frequency_file = (
            {"feature_frequency": counter.frequency, "firing_counts": counter.counts},
            {
                "n_tokens": str(counter.n_tokens),
                "sae_name": spec.sae_name,
                "inference_mode": run.mode.name,
            },
        )
        return Evaluated(
            output, dataclasses.asdict(metrics), {"feature_frequency.safetensors": frequency_file}
        )

    specs = as_specs(selected_saes)
    return for_each_sae(
        "dead_dense",
        specs,
        output_path,
        evaluate,
        activations,
        device,
        dtype,
        force_rerun,
        inference,
    )
