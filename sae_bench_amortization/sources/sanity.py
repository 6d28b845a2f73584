"""Is an SAE fit to evaluate? Finite weights, a sparsity budget 0 < k ≤ d_sae, a decoder that is not all
zeros, and (before loading a saved folder) cfg.json's widths equal to the weights' shapes — each failure one
line naming the SAE, the field and the values."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import torch

from sae_bench_amortization.errors import InputError, first_line

# parameter → its shape in terms of the config's widths (SAE-Lens's names)
EXPECTED_SHAPES = {
    "W_enc": ("d_in", "d_sae"),
    "W_dec": ("d_sae", "d_in"),
    "b_enc": ("d_sae",),
    "b_dec": ("d_in",),
    "threshold": ("d_sae",),
    "b_gate": ("d_sae",),
    "b_mag": ("d_sae",),
    "r_mag": ("d_sae",),
}


def check_sae(sae: Any, name: str) -> None:
    """One-line :class:`InputError` when ``sae`` cannot give meaningful codes."""
    for parameter, tensor in sae.state_dict().items():
        if not tensor.is_floating_point() or bool(torch.isfinite(tensor.sum())):
            continue  # a finite sum: every value is finite (NaN, Inf propagate; overflow falls through)
        if not bool(torch.isfinite(tensor).all()):
            n_nan, n_inf = int(torch.isnan(tensor).sum()), int(torch.isinf(tensor).sum())
            raise InputError(f"SAE {name}: {parameter} holds {n_nan} NaN and {n_inf} Inf values")
    d_sae = int(sae.cfg.d_sae)
    k = getattr(sae.cfg, "k", None)
    if k is not None and not _is_integer(k):
        raise InputError(f"SAE {name}: k must be an integer, got {k!r}")
    if k is not None and not 0 < float(k) <= d_sae:
        raise InputError(f"SAE {name}: k must satisfy 0 < k <= d_sae ({d_sae}), got {k}")
    group_k = getattr(sae.cfg, "group_k", None)
    if group_k is not None and not all(_is_integer(budget) for budget in group_k):
        raise InputError(f"SAE {name}: every group_k must be an integer, got {list(group_k)}")
    if group_k is not None and any(int(budget) <= 0 for budget in group_k):
        raise InputError(f"SAE {name}: every group_k must be positive, got {list(group_k)}")
    if not bool(sae.W_dec.detach().any()):
        raise InputError(f"SAE {name}: its decoder W_dec is all zeros")


def _is_integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_folder_shapes(cfg: dict[str, Any], weights_path: Path) -> None:
    """cfg.json's d_in / d_sae against the shapes in ``sae_weights.safetensors``: the first disagreement as
    one line naming the field, the tensor and both shapes."""
    from safetensors import SafetensorError, safe_open

    widths = {key: cfg.get(key) for key in ("d_in", "d_sae")}
    for key, value in widths.items():
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            raise InputError(
                f"{weights_path.parent / 'cfg.json'}: {key} must be a positive integer, got {value!r}"
            )
    if cfg.get("k") is not None and not _is_integer(cfg["k"]):
        raise InputError(
            f"{weights_path.parent / 'cfg.json'}: k must be an integer, got {cfg['k']!r}"
        )
    try:
        with safe_open(str(weights_path), framework="pt") as handle:
            shapes = {key: list(handle.get_slice(key).get_shape()) for key in handle.keys()}  # noqa: SIM118
    except (SafetensorError, OSError, ValueError):
        return  # unreadable weights: the loader reports them
    for parameter, dims in EXPECTED_SHAPES.items():
        if parameter not in shapes:
            continue
        expected = [widths[dim] for dim in dims]
        found = shapes[parameter]
        if found != expected:
            wrong = next(
                (dim for dim, want, got in zip(dims, expected, found, strict=False) if want != got),
                dims[0],
            )
            raise InputError(
                f"{weights_path.parent / 'cfg.json'} says {wrong} {widths[wrong]} but {parameter} in "
                f"{weights_path.name} has shape {found} (expected {expected})"
            )


def read_cfg(cfg_path: Path) -> dict[str, Any]:
    try:
        cfg = json.loads(cfg_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise InputError(f"{cfg_path}: not valid JSON") from None
    if not isinstance(cfg, dict):
        raise InputError(f"{cfg_path}: expected a JSON object")
    return cfg


_SIZE_MISMATCH = re.compile(
    r"size mismatch for (\S+): copying a param with shape torch\.Size\(\[([^\]]*)\]\) from checkpoint, "
    r"the shape in current model is torch\.Size\(\[([^\]]*)\]\)"
)
_MISSING = re.compile(r"Missing key\(s\) in state_dict: ([^.]+)\.")
_UNEXPECTED = re.compile(r"Unexpected key\(s\) in state_dict: ([^.]+)\.")


def state_dict_problem(exc: BaseException) -> str:
    """The informative part of a ``load_state_dict`` failure (PyTorch puts it after a first line that says
    nothing): the first shape mismatch with both shapes, or the missing tensors."""
    text = str(exc)
    found = _SIZE_MISMATCH.search(text)
    if found:
        name, stored, model = found.groups()
        return (
            f"{name.rstrip(':')} has shape [{stored}] in the weights but the config gives [{model}]"
        )
    missing = _MISSING.search(text)
    if missing:
        return f"the weights lack {missing.group(1).strip()}"
    unexpected = _UNEXPECTED.search(text)
    if unexpected:
        return f"the weights hold tensors this architecture does not have: {unexpected.group(1).strip()}"
    return first_line(exc)
