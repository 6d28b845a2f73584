"""``splitting``: ΔF1 = F1@2 − F1@1 of k-sparse probes on SAE latents, per labelled concept."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from sae_bench_amortization.errors import InputError
from sae_bench_amortization.eval_loop import Evaluated, ModeRun, for_each_sae, output_fields
from sae_bench_amortization.evals.splitting.eval_config import SplittingEvalConfig
from sae_bench_amortization.evals.splitting.eval_output import (
    ConceptSplitting,
    SplittingEvalOutput,
    SplittingMetricCategories,
    SplittingMetrics,
)
from sae_bench_amortization.inference.modes import InferenceSettings
from sae_bench_amortization.loading import SAESpec, as_specs
from sae_bench_amortization.metrics.concepts import splitting_scores
from sae_bench_amortization.registry import ActivationFactory, SAEOutcome


def require_concepts(source, eval_name: str) -> None:
    if not source.concept_names:
        raise InputError(
            f"{eval_name} needs concept labels: use an activation file with 'concepts' (e.g. from "
            f"'saebench synth') or the embedded default; {source.describe()} has none"
        )


def encoder_on(sae):
    device, dtype = sae.W_dec.device, sae.W_dec.dtype
    return lambda x: sae.encode(x.to(device=device, dtype=dtype))


def splitting_metrics(rows: list[dict]) -> SplittingMetrics:
    n = len(rows)
    mean = (lambda key: sum(r[key] for r in rows) / n) if n else (lambda key: 0.0)
    return SplittingMetrics(
        mean_delta_f1=mean("delta_f1"),
        mean_f1_at_1=mean("f1_at_1"),
        mean_f1_at_2=mean("f1_at_2"),
        n_concepts=n,
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
    def evaluate(spec: SAESpec, sae, run: ModeRun) -> Evaluated:
        source = activations.for_sae(sae)
        require_concepts(source, "splitting")
        rows = splitting_scores(
            encoder_on(sae), source, config.batch_size, config.min_positives, config.seed
        )
        run_config = dataclasses.replace(
            config, activation_source=source.describe(), **run.config_fields()
        )
        metrics = splitting_metrics(rows)
        output = SplittingEvalOutput(
            eval_config=run_config,
            eval_result_metrics=SplittingMetricCategories(splitting=metrics),
            eval_result_details=[ConceptSplitting(**row) for row in rows],
            **output_fields(spec, sae),
        )
        return Evaluated(
            output, {"mean_delta_f1": metrics.mean_delta_f1, "n_concepts": metrics.n_concepts}
        )

    specs = as_specs(selected_saes)
    return for_each_sae(
        "splitting",
        specs,
        output_path,
        evaluate,
        activations,
        device,
        dtype,
        force_rerun,
        inference,
    )
