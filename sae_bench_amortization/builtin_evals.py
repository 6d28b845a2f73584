"""SAEBench's own evals, registered beside this package's, run through sae_bench's ``run_eval`` functions.

They read a TransformerLens model by name themselves (``--model``, else the SAE's ``metadata.model_name``
or its SAE-Lens release's model), so they need the Hugging Face hub for the model and their datasets.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sae_bench_amortization.errors import InputError
from sae_bench_amortization.registry import EvalEntry, EvalRequest, SAEOutcome
from sae_bench_amortization.results import ensure_output_dir, result_path


def _model_name(request: EvalRequest, selected: list[tuple[str, Any]]) -> str:
    if request.model_name:
        return request.model_name
    from sae_lens.loading.pretrained_saes_directory import get_pretrained_saes_directory

    directory = get_pretrained_saes_directory()
    for release, item in selected:
        name = directory[release].model if isinstance(item, str) and release in directory else None
        name = name or (
            None if isinstance(item, str) else getattr(item.cfg.metadata, "model_name", None)
        )
        if name:
            return name
    raise InputError("SAEBench evals need a TransformerLens model: pass --model NAME")


def _selection(request: EvalRequest) -> list[tuple[str, Any]]:
    """SAEBench's selected_saes: (release, sae_id) for SAE-Lens releases read as they are, (name, SAE)
    for the rest; with inference modes, one (``<sae_name>__<mode>``, SAE) per mode on each SAE's decoder."""
    from sae_bench_amortization.eval_loop import resolve_lambda
    from sae_bench_amortization.inference.modes import AMORTIZED, InferenceSettings, mode_sae

    inference = request.inference or InferenceSettings()
    only_amortized = inference.modes == [AMORTIZED]
    selected: list[tuple[str, Any]] = []
    for spec in request.saes:
        if spec.source == "release" and only_amortized:
            selected.append((spec.release, spec.sae_id))
            continue
        sae = spec.load(request.device, request.dtype)
        for field in ("hook_name", "model_name"):
            if not getattr(sae.cfg.metadata, field, None):
                raise InputError(
                    f"SAE {spec.sae_name} has no metadata.{field}; SAEBench evals need it"
                )
        if getattr(sae.cfg.metadata, "prepend_bos", None) is None:  # SAE-Lens's default
            sae.cfg.metadata.prepend_bos = True
        if getattr(sae.cfg.metadata, "context_size", None) is None:
            sae.cfg.metadata.context_size = request.options.get("context_size", 128)
        if only_amortized:
            selected.append((spec.sae_name, sae))
            continue
        l1, _ = resolve_lambda(sae, request.activations, inference, inference.modes)
        for mode in inference.modes:
            selected.append(
                (f"{spec.sae_name}__{mode.file_tag}", mode_sae(sae, mode, l1, inference))
            )
    if not selected:
        raise InputError(
            "SAEBench evals need SAEs: pass --sae-release/--sae-id, --sae-regex or --sae-path"
        )
    return selected


def _outcomes(output: Path, selected: list[tuple[str, Any]]) -> list[SAEOutcome]:
    outcomes = []
    for release, item in selected:
        sae_id = item if isinstance(item, str) else "custom_sae"  # SAEBench's name for SAE objects
        path = result_path(output, release, sae_id)
        status = "written" if path.exists() else "failed (see SAEBench's log above)"
        outcomes.append(SAEOutcome(path.name.removesuffix("_eval_results.json"), status, path))
    return outcomes


def _saebench_eval(
    name: str,
    module: str,
    config_class: str,
    description: str,
    config_overrides: dict[str, Any] | None = None,
    extra_kwargs: Callable[[EvalRequest], dict[str, Any]] | None = None,
) -> EvalEntry:
    """An EvalEntry around ``sae_bench.evals.<module>.main.run_eval(config, selected_saes, device, output_path, force_rerun)``."""

    def run(request: EvalRequest) -> list[SAEOutcome]:
        config_module = importlib.import_module(f"sae_bench.evals.{module}.eval_config")
        main = importlib.import_module(f"sae_bench.evals.{module}.main")
        from sae_bench.sae_bench_utils import activation_collection

        selected = _selection(request)
        config = getattr(config_module, config_class)(**(config_overrides or {}))
        config.model_name = _model_name(request, selected)
        if hasattr(config, "random_seed"):
            config.random_seed = request.seed
        if hasattr(config, "llm_dtype"):
            config.llm_dtype = request.dtype
        if getattr(config, "llm_batch_size", 0) is None:
            config.llm_batch_size = activation_collection.LLM_NAME_TO_BATCH_SIZE.get(
                config.model_name, 32
            )
        output = ensure_output_dir(request.output_dir / name)
        kwargs = extra_kwargs(request) if extra_kwargs else {}
        main.run_eval(
            config=config,
            selected_saes=selected,
            device=request.device,
            output_path=str(output),
            force_rerun=request.force_rerun,
            **kwargs,
        )
        return _outcomes(output, selected)

    return EvalEntry(name=name, description=description, run=run, needs="model")


def _run_core(request: EvalRequest) -> list[SAEOutcome]:
    from sae_bench.evals.core.main import multiple_evals

    selected = _selection(request)
    output = ensure_output_dir(request.output_dir / "core")
    dataset = request.options.get("dataset") or "Skylion007/openwebtext"
    if request.options.get("text_file"):
        dataset = _text_file_as_dataset_folder(request.options["text_file"], output)
    multiple_evals(
        selected_saes=selected,
        n_eval_reconstruction_batches=request.options.get("n_eval_reconstruction_batches", 200),
        n_eval_sparsity_variance_batches=request.options.get(
            "n_eval_sparsity_variance_batches", 2000
        ),
        eval_batch_size_prompts=request.options.get("eval_batch_size_prompts", 16),
        compute_featurewise_density_statistics=True,
        compute_featurewise_weight_based_metrics=True,
        dataset=dataset,
        context_size=request.options.get("context_size", 128),
        output_folder=str(output),
        dtype=request.dtype,
        device=request.device,
        force_rerun=request.force_rerun,
    )
    return _outcomes(output, selected)


def _text_file_as_dataset_folder(text_file: str, output: Path) -> str:
    """A folder that ``datasets.load_dataset(folder)`` reads offline as a 'text' dataset, one document a row.

    SAEBench's core eval takes a dataset *name*; a local folder of .txt files is one.
    """
    from sae_bench_amortization.activations.text import iter_text_file

    folder = output / ".text_dataset"
    folder.mkdir(exist_ok=True)
    lines = (" ".join(doc.split()) for doc in iter_text_file(text_file))
    (folder / "train.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return str(folder)


def _api_key(_request: EvalRequest) -> dict[str, Any]:
    key = os.environ.get("OPENAI_API_KEY")
    if not key:
        raise InputError(
            "autointerp needs an OpenAI API key in the environment variable OPENAI_API_KEY"
        )
    return {"api_key": key}


CORE = EvalEntry(
    name="core",
    description="SAEBench core: reconstruction (MSE, explained variance), KL/CE loss recovered, L0 (needs a model)",
    run=_run_core,
    needs="model",
)
ABSORPTION = _saebench_eval(
    "absorption",
    "absorption",
    "AbsorptionEvalConfig",
    "SAEBench feature absorption on first-letter tasks (needs a model)",
)
SPARSE_PROBING = _saebench_eval(
    "sparse_probing",
    "sparse_probing",
    "SparseProbingEvalConfig",
    "SAEBench k-sparse probing on classification datasets (needs a model)",
)
SCR = _saebench_eval(
    "scr",
    "scr_and_tpp",
    "ScrAndTppEvalConfig",
    "SAEBench spurious correlation removal (needs a model)",
    {"perform_scr": True},
)
TPP = _saebench_eval(
    "tpp",
    "scr_and_tpp",
    "ScrAndTppEvalConfig",
    "SAEBench targeted probe perturbation (needs a model)",
    {"perform_scr": False},
)
AUTOINTERP = _saebench_eval(
    "autointerp",
    "autointerp",
    "AutoInterpEvalConfig",
    "SAEBench automated interpretability with an LLM judge (needs a model and OPENAI_API_KEY)",
    extra_kwargs=_api_key,
)
UNLEARNING = _saebench_eval(
    "unlearning",
    "unlearning",
    "UnlearningEvalConfig",
    "SAEBench unlearning (WMDP-bio; needs an instruction-tuned model such as gemma-2-2b-it)",
)
RAVEL = _saebench_eval(
    "ravel",
    "ravel",
    "RAVELEvalConfig",
    "SAEBench RAVEL attribute disentanglement (needs a model)",
)
