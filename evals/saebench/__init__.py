"""SAEBench's own evals, registered through the same contract as this package's and run by the same loop,
one SAE × inference mode at a time: each calls sae_bench's run function on that one SAE in the run's
private folder and the runner writes the JSON SAEBench produced, under SAEBench's own file name.

They read a TransformerLens model by name themselves (``--model``, else the SAE's ``metadata.model_name``
or its SAE-Lens release's model), so they need the Hugging Face hub for the model and their datasets.
"""

from __future__ import annotations

import dataclasses
import importlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sae_bench_amortization.errors import InputError
from sae_bench_amortization.registry import (
    HIGHER_IS_WORSE,
    LOWER_IS_WORSE,
    EvalEntry,
    MetricFacts,
)

if TYPE_CHECKING:
    from sae_bench_amortization.runner.loop import EvalContext, Evaluated

SAEBENCH_OBJECT_ID = "custom_sae"  # SAEBench's sae_id for SAE objects in its file names


def result_name(spec, mode, modes) -> tuple[str, str]:
    """SAEBench's file naming: (release, sae_id) for a release read as published, else
    (``<sae_name>[__<mode>]``, ``custom_sae``) as SAEBench names SAE objects."""
    from sae_bench_amortization.modes import AMORTIZED, with_mode  # not at `saebench list`

    if modes == [AMORTIZED]:
        return (
            (spec.release, spec.sae_id)
            if spec.source == "release"
            else (spec.sae_name, SAEBENCH_OBJECT_ID)
        )
    return with_mode(spec.sae_name, mode), SAEBENCH_OBJECT_ID


def selected_sae(context: EvalContext) -> tuple[str, Any]:
    """SAEBench's ``selected_saes`` item for this SAE × mode: (release, sae_id) for a release read as
    published (SAEBench loads it), else (name, the mode's SAE with the metadata SAEBench reads)."""
    release, sae_id = result_name(context.spec, context.mode, context.request.inference.modes)
    if sae_id != SAEBENCH_OBJECT_ID:
        return release, sae_id
    base = context.base_sae
    for field in ("hook_name", "model_name"):
        if not getattr(base.cfg.metadata, field, None):
            raise InputError(
                f"SAE {context.spec.sae_name} has no metadata.{field}; SAEBench evals need it"
            )
    if getattr(base.cfg.metadata, "prepend_bos", None) is None:  # SAE-Lens's default
        base.cfg.metadata.prepend_bos = True
    if getattr(base.cfg.metadata, "context_size", None) is None:
        base.cfg.metadata.context_size = context.request.text.context_size
    return release, context.sae


def model_name(context: EvalContext, item: tuple[str, Any]) -> str:
    """--model, else the release's model, else the SAE's metadata.model_name."""
    if context.request.model_name:
        return context.request.model_name
    release, sae = item
    if isinstance(sae, str):
        from sae_lens.loading.pretrained_saes_directory import get_pretrained_saes_directory

        directory = get_pretrained_saes_directory()
        if release in directory and directory[release].model:
            return directory[release].model
        raise InputError("SAEBench evals need a TransformerLens model: pass --model NAME")
    return sae.cfg.metadata.model_name


def run_config(context: EvalContext, item: tuple[str, Any]) -> Any:
    """The SAEBench config with the run's model, seed and dtype."""
    from sae_bench.sae_bench_utils import activation_collection

    config = context.config
    values: dict[str, Any] = {"model_name": model_name(context, item)}
    names = {f.name for f in dataclasses.fields(config)}
    if "random_seed" in names:
        values["random_seed"] = context.request.seed
    if "llm_dtype" in names:
        values["llm_dtype"] = context.request.dtype
    if "llm_batch_size" in names and config.llm_batch_size is None:
        values["llm_batch_size"] = activation_collection.LLM_NAME_TO_BATCH_SIZE.get(
            values["model_name"], 32
        )
    return dataclasses.replace(config, **values)


def read_single_result(folder: Path, eval_name: str) -> Evaluated:
    # here, not at the top: `saebench list` loads this module and must not load torch
    from sae_bench_amortization.runner.loop import Evaluated, ResultText

    found = sorted(folder.rglob("*_eval_results.json"))
    if len(found) != 1:
        raise RuntimeError(
            f"SAEBench's {eval_name} eval wrote {len(found)} result files (see its log above)"
        )
    return Evaluated(ResultText(found[0].read_text()), {})


def saebench_eval(module: str, extra_kwargs=None):
    """evaluate() around ``sae_bench.evals.<module>.main.run_eval(config, selected_saes, device,
    output_path, force_rerun)`` on one SAE × mode."""

    def evaluate(context: EvalContext) -> Evaluated:
        main = importlib.import_module(f"sae_bench.evals.{module}.main")
        item = selected_sae(context)
        kwargs = extra_kwargs() if extra_kwargs else {}
        output = Path(tempfile.mkdtemp(dir=context.work_dir, prefix="result-"))
        main.run_eval(
            config=run_config(context, item),
            selected_saes=[item],
            device=context.request.device,
            output_path=str(output),
            force_rerun=True,
            **kwargs,
        )
        return read_single_result(output, context.entry.name)

    return evaluate


def evaluate_core(context: EvalContext) -> Evaluated:
    """SAEBench's core eval (``multiple_evals``) on one SAE × mode."""
    from sae_bench.evals.core.main import multiple_evals

    item = selected_sae(context)
    config = run_config(context, item)
    text = context.request.text
    output = Path(tempfile.mkdtemp(dir=context.work_dir, prefix="result-"))
    dataset = text.dataset or config.dataset
    if text.text_file:
        dataset = text_file_as_dataset_folder(text.text_file, context.work_dir)
    multiple_evals(
        selected_saes=[item],
        n_eval_reconstruction_batches=config.n_eval_reconstruction_batches,
        n_eval_sparsity_variance_batches=config.n_eval_sparsity_variance_batches,
        eval_batch_size_prompts=config.batch_size_prompts,
        compute_featurewise_density_statistics=config.compute_featurewise_density_statistics,
        compute_featurewise_weight_based_metrics=config.compute_featurewise_weight_based_metrics,
        exclude_special_tokens_from_reconstruction=config.exclude_special_tokens_from_reconstruction,
        dataset=dataset,
        context_size=text.context_size,
        output_folder=str(output),
        dtype=context.request.dtype,
        device=context.request.device,
        force_rerun=True,
    )
    return read_single_result(output, "core")


def text_file_as_dataset_folder(text_file: str, work_dir: Path) -> str:
    """A folder that ``datasets.load_dataset(folder)`` reads offline as a 'text' dataset, one document a row.

    SAEBench's core eval takes a dataset *name*; a local folder of .txt files is one.
    """
    from sae_bench_amortization.activations.text import iter_text_file  # not at `saebench list`

    folder = work_dir / "text_dataset"
    if not folder.is_dir():
        folder.mkdir()
        lines = (" ".join(doc.split()) for doc in iter_text_file(text_file))
        (folder / "train.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return str(folder)


def _api_key() -> dict[str, Any]:
    key = os.environ.get("OPENAI_API_KEY")
    if not key:
        raise InputError(
            "autointerp needs an OpenAI API key in the environment variable OPENAI_API_KEY"
        )
    return {"api_key": key}


def check(requirements) -> None:
    """Before any work: the SAE names its hook and model (unless SAEBench loads it as published) and a
    TransformerLens model is known (--model, the release's, or the SAE's metadata.model_name)."""
    from sae_bench_amortization.modes import AMORTIZED  # not at `saebench list`

    spec, request, sae = requirements.spec, requirements.request, requirements.sae
    if not (request.inference.modes == [AMORTIZED] and spec.source == "release"):
        for field in ("hook_name", "model_name"):
            if not getattr(sae.cfg.metadata, field, None):
                raise InputError(
                    f"SAE {spec.sae_name} has no metadata.{field}; SAEBench evals need it"
                )
    if request.model_name or getattr(sae.cfg.metadata, "model_name", None):
        return
    if spec.source == "release":
        from sae_lens.loading.pretrained_saes_directory import get_pretrained_saes_directory

        directory = get_pretrained_saes_directory()
        if spec.release in directory and directory[spec.release].model:
            return
    raise InputError("SAEBench evals need a TransformerLens model: pass --model NAME")


CORE_NEEDS = ("compute_featurewise_density_statistics", "compute_featurewise_weight_based_metrics")


def _check_core(requirements) -> None:
    """SAEBench 0.6.0's core writes its JSON from both per-latent statistics: without either it fails
    after the work, writing nothing, so that is refused before any."""
    check(requirements)
    off = [name for name in CORE_NEEDS if not getattr(requirements.config, name)]
    if off:
        raise InputError(
            f"SAEBench's core eval cannot write its results with {' and '.join(off)} off (its JSON writer "
            "reads the per-latent statistics); leave them on"
        )


def _check_api_key(requirements) -> None:
    check(requirements)
    _api_key()


def _entry(
    name: str,
    description: str,
    evaluate: Callable[[EvalContext], Evaluated],
    config: tuple[str, str],
    *,
    metrics: dict[str, MetricFacts] | None = None,
    defaults: dict[str, Any] | None = None,
) -> EvalEntry:
    """An entry around SAEBench's eval ``name``; ``config`` = (its module, its config class); ``metrics``:
    the facts of metrics of SAEBench's output class (which this package does not own)."""
    config_class = getattr(
        importlib.import_module(f"sae_bench.evals.{config[0]}.eval_config"), config[1]
    )
    return EvalEntry(
        name=name, description=description, evaluate=evaluate, config_class=config_class,
        config_defaults=defaults or {}, metrics=metrics or {}, needs="model", result_name=result_name,
        check={"autointerp": _check_api_key, "core": _check_core}.get(name, check),
    )  # fmt: skip


NEEDS_MODEL = "(needs a model)"
CORE = _entry(
    "core", f"SAEBench core: reconstruction (MSE, explained variance), KL/CE loss recovered, L0 {NEEDS_MODEL}", evaluate_core,
    ("core", "CoreEvalConfig"),
    metrics={"explained_variance": MetricFacts(direction=LOWER_IS_WORSE, bounds=(None, 1.0), topic="reconstruction"),
     "cossim": MetricFacts(direction=LOWER_IS_WORSE, bounds=(-1.0, 1.0), topic="reconstruction"),
     "ce_loss_score": MetricFacts(direction=LOWER_IS_WORSE), "kl_div_score": MetricFacts(direction=LOWER_IS_WORSE)},
    defaults={"n_eval_reconstruction_batches": 200, "n_eval_sparsity_variance_batches": 2000, "batch_size_prompts": 16,
     "compute_featurewise_density_statistics": True, "compute_featurewise_weight_based_metrics": True},
)  # fmt: skip
ABSORPTION = _entry(
    "absorption", f"SAEBench feature absorption on first-letter tasks {NEEDS_MODEL}",
    saebench_eval("absorption"), ("absorption", "AbsorptionEvalConfig"),
    metrics={metric: MetricFacts(direction=HIGHER_IS_WORSE, bounds=(0.0, 1.0), topic="absorption")
     for metric in ("mean_absorption_fraction_score", "mean_full_absorption_score")},
)  # fmt: skip
SPARSE_PROBING = _entry(
    "sparse_probing", f"SAEBench k-sparse probing on classification datasets {NEEDS_MODEL}",
    saebench_eval("sparse_probing"), ("sparse_probing", "SparseProbingEvalConfig"),
)  # fmt: skip
SCR = _entry(
    "scr", f"SAEBench spurious correlation removal {NEEDS_MODEL}", saebench_eval("scr_and_tpp"),
    ("scr_and_tpp", "ScrAndTppEvalConfig"), defaults={"perform_scr": True},
)  # fmt: skip
TPP = _entry(
    "tpp", f"SAEBench targeted probe perturbation {NEEDS_MODEL}", saebench_eval("scr_and_tpp"),
    ("scr_and_tpp", "ScrAndTppEvalConfig"), defaults={"perform_scr": False},
)  # fmt: skip
AUTOINTERP = _entry(
    "autointerp", "SAEBench automated interpretability with an LLM judge (needs a model and OPENAI_API_KEY)",
    saebench_eval("autointerp", _api_key), ("autointerp", "AutoInterpEvalConfig"),
)  # fmt: skip
UNLEARNING = _entry(
    "unlearning", "SAEBench unlearning (WMDP-bio; needs an instruction-tuned model such as gemma-2-2b-it)",
    saebench_eval("unlearning"), ("unlearning", "UnlearningEvalConfig"),
)  # fmt: skip
RAVEL = _entry(
    "ravel", f"SAEBench RAVEL attribute disentanglement {NEEDS_MODEL}", saebench_eval("ravel"),
    ("ravel", "RAVELEvalConfig"),
)  # fmt: skip
