"""Before any work, the whole command is checked: every SAE loaded and sane (``sources.sanity``), every
eval's requirements met on every SAE (activation width, concept labels, a model, its own ``check``), and every
result's fingerprint compared with the stored one. The outcome, per eval × SAE × mode: compute it, or skip it
(stored and up to date). A stored result made with other inputs stops the command here with one line naming
what changed (``--force-rerun`` recomputes it), so nothing is written by a command that is then refused.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sae_bench_amortization.activations.base import ActivationSource
from sae_bench_amortization.activations.sources import check_width, source_identity
from sae_bench_amortization.digest import tensors_digest
from sae_bench_amortization.errors import InputError, first_line
from sae_bench_amortization.inference import Objective, resolve_objective
from sae_bench_amortization.modes import InferenceMode, InferenceSettings
from sae_bench_amortization.registry import EvalEntry
from sae_bench_amortization.runner import fingerprint as fp
from sae_bench_amortization.runner.eval_inputs import config_for, result_name
from sae_bench_amortization.runner.ground_truth import truth_identity
from sae_bench_amortization.runner.memory import is_out_of_memory
from sae_bench_amortization.runner.request import EvalRequest
from sae_bench_amortization.runner.results import result_path
from sae_bench_amortization.sources.saes import SAESpec
from sae_bench_amortization.sources.sanity import check_sae

if TYPE_CHECKING:  # annotations only
    from _typeshed import DataclassInstance
    from sae_lens import SAE


@dataclass(frozen=True)
class RequirementContext:
    """What an eval's ``check`` sees for one SAE: the SAE as loaded, the source it will read (None for
    evals that read a model themselves), its config and the request."""

    entry: EvalEntry
    spec: SAESpec
    sae: SAE
    source: ActivationSource | None
    config: DataclassInstance
    request: EvalRequest


@dataclass
class PlannedResult:
    """One result file of the command: where, its fingerprint, and the stored result when up to date."""

    mode: InferenceMode | None
    path: Path
    fingerprint: dict[str, Any]
    stored: dict[str, Any] | None = None  # not None: up to date, skipped


@dataclass
class Plan:
    results: dict[tuple[str, str], list[PlannedResult]] = field(default_factory=dict)
    loaded: dict[str, SAE] = field(default_factory=dict)  # SAE name → the SAE, kept for the work

    def for_sae(self, entry: EvalEntry, spec: SAESpec) -> list[PlannedResult]:
        return self.results[(entry.name, spec.sae_name)]


def load_checked(spec: SAESpec, request: EvalRequest) -> SAE:
    """The SAE loaded as the run loads it, refused with one line when it is not fit to evaluate."""
    try:
        sae = spec.load(request.device, request.dtype)
    except (RuntimeError, MemoryError) as exc:
        if not is_out_of_memory(exc):
            raise
        raise InputError(
            f"out of memory on {request.device} loading {spec.sae_name}: pass --dtype bfloat16 or "
            "another --device"
        ) from None
    check_sae(sae, spec.sae_name)
    return sae


def check_objective(sae_name: str, sae: SAE, settings: InferenceSettings) -> Objective:
    """The problem the modes solve on this SAE (``--objective auto`` resolved by its architecture),
    refused with one line where it cannot apply: λ given for k_sparse, k above d_sae."""
    objective = resolve_objective(settings.objective, sae.cfg.architecture())
    if objective != "k_sparse":
        return objective
    given = [flag for flag, value in (("--l1-coefficient", settings.l1_coefficient),
             ("--lambda-calibration", settings.lambda_calibration)) if value is not None]  # fmt: skip
    if given:
        raise InputError(
            f"SAE {sae_name} is solved as k_sparse (--objective {settings.objective}), which has no λ: "
            f"drop {' and '.join(given)} or pick an L1 objective (--objective l1, the paper's)"
        )
    k, d_sae = settings.k or getattr(sae.cfg, "k", None), int(sae.cfg.d_sae)
    if k is not None and int(k) > d_sae:
        raise InputError(
            f"SAE {sae_name}: k of the k-sparse problem is {k}, above its d_sae {d_sae}"
        )
    return objective


def plan_command(
    entries: list[EvalEntry],
    request: EvalRequest,
    output_paths: dict[str, Path] | None = None,
) -> Plan:
    """Check the whole command and decide each result (see the module doc). ``output_paths``: each eval's
    folder (default ``request.output_dir / <eval name>``). A single SAE stays loaded for the work."""
    names = [spec.sae_name for spec in request.saes]
    repeated = next((name for name in names if names.count(name) > 1), None)
    if repeated:
        raise InputError(
            f"SAE {repeated} is selected twice (its results would overwrite each other): select it once, "
            "or name the --sae-path copies apart with --sae-name"
        )
    plan = Plan()
    configs = {entry.name: config_for(entry, request) for entry in entries}
    for spec in request.saes:
        sae = load_checked(spec, request)
        check_objective(spec.sae_name, sae, request.inference)
        identity = {
            "release": spec.release,
            "sae_id": spec.sae_id,
            "weights_sha256": tensors_digest(sae.state_dict()),
        }
        for entry in entries:
            config = configs[entry.name]
            source = None
            activations = None
            if entry.needs == "activations":
                source = request.activations_for(sae)
                check_width(sae, source)
                activations = source_identity(source) | (truth_identity(sae, source) or {})
            check = entry.check_fn()
            extra = (
                check(RequirementContext(entry, spec, sae, source, config, request))
                if check
                else None
            )
            folder = (output_paths or {}).get(entry.name) or request.output_dir / entry.name
            planned = []
            for mode in request.inference.modes if entry.per_mode else [None]:
                path = result_path(folder, *result_name(entry, spec, mode, request.inference.modes))
                made_of = fp.fingerprint(
                    eval=entry.name,
                    config=fp.config_identity(config),
                    inference=fp.inference_identity(request.inference, mode, entry.per_mode),
                    sae=identity,
                    activations=activations,
                    model=model_identity(request) if entry.needs == "model" else None,
                    dtype=request.dtype,
                    seed=request.seed,
                    eval_inputs=extra,
                )
                stored = stored_if_up_to_date(path, made_of, request.force_rerun)
                planned.append(PlannedResult(mode, path, made_of, stored))
            plan.results[(entry.name, spec.sae_name)] = planned
        if len(request.saes) == 1:
            plan.loaded[spec.sae_name] = sae
        del sae
    return plan


def model_identity(request: EvalRequest) -> dict[str, Any]:
    """What an eval that reads a model itself reads: the model named (else the SAE's) and the text."""
    text = request.text
    named = text.text_file or text.dataset
    return {
        "model": request.model_name,
        "text": text.texts(text.dataset or "").identity() if named else None,
        "context_size": text.context_size,
    }


def read_result(path: Path) -> dict[str, Any]:
    try:
        stored = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(
            f"cannot read the existing result {path} ({first_line(exc)}): pass --force-rerun to "
            "recompute it"
        ) from None
    if not isinstance(stored, dict):
        raise InputError(f"the existing result {path} is not a JSON object: pass --force-rerun")
    return stored


def stored_if_up_to_date(
    path: Path, made_of: dict[str, Any], force_rerun: bool
) -> dict[str, Any] | None:
    """The stored result when it exists and was made of the same inputs; None when it is to be computed
    (absent, or ``force_rerun``); one line naming what changed otherwise."""
    if force_rerun or not path.exists():
        return None
    stored = read_result(path)
    old = stored.get("fingerprint")
    if old is None:
        raise InputError(
            f"{path} exists but records no fingerprint (made by SAEBench itself or an earlier version), so "
            "what made it is unknown: pass --force-rerun to recompute it, or another --output-dir"
        )
    if not isinstance(old, dict) or fp.comparable(old) != made_of:
        raise InputError(
            f"{path} was made with other inputs ({fp.changes(old, made_of)}): pass --force-rerun to "
            "recompute it, or another --output-dir"
        )
    return stored


def stored_numbers(stored: dict[str, Any]) -> dict[str, float | None]:
    """The metrics of a stored result's ``eval_result_metrics``, by name (categories flattened)."""
    numbers: dict[str, float | None] = {}

    def walk(value: object, name: str) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                walk(item, key)
        elif value is None or (isinstance(value, int | float) and not isinstance(value, bool)):
            numbers.setdefault(name, value)

    walk(stored.get("eval_result_metrics") or {}, "")
    return numbers


def stored_metrics(stored: dict[str, Any], limit: int = 6) -> str:
    """The first metrics of a stored result, as ``name value`` (4 significant digits; null as null)."""
    shown = [
        f"{name} {'null' if value is None else value if isinstance(value, int) else f'{value:.4g}'}"
        for name, value in stored_numbers(stored).items()
    ]
    return ", ".join(shown[:limit]) + (", ..." if len(shown) > limit else "")
