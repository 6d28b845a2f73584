"""The library entry point: :func:`run` is ``saebench run`` — the same selection, sources, fallbacks
(:func:`choose`: no SAE and no source → the embedded offline default; SAEs but no source → each SAE's own
TransformerLens model and hook), inference settings, memory setting and executors — for the CLI, the Ray
workers and Python users alike::

    import sae_bench_amortization as sba

    result = sba.run(evals=["amortization_gap"])  # the embedded offline default
    result = sba.run(
        evals=["dead_dense"],
        saes=["my_sae_folder", ("gpt2-small-res-jb", "blocks.8.hook_resid_pre")],
        source=sba.SourceSettings(activations="acts.safetensors"),
        inference=["amortized", "semi:5"],
        eval_options={"dense_threshold": 0.2},
    )
    for eval_name, outcome in result.rows:
        print(eval_name, outcome.sae_name, outcome.status, outcome.path)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from sae_bench_amortization.activations.sources import FileActivations
from sae_bench_amortization.atomic import check_output_dir
from sae_bench_amortization.errors import InputError
from sae_bench_amortization.modes import InferenceSettings, parse_modes, run_objective
from sae_bench_amortization.registry import EvalEntry, discover_evals, eval_options, get_eval
from sae_bench_amortization.runner.executors import (
    EXECUTORS,
    Executor,
    RayOptions,
    run_ray,
    run_sequential,
)
from sae_bench_amortization.runner.memory import bound_the_heap
from sae_bench_amortization.runner.request import ActivationFactory, EvalRequest, SAEOutcome
from sae_bench_amortization.sources.saes import SAESpec, spec_from_path
from sae_bench_amortization.sources.selection import SAESelection, SourceSettings, as_spec
from sae_bench_amortization.synthetic.default import default_benchmark
from sae_bench_amortization.targets import check_apart, named

if TYPE_CHECKING:  # annotations only
    from _typeshed import DataclassInstance


@dataclass
class RunResult:
    """What a run did: one (eval name, outcome) row per SAE × eval × mode, and — with the Ray executor,
    which lets the other tasks finish — the one-line messages of tasks that failed on bad input."""

    rows: list[tuple[str, SAEOutcome]] = field(default_factory=list)
    bad_input: list[str] = field(default_factory=list)

    @property
    def failed(self) -> list[tuple[str, SAEOutcome]]:
        return [
            (name, outcome) for name, outcome in self.rows if outcome.status.startswith("failed")
        ]


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def check_device(device: str) -> str:
    """``device`` when torch can use it on this machine; one line otherwise (before any work)."""
    try:
        parsed = torch.device(device)
    except (RuntimeError, ValueError):
        raise InputError(
            f"--device {device!r} is not a torch device (cpu, cuda, cuda:1, mps)"
        ) from None
    if parsed.type == "cuda":
        if not torch.cuda.is_available():
            build = "" if torch.version.cuda else "; this torch is a CPU build"
            raise InputError(
                f"--device {device}: CUDA is not available here{build}: use --device cpu"
            )
        if parsed.index is not None and parsed.index >= torch.cuda.device_count():
            raise InputError(
                f"--device {device}: this machine has {torch.cuda.device_count()} CUDA devices"
            )
    if parsed.type == "mps" and not torch.backends.mps.is_available():
        raise InputError(f"--device {device}: MPS is not available here: use --device cpu")
    return device


def choose(
    specs: list[SAESpec], source: SourceSettings, device: str
) -> tuple[list[SAESpec], ActivationFactory]:
    """(SAEs, activation factory) of a run, with the fallbacks (embedded default; each SAE's own model)."""
    factory = source.factory(device)
    if not specs and factory is None:
        bench = default_benchmark()
        print(
            "no SAE given: using the offline default (synthetic ground truth, TopK SAE) from "
            f"{bench.sae_path.parent}"
        )
        specs = [spec_from_path(bench.sae_path, bench.sae_name)]
        factory = source.skipped(
            FileActivations(str(bench.activations), source.read_tokens(file=True))
        )
    if not specs:
        raise InputError(
            "no SAE selected: pass --sae-release/--sae-id, --sae-regex/--sae-block-regex or --sae-path"
        )
    if factory is None:  # SAEs but no source: read each SAE's own model and hook (TransformerLens)
        factory = source.skipped(source.transformer_lens(device, source.read_tokens(file=False)))
    if factory is None:  # never: skipped() returns the factory it is given, or one wrapping it
        raise InputError("no activation source")
    return specs, factory


def run(
    evals: Sequence[str],
    saes: Sequence[object] = (),
    *,
    selection: SAESelection | None = None,
    source: SourceSettings | ActivationFactory | None = None,
    inference: InferenceSettings | Sequence[str] | None = None,
    output_dir: str | Path = "eval_results",
    device: str | None = None,
    dtype: str = "float32",
    batch_size: int = 4096,
    seed: int = 42,
    force_rerun: bool = False,
    eval_options: Mapping[str, object] | None = None,
    configs: Mapping[str, DataclassInstance] | None = None,
    executor: Executor = "sequential",
    ray: RayOptions | None = None,
) -> RunResult:
    """Run ``evals`` (registered names) on SAEs and write SAEBench result files under ``output_dir``.

    saes: SAEs in any form (SAESpec, (release, sae_id), (name, SAE), a saved folder / ``ae.pt`` path, an
        SAE object); ``selection``: SAEs named as on the command line (releases, regexes, paths).
    source: ``SourceSettings`` (file, TransformerLens or transformers model, text), or an activation
        factory (anything with ``for_sae``). No SAE and no source: the embedded offline default.
    inference: ``InferenceSettings`` or mode names (default: amortized; an eval comparing modes uses its own);
        given as names (or None), the problem is ``auto`` (each SAE's own; ``l1`` under protocol paper).
    eval_options: values of the evals' declared options, by ``dest`` (e.g. ``dense_threshold``);
        configs: whole configs by eval name, used as given.
    executor: "sequential" or "ray" (``ray`` = ``runner.executors.RayOptions``).
    Bad input raises :class:`InputError` before anything is computed.
    """
    bound_the_heap()
    registry = discover_evals()
    entries = [get_eval(name, registry) for name in dict.fromkeys(evals)]
    if executor not in EXECUTORS:
        raise InputError(f"unknown executor '{executor}': choose sequential or ray")
    options = dict(eval_options or {})
    check_eval_options(options, entries)
    if not isinstance(inference, InferenceSettings):
        names = None if inference is None else list(inference)
        inference = InferenceSettings(
            modes=parse_modes(names),
            modes_given=bool(names),
            objective=run_objective(None, options.get("protocol")),
        )
    device = check_device(device) if device else default_device()
    specs = [as_spec(item) for item in saes] + (selection.specs() if selection else [])
    settings = source if isinstance(source, SourceSettings) else SourceSettings()
    output = check_output_dir(output_dir)
    if source is None or isinstance(source, SourceSettings):
        specs, factory = choose(specs, settings, device)
    else:
        factory = source
    check_outputs_apart(entries, output, specs, settings, options)
    request = EvalRequest(
        saes=specs,
        output_dir=output,
        activations=factory,
        model_name=settings.model,
        device=device,
        dtype=dtype,
        batch_size=batch_size,
        seed=seed,
        force_rerun=force_rerun,
        n_tokens=settings.n_tokens,
        skip_tokens=settings.skip_tokens,
        inference=inference,
        text=settings.text,
        eval_options=options,
        configs=dict(configs or {}),
    )
    if executor == "ray":
        rows, bad_input = run_ray(entries, request, ray or RayOptions())
        return RunResult(rows, bad_input)
    return RunResult(run_sequential(entries, request))


def check_outputs_apart(
    entries: list[EvalEntry],
    output: Path,
    specs: list[SAESpec],
    source: SourceSettings,
    options: Mapping[str, object],
) -> None:
    """The folders the run writes (``output / <eval>``) hold none of its inputs (SAE paths, the activation
    source's files, ``--loca-path`` SAEs) and lie inside none of them: one line otherwise."""
    reads = [("--sae-path", spec.path) for spec in specs if spec.path] + source.read_paths()
    loca_paths = options.get("loca_paths")
    if isinstance(loca_paths, Iterable) and not isinstance(loca_paths, str):
        reads += [("--loca-path", str(path)) for path in loca_paths]
    writes = named(("--output-dir", str(output / entry.name)) for entry in entries)
    check_apart(writes, named(reads))


def check_eval_options(values: Mapping[str, object], entries: list[EvalEntry]) -> None:
    """Every option value checked before any work: a bad value, or a value no selected eval reads,
    is refused with one line."""
    read = {option.dest: option for entry in entries for option in entry.options}
    declared = eval_options(discover_evals())
    for dest, value in values.items():
        if dest in read:
            read[dest].validate(value)
            continue
        known = [(option, evals) for option, evals in declared.values() if option.dest == dest]
        if not known:
            raise InputError(f"no eval declares an option '{dest}'")
        option, evals = known[0]
        if value not in (None, [], (), option.default):
            raise InputError(f"{option.flag} is read by --eval {' / '.join(evals)}")
