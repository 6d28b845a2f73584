"""SAE sources: SAE-Lens releases, saved SAE-Lens folders, dictionary_learning ``ae.pt`` files.

Everything becomes an SAE-Lens ``SAE``; :class:`SAESpec` holds how to load one lazily, so a sweep
keeps a single SAE in memory at a time.
"""

from __future__ import annotations

import json
import pickle
import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from sae_bench_amortization.errors import InputError, first_line, suggest
from sae_bench_amortization.hub import OFFLINE_HINT, cache_folder, hub_access
from sae_bench_amortization.sources.sanity import check_folder_shapes, read_cfg, state_dict_problem

if TYPE_CHECKING:  # sae_lens takes seconds to import: loaded only when an SAE is
    from sae_lens import SAE

LOCAL_RELEASE = "local"


@dataclass(frozen=True)
class SAESpec:
    """One SAE to evaluate: SAEBench's (release, sae_id) naming plus a loader."""

    release: str
    sae_id: str
    load: Callable[[str, str], SAE]  # (device, dtype) -> SAE
    source: str  # "release", "path" or "object"
    path: str | None = None  # the folder or ae.pt file read, for SAEs from a path

    @property
    def sae_name(self) -> str:
        """SAEBench's result-file stem: ``<release>_<sae_id>`` with '/' replaced by '_'."""
        return f"{self.release}_{self.sae_id}".replace("/", "_")


def load_release_sae(release: str, sae_id: str, device: str, dtype: str) -> SAE:
    """``SAE.from_pretrained`` with every failure turned into one line.

    When the hub cannot be reached, only the local Hugging Face cache is tried (no retries).
    """
    from sae_lens import SAE
    from sae_lens.loading.pretrained_saes_directory import get_pretrained_saes_directory

    directory = get_pretrained_saes_directory()
    if release not in directory:
        raise InputError(f"unknown SAE-Lens release '{release}'{suggest(release, list(directory))}")
    if sae_id not in directory[release].saes_map:
        ids = list(directory[release].saes_map)
        raise InputError(f"release '{release}' has no SAE '{sae_id}'{suggest(sae_id, ids)}")
    with hub_access() as online:
        try:
            return SAE.from_pretrained(release, sae_id, device=device, dtype=dtype)
        except Exception as exc:  # noqa: BLE001 - hub failures become one line
            if online:
                raise InputError(
                    f"cannot load SAE '{release}/{sae_id}': {first_line(exc)}; offline, save it with "
                    "SAE.save_model and pass --sae-path DIR"
                ) from None
            entry = directory[release]
            path = entry.saes_map[sae_id]
            raise InputError(
                f"cannot load SAE '{release}/{sae_id}': {OFFLINE_HINT} ({cache_folder()}); on a networked "
                f"machine run: hf download {entry.repo_id} --include '{path}/*' and carry HF_HOME over "
                "(README: Air-gapped machines), or pass --sae-path DIR"
            ) from None


def load_folder_sae(path: Path, device: str, dtype: str) -> SAE:
    """A folder written by SAE-Lens ``save_model`` (cfg.json + sae_weights.safetensors)."""
    from sae_lens import SAE
    from sae_lens.registry import SAE_CLASS_REGISTRY

    import sae_bench_amortization  # noqa: F401 - registers this package's architectures

    cfg_path, weights_path = path / "cfg.json", path / "sae_weights.safetensors"
    if not cfg_path.is_file():
        raise InputError(f"SAE folder has no cfg.json: {path}")
    if not weights_path.is_file():
        raise InputError(f"SAE folder has no sae_weights.safetensors: {path}")
    cfg = read_cfg(cfg_path)
    architecture = cfg.get("architecture", "standard")
    if architecture not in SAE_CLASS_REGISTRY:
        raise InputError(
            f"{cfg_path}: unknown SAE architecture '{architecture}'{suggest(str(architecture), list(SAE_CLASS_REGISTRY))}"
        )
    check_folder_shapes(cfg, weights_path)
    try:
        return SAE.load_from_disk(path, device=device, dtype=dtype)
    except Exception as exc:  # noqa: BLE001 - corrupt weights / config mismatch become one line
        raise InputError(f"cannot load SAE folder {path}: {state_dict_problem(exc)}") from None


def dictionary_learning_cfg(config: dict[str, Any], device: str) -> dict[str, Any]:
    """SAE-Lens cfg dict for a dictionary_learning ``config.json`` (same mapping as SAE-Lens's hub loader)."""
    try:
        trainer = config["trainer"]
        dict_class = trainer.get("dict_class", "AutoEncoder")
        layer = trainer.get("layer")
        architecture, apply_b_dec = "standard", True
        extra: dict[str, Any] = {}
        if dict_class in ("AutoEncoderTopK",):
            architecture, extra = "topk", {"k": int(trainer["k"])}
        elif dict_class in ("BatchTopKSAE", "MatryoshkaBatchTopKSAE", "JumpReluAutoEncoder"):
            architecture = "jumprelu"
            apply_b_dec = dict_class != "JumpReluAutoEncoder"
        elif dict_class == "GatedAutoEncoder":
            architecture = "gated"
        return {
            "architecture": architecture,
            "d_in": int(trainer["activation_dim"]),
            "d_sae": int(trainer["dict_size"]),
            "dtype": "float32",
            "device": device,
            "apply_b_dec_to_input": apply_b_dec,
            "normalize_activations": "none",
            **extra,
            "metadata": {
                "model_name": str(trainer.get("lm_name", "unknown")).split("/")[-1],
                "hook_name": f"blocks.{layer}.hook_resid_post" if layer is not None else None,
                "context_size": config.get("buffer", {}).get("ctx_len"),
                "prepend_bos": True,
            },
        }
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise InputError(
            f"dictionary_learning config.json lacks a field: {first_line(exc)}"
        ) from None


def dictionary_learning_state_dict(
    weights: dict[str, torch.Tensor], cfg: dict[str, Any]
) -> dict[str, torch.Tensor]:
    """SAE-Lens parameter names for a dictionary_learning state dict ([out, in] Linear weights transposed)."""
    state = {
        "W_enc": weights["W_enc"] if "W_enc" in weights else weights["encoder.weight"].T,
        "W_dec": weights["W_dec"] if "W_dec" in weights else weights["decoder.weight"].T,
    }
    b_dec = weights.get("b_dec", weights.get("bias", weights.get("decoder_bias")))
    if b_dec is None:
        b_dec = torch.zeros(cfg["d_in"])
    state["b_dec"] = b_dec
    for source, target in (
        ("encoder.bias", "b_enc"),
        ("b_enc", "b_enc"),
        ("mag_bias", "b_mag"),
        ("gate_bias", "b_gate"),
        ("r_mag", "r_mag"),
    ):
        if source in weights:
            state[target] = weights[source]
    if cfg["architecture"] == "jumprelu":
        threshold = weights.get("threshold", torch.zeros(cfg["d_sae"]))
        state["threshold"] = (
            threshold.expand(cfg["d_sae"]).clone() if threshold.ndim == 0 else threshold
        )
    return {name: tensor.contiguous() for name, tensor in state.items()}


def load_dictionary_learning_sae(path: Path, device: str, dtype: str) -> SAE:
    """A dictionary_learning ``ae.pt`` with its ``config.json`` beside it; never unpickles code."""
    config_path = path.parent / "config.json"
    if not config_path.is_file():
        raise InputError(
            f"dictionary_learning checkpoint needs config.json beside it: {config_path} not found"
        )
    try:
        config = json.loads(config_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise InputError(f"{config_path}: not valid JSON") from None
    try:
        with warnings.catch_warnings():  # torch warns about pickle protocols before refusing
            warnings.simplefilter("ignore")
            weights = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        found = re.search(r"Unsupported global: GLOBAL (\S+)", str(exc))
        what = f" ({found.group(1)})" if found else ""
        raise InputError(
            f"{path}: refused to load: the checkpoint holds pickled objects other than tensors{what}, and "
            f"unpickling them could run code; only torch.load(weights_only=True) is used"
        ) from None
    except Exception as exc:  # noqa: BLE001 - truncated / not a torch file
        raise InputError(f"{path}: not a readable torch checkpoint ({first_line(exc)})") from None
    if not isinstance(weights, dict) or not all(
        isinstance(v, torch.Tensor) for v in weights.values()
    ):
        raise InputError(f"{path}: expected a state dict of tensors")
    cfg = dictionary_learning_cfg(config, device)
    try:
        state = dictionary_learning_state_dict(weights, cfg)
    except KeyError as exc:
        raise InputError(f"{path}: state dict has no {exc} tensor") from None
    from sae_lens.registry import get_sae_class

    sae_class, cfg_class = get_sae_class(cfg["architecture"])
    sae = sae_class(cfg_class.from_dict(cfg))
    try:
        sae.load_state_dict(state)
    except RuntimeError as exc:
        raise InputError(
            f"{path}: weights do not match config.json ({state_dict_problem(exc)})"
        ) from None
    return sae.to(device=device, dtype=getattr(torch, dtype))


def spec_from_release(release: str, sae_id: str) -> SAESpec:
    return SAESpec(
        release,
        sae_id,
        lambda device, dtype: load_release_sae(release, sae_id, device, dtype),
        "release",
    )


def spec_from_path(path: str | Path, name: str | None = None) -> SAESpec:
    """``--sae-path``: a saved SAE-Lens folder, or a dictionary_learning ``.pt`` file."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"SAE path not found: {path}")
    if path.is_dir():
        loader = load_folder_sae
        stem = name or path.name
    elif path.suffix == ".pt":
        loader = load_dictionary_learning_sae
        stem = name or (path.parent.name if path.stem == "ae" else path.stem)
    else:
        raise InputError(
            f"--sae-path must be an SAE-Lens folder or a dictionary_learning .pt file: {path}"
        )
    return SAESpec(
        LOCAL_RELEASE, stem, lambda device, dtype: loader(path, device, dtype), "path", str(path)
    )


def spec_from_object(sae: SAE, name: str, release: str = LOCAL_RELEASE) -> SAESpec:
    """An SAE already in memory (library use, tests)."""
    return SAESpec(
        release,
        name,
        lambda device, dtype: sae.to(device=device, dtype=getattr(torch, dtype)),
        "object",
    )


def specs_from_regex(release_regex: str, block_regex: str) -> list[SAESpec]:
    """SAEBench-style selection over SAE-Lens's release directory (ships with SAE-Lens; works offline)."""
    for pattern in (release_regex, block_regex):
        try:
            re.compile(pattern)
        except re.error as exc:
            raise InputError(f"invalid regular expression '{pattern}': {exc}") from None
    from sae_bench.sae_bench_utils.sae_selection_utils import get_saes_from_regex

    matches = get_saes_from_regex(release_regex, block_regex)
    if not matches:
        raise InputError(
            f"no SAE-Lens SAE matches --sae-regex '{release_regex}' --sae-block-regex '{block_regex}'"
        )
    return [spec_from_release(release, sae_id) for release, sae_id in matches]


def as_specs(selected_saes: list) -> list[SAESpec]:
    """SAEBench's ``selected_saes`` forms — (release, sae_id) or (name, SAE) — or SAESpecs, as SAESpecs."""
    from sae_lens import SAE

    specs = []
    for item in selected_saes:
        if isinstance(item, SAESpec):
            specs.append(item)
        elif isinstance(item, tuple) and len(item) == 2 and isinstance(item[1], str):
            specs.append(spec_from_release(*item))
        elif isinstance(item, tuple) and len(item) == 2 and isinstance(item[1], SAE):
            specs.append(spec_from_object(item[1], "custom_sae", release=item[0]))
        else:
            raise InputError(
                f"cannot select SAE {item!r}: expected (release, sae_id) or (name, SAE)"
            )
    return specs
