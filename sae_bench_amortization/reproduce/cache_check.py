"""Before a reproduction writes anything offline: is every model, SAE and dataset it needs in the local
Hugging Face cache? One line naming the first one missing and the command that downloads it."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import TYPE_CHECKING

from sae_bench_amortization.errors import InputError
from sae_bench_amortization.hub import hub_reachable

if TYPE_CHECKING:
    from sae_bench_amortization.reproduce.targets import Settings, Target

DEFAULT_DATASET = (
    "Skylion007/openwebtext"  # what model sources read without --dataset / --text-file
)


def _hf_home() -> Path:
    return Path(os.environ.get("HF_HOME") or Path.home() / ".cache" / "huggingface")


def hub_cache() -> Path:
    """The hub cache as the libraries will read it in a fresh process (``HF_HUB_CACHE``, else
    ``$HF_HOME/hub``)."""
    return Path(os.environ.get("HF_HUB_CACHE") or _hf_home() / "hub")


def in_hub_cache(repo_id: str, path: str = "", repo_type: str = "model") -> bool:
    """Whether some snapshot of ``repo_id`` holds ``path`` (a file or folder; "" = the snapshot)."""
    snapshots = hub_cache() / f"{repo_type}s--{repo_id.replace('/', '--')}" / "snapshots"
    return snapshots.is_dir() and any(
        (snapshot / path).exists() for snapshot in snapshots.iterdir()
    )


def dataset_prepared(name: str) -> bool:
    """Whether ``datasets`` finds ``name`` prepared (offline it reads nothing else by name)."""
    root = Path(os.environ.get("HF_DATASETS_CACHE") or _hf_home() / "datasets")
    return (root / name.replace("/", "___")).is_dir() or Path(name).is_dir()


def _model_repo(model: str) -> str:
    from transformer_lens.loading_from_pretrained import get_official_model_name

    try:
        return get_official_model_name(model)
    except ValueError:
        raise InputError(f"--model {model} is not a TransformerLens model name") from None


def needed(target: Target, s: Settings) -> list[tuple[str, str, str, str]]:
    """(what, repo id, path in the repo, repo type) of everything ``target`` reads from the hub."""
    from sae_lens.loading.pretrained_saes_directory import get_pretrained_saes_directory

    from sae_bench_amortization.reproduce import targets

    items, models = [], []
    if target.trains:
        models.append(s.model)
    else:
        directory = get_pretrained_saes_directory()
        if target.name == "gemma-jumprelu":
            saes = [targets.GEMMA_SCOPE]
        elif target.name == "dynamics":
            saes = [(targets.VANILLA_RELEASE, sae_id) for sae_id in targets.checkpoint_ids()]
        else:  # gated-pattern: the sweeps' layer-3 SAEs, as selected
            releases, ids = re.compile(targets.GATED_REGEX), re.compile(s.gated_block_regex)
            saes = [(release, sae_id) for release, lookup in directory.items() if releases.fullmatch(release)
                    for sae_id in lookup.saes_map if ids.fullmatch(sae_id)]  # SAEBench's selection  # fmt: skip
        for release, sae_id in saes:
            lookup = directory[release]
            items.append(
                (f"SAE {release} / {sae_id}", lookup.repo_id, lookup.saes_map[sae_id], "model")
            )
            if not s.activations:
                models.append(lookup.model)
    for model in dict.fromkeys(models):
        items.append((f"model {model}", _model_repo(model), "config.json", "model"))
    needs_text = target.trains or not s.activations
    if needs_text and not s.text_file:
        name = s.dataset or DEFAULT_DATASET
        items.append((f"dataset {name}", name, "", "dataset"))
    return items


def check_cached(target: Target, s: Settings) -> None:
    """Offline (the hub's host does not resolve, or HF_HUB_OFFLINE): one line for the first thing
    ``target`` needs that the local cache lacks, naming how to fetch it."""
    if hub_reachable():
        return
    for what, repo_id, path, repo_type in needed(target, s):
        if repo_type == "dataset":
            if dataset_prepared(repo_id):
                continue
            fetch = (f"python -c \"import datasets; datasets.load_dataset('{repo_id}', split='train')\", "
                     "or give --text-file")  # fmt: skip
        elif in_hub_cache(repo_id, path):
            continue
        else:
            include = f" --include '{path}/*'" if path and path != "config.json" else (
                " --include '*.json' --include '*.safetensors'")  # fmt: skip
            fetch = f"hf download {repo_id}{include}"
        raise InputError(f"{what} is not in the local Hugging Face cache ({hub_cache().parent}) and the hub "
                         f"cannot be reached: on a networked machine with the same HF_HOME run {fetch}")  # fmt: skip
