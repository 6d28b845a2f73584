"""The one loop every eval runs in, SAE by SAE: skip finished results, claim each result with a lock, load
the SAE once, build each inference mode on its decoder (λ calibrated once per SAE when a mode needs it),
call the eval's ``evaluate``, write artifacts and then the result JSON (its presence marks the work done).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

import torch
from sae_bench.evals.base_eval_output import BaseMetricCategories
from tqdm.auto import tqdm

from sae_bench_amortization.activations.base import ActivationSource
from sae_bench_amortization.activations.sources import CountingSource, check_width
from sae_bench_amortization.atomic import (
    make_folder,
    remove_if_empty,
    write_safetensors_atomic,
    write_text_atomic,
)
from sae_bench_amortization.errors import InputError
from sae_bench_amortization.inference.calibration import Calibration, calibrate_l1_coefficient
from sae_bench_amortization.inference.objectives import k_of
from sae_bench_amortization.modes import (
    InferenceMode,
    InferenceSettings,
    LambdaCalibration,
    calibrate_mode,
    calibrates_own_lambda,
    calibration_record,
    first_tokens,
    mode_sae,
    with_mode,
)
from sae_bench_amortization.registry import EvalEntry
from sae_bench_amortization.runner.eval_inputs import config_for
from sae_bench_amortization.runner.fingerprint import changes
from sae_bench_amortization.runner.ground_truth import GroundTruthTap, tap_for
from sae_bench_amortization.runner.memory import chunk_bytes, fit_batch_size, is_out_of_memory
from sae_bench_amortization.runner.outputs import ground_truth_metrics, with_ground_truth
from sae_bench_amortization.runner.plan import (
    Plan,
    PlannedResult,
    check_objective,
    plan_command,
    stored_if_up_to_date,
    stored_metrics,
    stored_numbers,
)
from sae_bench_amortization.runner.request import ActivationFactory, EvalRequest, SAEOutcome
from sae_bench_amortization.runner.results import ResultLock, artifact_path, run_metadata
from sae_bench_amortization.sources.saes import SAESpec, as_specs

if TYPE_CHECKING:  # annotations only
    from _typeshed import DataclassInstance
    from sae_lens import SAE

# an eval's config class (a pydantic dataclass on SAEBench's BaseEvalConfig)
Config = TypeVar("Config", bound="DataclassInstance")


class ResultOutput(Protocol):
    """A result as written: a SAEBench typed output (``BaseEvalOutput``), or :class:`ResultText`."""

    def to_json(self) -> str: ...


@dataclass
class Evaluated:
    """What an eval computed for one SAE (× mode): the typed output and files to write beside it."""

    output: ResultOutput
    summary: dict[str, float]
    artifacts: dict[str, tuple[dict[str, torch.Tensor], dict[str, str]]] = field(
        default_factory=dict
    )
    text_artifacts: dict[str, str] = field(default_factory=dict)  # suffix → text (e.g. a CSV)


@dataclass(frozen=True)
class ResultText:
    """A result already serialized (SAEBench's own evals write their JSON themselves)."""

    text: str

    def to_json(self) -> str:
        return self.text


class SAEWork:
    """One SAE of a run, loaded and prepared once, lazily: the SAE, its activation source (width
    checked), and λ — the shared one (non-amortized mean L0 matched to the encoder's on the first
    ``calibration_tokens`` tokens, or the given ``--l1-coefficient``) and, with per-mode calibration, the
    own λ of each mode whose kind calibrates one (its mean L0 matched to the encoder's).

    What is loaded so far is explicit: ``loaded_sae`` is None until the SAE is loaded."""

    def __init__(self, spec: SAESpec, request: EvalRequest, sae: SAE | None = None):
        self.spec, self.request = spec, request
        self.loaded_sae = sae  # given: loaded (and checked) already when the command was planned
        self._source: ActivationSource | None = None
        self._calibration_tokens: torch.Tensor | None = None
        self._shared_lambda: tuple[float, Calibration | None] | None = None
        self._per_mode: dict[str, Calibration] = {}
        self._inference: InferenceSettings | None = None

    @property
    def sae(self) -> SAE:
        if self.loaded_sae is None:
            self.loaded_sae = self.spec.load(self.request.device, self.request.dtype)
        return self.loaded_sae

    @property
    def source(self) -> ActivationSource:
        if self._source is None:
            source = self.request.activations_for(self.sae)
            check_width(self.sae, source)
            self._source = source
        return self._source

    @property
    def calibration_tokens(self) -> torch.Tensor:
        """The first ``calibration_tokens`` activations [N, d_in] on the SAE's device and dtype."""
        if self._calibration_tokens is None:
            sae, settings = self.sae, self.request.inference
            sample = first_tokens(self.request.activations_for(sae), settings.calibration_tokens)
            self._calibration_tokens = sample.to(sae.W_dec.device, sae.W_dec.dtype)
        return self._calibration_tokens

    @property
    def inference(self) -> InferenceSettings:
        """The run's inference settings for this SAE: ``--objective auto`` resolved by its architecture,
        and for ``k_sparse`` its k (given, the SAE's own, else its encoder's mean L0 on the calibration
        tokens, rounded), at most d_sae."""
        if self._inference is None:
            settings = self.request.inference
            objective = check_objective(self.spec.sae_name, self.sae, settings)
            k = settings.k
            if objective == "k_sparse" and k is None:
                k = k_of(self.sae, self.calibration_tokens)
            self._inference = dataclasses.replace(settings, objective=objective, k=k)
        return self._inference

    @property
    def uses_lambda(self) -> bool:
        """False under ``k_sparse`` (no penalty): no mode has a λ."""
        return self.inference.objective != "k_sparse"

    @property
    def shared_lambda(self) -> tuple[float, Calibration | None]:
        """(λ, calibration or None): the given λ, or non-amortized L0 matched to the encoder's (under the
        run's objective)."""
        if self._shared_lambda is None:
            given = self.request.inference.l1_coefficient
            objective = self.inference.objective
            if given is not None:
                self._shared_lambda = given, None
            elif objective == "k_sparse":
                raise InputError("the k-sparse problem has no λ")
            else:
                weighted = objective == "l1_decoder_norm"  # (auto is resolved: l1 otherwise)
                calibration = calibrate_l1_coefficient(
                    self.sae,
                    self.calibration_tokens,
                    objective="l1_decoder_norm" if weighted else "l1",
                )
                self._shared_lambda = calibration.l1_coefficient, calibration
        return self._shared_lambda

    def lambda_for(
        self, mode: InferenceMode, scope: LambdaCalibration = "shared"
    ) -> tuple[float | None, Calibration | None]:
        """(λ, calibration or None) of ``mode``: None for modes without λ; with ``scope`` "per_mode" the
        mode's own calibrated λ when its kind calibrates one (unless λ was given), else the shared one."""
        settings = self.inference
        if not mode.spec.needs_lambda or not self.uses_lambda:
            return None, None
        own = scope == "per_mode" and calibrates_own_lambda(mode)
        if not own or settings.l1_coefficient is not None:
            return self.shared_lambda
        if mode.name not in self._per_mode:
            self._per_mode[mode.name] = calibrate_mode(
                self.sae, self.calibration_tokens, mode, settings
            )
        calibration = self._per_mode[mode.name]
        return calibration.l1_coefficient, calibration


@dataclass(kw_only=True)
class EvalContext(Generic[Config]):
    """What ``evaluate`` gets for one SAE (× mode). Everything is computed on first use: an eval that
    reads a model itself never builds an activation source.

    ``sae`` is the SAE whose ``encode`` gives the codes (for a per-mode eval, the mode's SAE on the base
    SAE's decoder); ``base_sae`` the SAE as loaded; ``source`` the activations it reads; ``config`` the
    eval's config with this run's fields filled; ``mode`` None for evals that compare modes themselves.
    What has been computed is explicit: the private fields below are None until then.
    """

    entry: EvalEntry
    spec: SAESpec
    work: SAEWork
    base_config: Config
    mode: InferenceMode | None
    work_dir: Path  # intermediate files: a private temporary folder (removed) or request.work_dir
    _source: CountingSource | None = field(default=None, init=False, repr=False)
    _sae: SAE | None = field(default=None, init=False, repr=False)
    _tap: GroundTruthTap | None = field(default=None, init=False, repr=False)
    _tap_made: bool = field(default=False, init=False, repr=False)
    _config: Config | None = field(default=None, init=False, repr=False)

    @property
    def request(self) -> EvalRequest:
        return self.work.request

    @property
    def base_sae(self) -> SAE:
        return self.work.sae

    @property
    def source(self) -> CountingSource:
        """The SAE's source, counting the tokens the eval reads (with a progress bar for slow modes)."""
        if self._source is None:
            modes = [self.mode] if self.mode is not None else self.request.inference.modes
            slow = any((mode.n_steps or 0) > SLOW_STEPS for mode in modes)
            self._source = CountingSource(self.work.source, self.run_name if slow else None)
        return self._source

    @property
    def tokens_read(self) -> int:
        """Tokens the eval read from ``source`` (its longest pass; 0 when it never built the source)."""
        return 0 if self._source is None else self._source.tokens_read

    @property
    def lambda_scope(self) -> LambdaCalibration:
        """ "shared" (one λ per SAE) or "per_mode" (each mode that calibrates its own), as the run asks."""
        return self.request.inference.lambda_calibration or "shared"

    @property
    def l1_coefficient(self) -> float | None:
        """λ of this mode (None for modes that do not use one)."""
        if self.mode is None:
            return None
        return self.work.lambda_for(self.mode, self.lambda_scope)[0]

    @property
    def sae(self) -> SAE:
        if self._sae is None:
            self._sae = (
                self.base_sae
                if self.mode is None
                else mode_sae(self.base_sae, self.mode, self.l1_coefficient, self.work.inference)
            )
        return self._sae

    @property
    def ground_truth(self) -> GroundTruthTap | None:
        """On a synthetic source, the tap evals feed their codes to (``tap(codes, batch)``); else None."""
        if not self._tap_made:
            self._tap, self._tap_made = tap_for(self.sae, self.source), True
        return self._tap

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """codes [B, d_sae] of ``sae`` for inputs [B, d_in] on any device/dtype (moved to the SAE's)."""
        sae = self.sae
        return sae.encode(x.to(device=sae.W_dec.device, dtype=sae.W_dec.dtype))

    @property
    def run_name(self) -> str:
        """``<sae_name>__<mode>`` (the SAE name alone for evals that compare modes)."""
        return self.spec.sae_name if self.mode is None else with_mode(self.spec.sae_name, self.mode)

    @property
    def config(self) -> Config:
        """The eval's config with the run's fields it has: the mode, its λ and calibration, the source."""
        if self._config is None:
            self._config = dataclasses.replace(self.base_config, **self._run_fields())
        return self._config

    def _run_fields(self) -> dict[str, Any]:
        names = {f.name for f in dataclasses.fields(self.base_config)}
        values: dict[str, Any] = {}
        if self.mode is not None and "inference_mode" in names:
            inference = self.request.inference
            if not self.work.uses_lambda:
                calibration = None
            elif self.mode.spec.needs_lambda:
                calibration = self.work.lambda_for(self.mode, self.lambda_scope)[1]
            elif inference.l1_coefficient is None and inference.needs_lambda:
                calibration = self.work.shared_lambda[1]  # recorded beside the modes that use it
            else:
                calibration = None
            values |= {
                "inference_mode": self.mode.name,
                "l1_coefficient": self.l1_coefficient,
                "lambda_calibration": calibration_record(calibration) or None,
            }
        if "objective" in names and (self.mode is None or self.mode.spec.needs_lambda):
            values |= objective_fields(self.work.inference)
        if "activation_source" in names and self.entry.needs == "activations":
            values["activation_source"] = self.source.describe()
        if "batch_size" in names and self.entry.needs == "activations":
            requested = getattr(self.base_config, "batch_size")  # noqa: B009 - a field only some configs have
            fitted = fit_batch_size(
                requested, int(self.base_sae.cfg.d_sae), str(self.base_sae.W_dec.device)
            )
            if fitted < requested:
                print(
                    f"{self.spec.sae_name}: {fitted} tokens per chunk (not {requested}) so that a chunk's "
                    f"buffers fit the free memory (d_sae {self.base_sae.cfg.d_sae})",
                    file=sys.stderr,
                )
                values["batch_size"] = fitted
        return values

    def result(
        self,
        output_class: Callable[..., ResultOutput],
        categories: BaseMetricCategories,
        details: Sequence[object],
        summary: dict[str, float],
        config: object = None,
    ) -> Evaluated:
        """``output_class(...)`` (a SAEBench typed output) for this SAE (× mode) with this run's config
        (or ``config``), and the summary printed for it. When the eval fed the ground-truth tap, its
        metrics become the category ``ground_truth``."""
        tap = self._tap
        if tap is not None and tap.used and not hasattr(categories, "ground_truth"):
            categories = with_ground_truth(categories, ground_truth_metrics(tap.metrics()))
        output = output_class(
            eval_config=self.config if config is None else config,
            eval_result_metrics=categories,
            eval_result_details=details,
            **self.saebench_fields(),
        )
        return Evaluated(output, summary)

    def saebench_fields(self, sae: SAE | None = None) -> dict[str, Any]:
        """The SAEBench fields naming the run and the SAE (eval_id, datetime, versions, ids, cfg)."""
        return {
            **run_metadata(),
            "sae_lens_id": self.spec.sae_id,
            "sae_lens_release_id": self.spec.release,
            "sae_cfg_dict": (sae or self.sae).cfg.to_dict(),
        }


def objective_fields(settings: InferenceSettings) -> dict[str, Any]:
    """The eval_config fields naming the problem the modes solved (``auto`` resolved): ``objective`` and,
    for ``k_sparse``, ``k_sparse_k``."""
    return {
        "objective": settings.objective,
        "k_sparse_k": settings.k if settings.objective == "k_sparse" else None,
    }


def run_entry(
    entry: EvalEntry,
    request: EvalRequest,
    output_path: str | Path | None = None,
    plan: Plan | None = None,
) -> list[SAEOutcome]:
    """``entry`` on every SAE × mode of ``request`` whose result is missing (all, with force_rerun), into
    ``output_path`` (default ``request.output_dir / entry.name``). ``plan``: the command's checks and
    decisions (:func:`~sae_bench_amortization.runner.plan.plan_command`), made here when not given."""
    output_path = Path(output_path or request.output_dir / entry.name)
    if plan is None:
        plan = plan_command([entry], request, {entry.name: output_path})
    base_config = config_for(entry, request)
    keep_work = request.work_dir is not None
    work_dir = request.work_dir or Path(tempfile.mkdtemp(prefix=f"saebench-{entry.name}-"))
    outcomes: list[SAEOutcome] = []
    evaluate = entry.evaluate_fn()
    created: list[Path] = []
    try:
        for spec in tqdm(
            request.saes, desc=f"{entry.name}: SAEs", unit="sae", leave=False, disable=None
        ):
            results = plan.for_sae(entry, spec)
            claims: dict[Path, ResultLock | tuple[str, dict | None]] = {}
            try:  # in path order: two runs waiting on each other's locks never deadlock
                for result in sorted(results, key=lambda r: str(r.path)):
                    if result.stored is None:
                        created += make_folder(result.path.parent)
                        claims[result.path] = claim(result, request.force_rerun)
            except BaseException:
                for claimed in claims.values():
                    if isinstance(claimed, ResultLock):
                        claimed.release()
                raise
            planned: dict[InferenceMode | None, PlannedResult] = {}
            locks: dict[InferenceMode | None, ResultLock] = {}
            for result in results:
                claimed = claims.get(result.path, ("up to date", result.stored))
                if isinstance(claimed, ResultLock):
                    planned[result.mode], locks[result.mode] = result, claimed
                    continue
                why, stored = claimed
                shown = f" ({stored_metrics(stored)})" if stored is not None else ""
                print(f"skipping {_stem(result.path)}: {why}{shown}")
                metrics = stored_numbers(stored) if stored is not None else {}
                outcomes.append(SAEOutcome(_stem(result.path), "skipped", result.path, metrics))
            if not locks:
                continue
            work = SAEWork(spec, request, plan.loaded.get(spec.sae_name))
            try:
                for mode, result in planned.items():
                    context = EvalContext(
                        entry=entry, spec=spec, work=work, base_config=base_config, mode=mode,
                        work_dir=work_dir,
                    )  # fmt: skip
                    with torch.no_grad(), out_of_memory_as_input_error(context):
                        evaluated = evaluate(context)
                    record_tokens_read(evaluated, context)
                    write_evaluated(evaluated, result.path, result.fingerprint)
                    locks.pop(mode).release()
                    outcomes.append(
                        SAEOutcome(_stem(result.path), "written", result.path, evaluated.summary)
                    )
            finally:
                for lock in locks.values():
                    lock.release()
                del work
    finally:
        if not keep_work:
            shutil.rmtree(work_dir, ignore_errors=True)
        remove_if_empty(created)
    return outcomes


SLOW_STEPS = 100  # semi:T above this shows a progress bar over the tokens


def record_tokens_read(evaluated: Evaluated, context: EvalContext[Any]) -> None:
    """The result's ``eval_config.n_tokens`` = the tokens the eval read (its longest pass over the source),
    not the tokens requested."""
    config = getattr(evaluated.output, "eval_config", None)
    if not context.tokens_read or config is None or not hasattr(config, "n_tokens"):
        return
    config.n_tokens = context.tokens_read


@contextlib.contextmanager
def out_of_memory_as_input_error(context: EvalContext[Any]) -> Iterator[None]:
    """An allocation failure becomes one line naming the memory needed and the flags that change it."""
    try:
        yield
    except (RuntimeError, MemoryError) as exc:
        if not is_out_of_memory(exc):
            raise
        sae = context.work.loaded_sae  # None: loading the SAE itself did not fit
        device = context.request.device
        if sae is None:
            raise InputError(
                f"out of memory on {device} loading {context.spec.sae_name}: pass --dtype bfloat16 or "
                "another --device"
            ) from None
        weights = sum(p.numel() * p.element_size() for p in sae.parameters()) / 2**30
        batch = getattr(context.base_config, "batch_size", context.request.batch_size)
        chunk = chunk_bytes(batch, int(sae.cfg.d_sae)) / 2**30
        raise InputError(
            f"out of memory on {device} evaluating {context.spec.sae_name} (d_sae {sae.cfg.d_sae}): its "
            f"weights take {weights:.2f} GiB and a chunk of {batch} tokens about {chunk:.2f} GiB more; pass "
            "a smaller --batch-size, --dtype bfloat16, or another --device"
        ) from None


def _stem(path: Path) -> str:
    return path.name.removesuffix("_eval_results.json")


def write_evaluated(
    evaluated: Evaluated, path: Path, fingerprint: dict[str, Any] | None = None
) -> None:
    """The artifacts beside the result, then the result JSON last (its presence marks the work done),
    with the ``fingerprint`` of its inputs as a top-level key."""
    for suffix, (tensors, metadata) in evaluated.artifacts.items():
        write_safetensors_atomic(artifact_path(path, suffix), tensors, metadata)
    for suffix, text in evaluated.text_artifacts.items():
        write_text_atomic(artifact_path(path, suffix), text)
    text = evaluated.output.to_json()
    if fingerprint is not None:
        text = json.dumps({**json.loads(text), "fingerprint": fingerprint}, indent=2)
    write_text_atomic(path, text)


def claim(
    result: PlannedResult, force_rerun: bool
) -> ResultLock | tuple[str, dict[str, Any] | None]:
    """The lock on a result this run will compute, or why it skips it (and the stored result, if any).
    Another run computing it from the same inputs: skipped. From other inputs (or inputs not readable):
    wait for that run, then decide as a rerun would — the same inputs' result skipped, another's refused
    with one line (recomputed with ``force_rerun``), none (the run died) computed."""
    path, made_of = result.path, result.fingerprint
    lock = ResultLock(path)
    if not lock.acquire(made_of):
        holder = lock.holder()
        if holder == made_of:
            return f"another run is computing it ({lock.path} is locked)", None
        why = (
            "inputs it has not recorded"
            if holder is None
            else f"other inputs ({changes(holder, made_of)})"
        )
        print(
            f"{_stem(path)}: another run is computing it from {why}; waiting for it to finish",
            file=sys.stderr,
        )
        lock.acquire(made_of, blocking=True)
    if not path.exists():
        return lock
    try:  # written by another run since the command was checked
        stored = stored_if_up_to_date(path, made_of, force_rerun)
    except BaseException:
        lock.release()
        raise
    if stored is None:
        return lock
    lock.release()
    return "another run wrote it meanwhile", stored


def run_eval_saebench_style(
    entry: EvalEntry,
    config: DataclassInstance,
    selected_saes: Sequence[object],
    activations: ActivationFactory,
    device: str,
    output_path: str | Path,
    *,
    force_rerun: bool = False,
    dtype: str = "float32",
    inference: InferenceSettings | None = None,
    work_dir: str | Path | None = None,
) -> list[SAEOutcome]:
    """SAEBench's ``run_eval(config, selected_saes, device, output_path, force_rerun)`` shape for an eval of
    this package: ``selected_saes`` as (release, sae_id), (name, SAE) or SAESpec; ``activations`` an
    activation factory (e.g. ``FileActivations``); ``inference`` an ``InferenceSettings``; ``work_dir`` a
    folder kept for intermediate files (default: a private temporary one)."""
    request = EvalRequest(
        saes=as_specs(list(selected_saes)),
        output_dir=Path(output_path).parent,
        activations=activations,
        device=device,
        dtype=dtype,
        force_rerun=force_rerun,
        inference=inference or InferenceSettings(),
        configs={entry.name: config},
        work_dir=None if work_dir is None else Path(work_dir),
    )
    return run_entry(entry, request, output_path)


def saebench_style(entry: EvalEntry) -> Callable[..., list[SAEOutcome]]:
    """The eval's ``run_eval(config, selected_saes, activations, device, output_path, ...)``."""
    return functools.partial(run_eval_saebench_style, entry)
