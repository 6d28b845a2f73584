"""The per-SAE loop every eval of this package shares: skip finished results, load one SAE at a time,
build each inference mode on its decoder (calibrating λ once per SAE when needed), evaluate, write
artifacts and then the result JSON (its presence marks the SAE × mode as done)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from sae_bench_amortization.activations.sources import check_width
from sae_bench_amortization.inference.modes import (
    InferenceMode,
    InferenceSettings,
    calibration_record,
    first_tokens,
    mode_sae,
    result_sae_id,
)
from sae_bench_amortization.loading import SAESpec
from sae_bench_amortization.registry import ActivationFactory, SAEOutcome
from sae_bench_amortization.results import (
    ResultLock,
    artifact_path,
    ensure_output_dir,
    result_path,
    run_metadata,
    write_safetensors_atomic,
    write_text_atomic,
)


@dataclass
class Evaluated:
    """What an eval computed for one SAE × mode: the typed output and files to write beside it."""

    output: Any  # a sae_bench BaseEvalOutput subclass instance
    summary: dict[str, float]
    artifacts: dict[str, tuple[dict[str, torch.Tensor], dict[str, str]]] = field(
        default_factory=dict
    )
    text_artifacts: dict[str, str] = field(default_factory=dict)  # suffix → text (e.g. a CSV)


@dataclass(frozen=True)
class ModeRun:
    """The inference mode an evaluation runs under, and the λ it uses (None for amortized)."""

    mode: InferenceMode
    l1_coefficient: float | None
    calibration: dict[str, Any]

    def config_fields(self) -> dict[str, Any]:
        return {
            "inference_mode": self.mode.name,
            "l1_coefficient": self.l1_coefficient,
            "lambda_calibration": self.calibration or None,
        }


def resolve_lambda(
    sae, activations: ActivationFactory, inference: InferenceSettings, modes: list[InferenceMode]
):
    """(λ, calibration or None) for an SAE: the given λ, or calibrated on its first tokens when a mode needs it."""
    if inference.l1_coefficient is not None or all(mode.kind == "amortized" for mode in modes):
        return inference.l1_coefficient, None
    from sae_bench_amortization.adapters.ista_refined import calibrate_l1_coefficient

    sample = first_tokens(activations.for_sae(sae), inference.calibration_tokens)
    calibration = calibrate_l1_coefficient(sae, sample.to(sae.W_dec.device, sae.W_dec.dtype))
    return calibration.l1_coefficient, calibration


def output_fields(spec: SAESpec, sae) -> dict[str, Any]:
    """The SAEBench fields naming the run and the SAE (eval_id, datetime, versions, ids, cfg)."""
    return {
        **run_metadata(),
        "sae_lens_id": spec.sae_id,
        "sae_lens_release_id": spec.release,
        "sae_cfg_dict": sae.cfg.to_dict(),
    }


def for_each_sae(
    eval_name: str,
    specs: list[SAESpec],
    output_path: str | Path,
    evaluate: Callable[[SAESpec, Any, ModeRun], Evaluated],
    activations: ActivationFactory,
    device: str = "cpu",
    dtype: str = "float32",
    force_rerun: bool = False,
    inference: InferenceSettings | None = None,
) -> list[SAEOutcome]:
    """Run ``evaluate`` on each SAE × inference mode whose result is missing (all, with ``force_rerun``)."""
    inference = inference or InferenceSettings()
    modes = inference.modes
    output_path = ensure_output_dir(output_path)
    outcomes = []
    for spec in tqdm(specs, desc=f"{eval_name}: SAEs", unit="sae", leave=False, disable=None):
        paths = {
            mode: result_path(output_path, spec.release, result_sae_id(spec.sae_id, mode, modes))
            for mode in modes
        }
        locks = {}
        for mode in modes:
            claimed = claim(paths[mode], force_rerun)
            if isinstance(claimed, str):
                print(f"skipping {_stem(paths[mode])}: {claimed}")
                outcomes.append(SAEOutcome(_stem(paths[mode]), "skipped", paths[mode]))
            else:
                locks[mode] = claimed
        pending = [mode for mode in modes if mode in locks]
        if not pending:
            continue
        try:
            sae = spec.load(device, dtype)
            check_width(sae, activations.for_sae(sae))
            l1, calibration = resolve_lambda(sae, activations, inference, pending)
            for mode in pending:
                run = ModeRun(
                    mode, None if mode.kind == "amortized" else l1, calibration_record(calibration)
                )
                with torch.no_grad():
                    evaluated = evaluate(spec, mode_sae(sae, mode, l1, inference), run)
                mode_id = result_sae_id(spec.sae_id, mode, modes)
                write_evaluated(evaluated, output_path, spec.release, mode_id)
                locks.pop(mode).release()
                outcomes.append(
                    SAEOutcome(_stem(paths[mode]), "written", paths[mode], evaluated.summary)
                )
            del sae
        finally:
            for lock in locks.values():
                lock.release()
    return outcomes


def _stem(path: Path) -> str:
    return path.name.removesuffix("_eval_results.json")


def write_evaluated(evaluated: Evaluated, output_path: Path, release: str, sae_id: str) -> None:
    """The artifacts beside the result, then the result JSON last (its presence marks the work done)."""
    for suffix, (tensors, metadata) in evaluated.artifacts.items():
        write_safetensors_atomic(
            artifact_path(output_path, release, sae_id, suffix), tensors, metadata
        )
    for suffix, text in evaluated.text_artifacts.items():
        write_text_atomic(artifact_path(output_path, release, sae_id, suffix), text)
    write_text_atomic(result_path(output_path, release, sae_id), evaluated.output.to_json())


def claim(path: Path, force_rerun: bool) -> ResultLock | str:
    """The lock on a result this run will compute, or why it skips it (it exists; another run holds it)."""
    if path.exists() and not force_rerun:
        return f"{path} exists (--force-rerun to redo)"
    lock = ResultLock(path)
    if not lock.acquire():
        return f"another run is computing it ({lock.path} is locked)"
    if path.exists() and not force_rerun:  # finished by another run while we looked
        lock.release()
        return f"{path} exists (--force-rerun to redo)"
    return lock


def for_each_sae_once(
    eval_name: str,
    specs: list[SAESpec],
    output_path: str | Path,
    evaluate: Callable[[SAESpec, Any], Evaluated],
    activations: ActivationFactory,
    device: str = "cpu",
    dtype: str = "float32",
    force_rerun: bool = False,
) -> list[SAEOutcome]:
    """Like :func:`for_each_sae` for evals that compare modes inside one result per SAE."""
    output_path = ensure_output_dir(output_path)
    outcomes = []
    for spec in tqdm(specs, desc=f"{eval_name}: SAEs", unit="sae", leave=False, disable=None):
        path = result_path(output_path, spec.release, spec.sae_id)
        claimed = claim(path, force_rerun)
        if isinstance(claimed, str):
            print(f"skipping {spec.sae_name}: {claimed}")
            outcomes.append(SAEOutcome(spec.sae_name, "skipped", path))
            continue
        with claimed:
            sae = spec.load(device, dtype)
            check_width(sae, activations.for_sae(sae))
            evaluated = evaluate(spec, sae)
            write_evaluated(evaluated, output_path, spec.release, spec.sae_id)
            outcomes.append(SAEOutcome(spec.sae_name, "written", path, evaluated.summary))
            del sae
    return outcomes
