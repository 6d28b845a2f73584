"""The per-SAE loop every eval of this package shares: skip finished results, load one SAE at a time,
evaluate, write artifacts and then the result JSON (its presence marks the SAE as done)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from sae_lens import SAE
from tqdm.auto import tqdm

from sae_bench_amortization.loading import SAESpec
from sae_bench_amortization.registry import SAEOutcome
from sae_bench_amortization.results import (
    artifact_path,
    ensure_output_dir,
    result_path,
    run_metadata,
    write_safetensors_atomic,
    write_text_atomic,
)


@dataclass
class Evaluated:
    """What an eval computed for one SAE: the typed output and files to write beside it."""

    output: Any  # a sae_bench BaseEvalOutput subclass instance
    summary: dict[str, float]
    artifacts: dict[str, tuple[dict[str, torch.Tensor], dict[str, str]]] = field(
        default_factory=dict
    )


def output_fields(spec: SAESpec, sae: SAE) -> dict[str, Any]:
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
    evaluate: Callable[[SAESpec, SAE], Evaluated],
    device: str = "cpu",
    dtype: str = "float32",
    force_rerun: bool = False,
) -> list[SAEOutcome]:
    """Run ``evaluate`` on each SAE whose result is missing (or all, with ``force_rerun``)."""
    output_path = ensure_output_dir(output_path)
    outcomes = []
    for spec in tqdm(specs, desc=f"{eval_name}: SAEs", unit="sae", leave=False, disable=None):
        path = result_path(output_path, spec.release, spec.sae_id)
        if path.exists() and not force_rerun:
            print(f"skipping {spec.sae_name}: {path} exists (--force-rerun to redo)")
            outcomes.append(SAEOutcome(spec.sae_name, "skipped", path))
            continue
        sae = spec.load(device, dtype)
        with torch.no_grad():
            evaluated = evaluate(spec, sae)
        for suffix, (tensors, metadata) in evaluated.artifacts.items():
            write_safetensors_atomic(
                artifact_path(output_path, spec.release, spec.sae_id, suffix), tensors, metadata
            )
        write_text_atomic(path, evaluated.output.to_json())
        outcomes.append(SAEOutcome(spec.sae_name, "written", path, evaluated.summary))
        del sae
    return outcomes
