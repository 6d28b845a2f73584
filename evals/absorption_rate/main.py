"""``absorption_rate``: how often a concept's main latents are silent and an aligned latent fires instead."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from sae_bench_amortization.eval_loop import Evaluated, ModeRun, for_each_sae, output_fields
from sae_bench_amortization.evals.absorption_rate.eval_config import AbsorptionRateEvalConfig
from sae_bench_amortization.evals.absorption_rate.eval_output import (
    AbsorptionMetricCategories,
    AbsorptionMetrics,
    AbsorptionRateEvalOutput,
    ConceptAbsorption,
)
from sae_bench_amortization.evals.splitting.main import encoder_on, require_concepts
from sae_bench_amortization.inference.modes import InferenceSettings
from sae_bench_amortization.loading import SAESpec, as_specs
from sae_bench_amortization.metrics.concepts import SplittingAccumulator, absorption_scores
from sae_bench_amortization.registry import ActivationFactory, SAEOutcome


def absorption_rows(sae, source, config: AbsorptionRateEvalConfig) -> list[dict]:
    """Stream the source once through ``sae.encode``; per-concept absorption rows."""
    tokens = SplittingAccumulator(source.concept_names, seed=config.seed, keep_inputs=True)
    encode = encoder_on(sae)
    for batch in source.iter_batches(config.batch_size):
        tokens.update(encode(batch.acts), batch.concepts, batch.acts)
    return absorption_scores(
        tokens,
        sae.W_dec,
        config.min_positives,
        config.max_k,
        config.f1_jump_threshold,
        config.cosine_threshold,
    )


def absorption_metrics(rows: list[dict]) -> AbsorptionMetrics:
    n = len(rows)
    mean = (lambda key: sum(r[key] for r in rows) / n) if n else (lambda key: 0.0)
    return AbsorptionMetrics(
        absorption_rate=mean("absorption_rate"),
        full_absorption_rate=mean("full_absorption_rate"),
        n_concepts=n,
    )


def run_eval(
    config: AbsorptionRateEvalConfig,
    selected_saes: list,
    activations: ActivationFactory,
    device: str,
    output_path: str | Path,
    force_rerun: bool = False,
    dtype: str = "float32",
    inference: InferenceSettings | None = None,
) -> list[SAEOutcome]:
    def evaluate(spec: SAESpec, sae, run: ModeRun) -> Evaluated:
        source = activations.for_sae(sae)
        require_concepts(source, "absorption_rate")
        rows = absorption_rows(sae, source, config)
        metrics = absorption_metrics(rows)
        output = AbsorptionRateEvalOutput(
            eval_config=dataclasses.replace(
                config, activation_source=source.describe(), **run.config_fields()
            ),
            eval_result_metrics=AbsorptionMetricCategories(absorption=metrics),
            eval_result_details=[ConceptAbsorption(**row) for row in rows],
            **output_fields(spec, sae),
        )
        return Evaluated(
            output, {"absorption_rate": metrics.absorption_rate, "n_concepts": metrics.n_concepts}
        )

    specs = as_specs(selected_saes)
    return for_each_sae(
        "absorption_rate",
        specs,
        output_path,
        evaluate,
        activations,
        device,
        dtype,
        force_rerun,
        inference,
    )
