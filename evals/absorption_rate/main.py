"""``absorption_rate``: how often a concept's main latents are silent and an aligned latent fires instead."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from sae_bench_amortization.concept_evals import (
    encoder_on,
    mean_over,
    require_concepts,
    run_concept_eval,
)
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
from sae_bench_amortization.inference.modes import InferenceSettings
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
    return AbsorptionMetrics(
        absorption_rate=mean_over(rows, "absorption_rate"),
        full_absorption_rate=mean_over(rows, "full_absorption_rate"),
        n_concepts=len(rows),
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
    work_dir: str | Path | None = None,
) -> list[SAEOutcome]:
    """SAEBench-shaped entry: ``selected_saes`` as (release, sae_id), (name, SAE) or SAESpec.

    Definition (``config.absorption_definition``): concept labels of the activations, or SAEBench's
    first-letter machinery on a TransformerLens model (auto: the latter when the source is one, read at
    ``blocks.L.hook_resid_post``). SAEBench's probes are trained once per run in a private temporary
    folder (its probe files are pickles: never loaded from a shared place), or in ``work_dir`` when given
    (then kept, with SAEBench's per-word tables).
    """
    keep_work = work_dir is not None
    work_dir = (
        Path(work_dir) if keep_work else Path(tempfile.mkdtemp(prefix="saebench-first-letter-"))
    )

    def rows_of(sae, source, config: AbsorptionRateEvalConfig, run_name: str):
        if use_saebench_first_letter(source, config.absorption_definition):
            return first_letter_rows(sae, source, config, work_dir, run_name)
        require_concepts(source, "absorption_rate")
        return absorption_rows(sae, source, config), {}

    def output_of(run_config, rows, fields):
        metrics = absorption_metrics(rows)
        output = AbsorptionRateEvalOutput(
            eval_config=run_config,
            eval_result_metrics=AbsorptionMetricCategories(absorption=metrics),
            eval_result_details=[ConceptAbsorption(**row) for row in rows],
            **fields,
        )
        return output, {
            "absorption_rate": metrics.absorption_rate,
            "n_concepts": metrics.n_concepts,
        }

    try:
        return run_concept_eval(
            "absorption_rate",
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
    finally:
        if not keep_work:
            shutil.rmtree(work_dir, ignore_errors=True)
