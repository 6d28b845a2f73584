"""What the evals computed from concept-labelled tokens (splitting, absorption_rate) share."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sae_bench_amortization.errors import InputError
from sae_bench_amortization.eval_loop import Evaluated, ModeRun, for_each_sae, output_fields
from sae_bench_amortization.inference.modes import InferenceSettings
from sae_bench_amortization.loading import SAESpec, as_specs
from sae_bench_amortization.registry import ActivationFactory, SAEOutcome


def require_concepts(source, eval_name: str) -> None:
    """One-line error when the activation source carries no concept labels."""
    if not source.concept_names:
        raise InputError(
            f"{eval_name} needs concept labels: use an activation file with 'concepts' (e.g. from "
            f"'saebench synth') or the embedded default; {source.describe()} has none"
        )


def mean_over(rows: list[dict], key: str) -> float:
    """Mean of ``row[key]`` over per-concept rows (0.0 when there are none, reported with n_concepts 0)."""
    return sum(row[key] for row in rows) / len(rows) if rows else 0.0


def encoder_on(sae) -> Callable:
    """inputs [B, d_in] (any device/dtype) → sae.encode on the SAE's own device and dtype."""
    device, dtype = sae.W_dec.device, sae.W_dec.dtype
    return lambda x: sae.encode(x.to(device=device, dtype=dtype))


def run_concept_eval(
    eval_name: str,
    config: Any,
    selected_saes: list,
    activations: ActivationFactory,
    device: str,
    output_path: str | Path,
    force_rerun: bool,
    dtype: str,
    inference: InferenceSettings | None,
    rows_of: Callable[[Any, Any, Any, str], tuple[list[dict], dict[str, Any]]],
    output_of: Callable[[Any, list[dict], dict], tuple[Any, dict[str, float]]],
) -> list[SAEOutcome]:
    """The per-SAE × mode loop: rows_of(sae, source, config, run_name) → (per-concept rows, config fields
    saying how they were made); run_name is ``<sae_name>__<mode>``;
    output_of(run_config, rows, saebench_fields) → (typed output, summary)."""

    def evaluate(spec: SAESpec, sae, run: ModeRun) -> Evaluated:
        source = activations.for_sae(sae)
        rows, how = rows_of(sae, source, config, f"{spec.sae_name}__{run.mode.file_tag}")
        run_config = dataclasses.replace(
            config, activation_source=source.describe(), **run.config_fields(), **how
        )
        output, summary = output_of(run_config, rows, output_fields(spec, sae))
        return Evaluated(output, summary)

    specs = as_specs(selected_saes)
    return for_each_sae(
        eval_name, specs, output_path, evaluate, activations, device, dtype, force_rerun, inference
    )
