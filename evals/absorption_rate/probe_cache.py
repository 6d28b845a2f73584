"""SAEBench's ground-truth first-letter probe, trained once per model, layer and settings and kept in the
package cache (``SAE_BENCH_AMORTIZATION_CACHE``).

SAEBench trains a logistic-regression probe per model and layer (a forward pass over its whole spelling
vocabulary, then 50 epochs) and reuses the folder by model name and layer alone. Here the probe is a stored
result like any other: its key names every input that makes it (the model's name, dtype and weights up to
the layer, the layer, SAEBench's prompt template, token position and seed, the SAEBench version, the device
type); it is written atomically and kept as safetensors, not as a pickle. Each eval gets a private copy in
SAEBench's layout, so SAEBench finds it there and trains nothing.

The model's weights enter the key as a strided sample of 1,024 values of every tensor up to the layer
(with names, shapes and dtypes): another checkpoint differs there; an edit of a few weights may not.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from importlib.metadata import version
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from safetensors.torch import load_file, save_file

from sae_bench_amortization.cache import cache_root

if TYPE_CHECKING:
    from sae_bench.evals.absorption.eval_config import AbsorptionEvalConfig
    from transformer_lens import HookedTransformer

CACHE_FOLDER = "saebench-probes"
KEPT = ("data.npz", "train_df.csv", "test_df.csv")  # what SAEBench reads back besides probe.pth
SAMPLE = 1024


def weights_sample_digest(model: HookedTransformer, layer: int) -> str:
    """SHA-256 over the parameters that make ``blocks.{layer}.hook_resid_post``: each one's name, dtype,
    shape and ``SAMPLE`` evenly strided values."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.named_parameters()):
        if name.startswith("blocks.") and int(name.split(".")[1]) > layer:
            continue
        if name.startswith(("unembed.", "ln_final.")):
            continue
        flat = tensor.detach().reshape(-1)
        sample = flat[:: max(1, flat.numel() // SAMPLE)][:SAMPLE].float().cpu()
        digest.update(f"{name}|{tensor.dtype}|{list(tensor.shape)}|".encode())
        digest.update(sample.numpy().tobytes())
    return digest.hexdigest()


def probe_inputs(
    model: HookedTransformer, layer: int, sb: AbsorptionEvalConfig, device: str
) -> dict[str, object]:
    """Everything the probe depends on (its cache key is their hash)."""
    return {
        "model": model.cfg.model_name,
        "model_dtype": str(model.cfg.dtype),
        "weights_sample_sha256": weights_sample_digest(model, layer),
        "layer": layer,
        "prompt_template": sb.prompt_template,
        "prompt_token_pos": sb.prompt_token_pos,
        "random_seed": sb.random_seed,
        "sae_bench": version("sae-bench"),
        "device_type": torch.device(device).type,
    }


def cached_probe(
    model: HookedTransformer, layer: int, sb: AbsorptionEvalConfig, device: str
) -> tuple[Path, bool]:
    """(the cache folder holding the probe for these inputs, whether it was trained now). Two processes
    that train the same probe at once each finish; the first rename wins and both read the same files."""
    inputs = probe_inputs(model, layer, sb, device)
    key = hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()[:20]
    final = cache_root() / CACHE_FOLDER / f"{model.cfg.model_name.replace('/', '_')}-L{layer}-{key}"
    if (final / "inputs.json").is_file():
        return final, False
    final.parent.mkdir(parents=True, exist_ok=True)
    building = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}-"))
    try:
        _train_into(building, model, layer, sb, device)
        (building / "inputs.json").write_text(json.dumps(inputs, indent=2, sort_keys=True))
        try:
            os.rename(building, final)
        except OSError:  # another process stored it first
            if not (final / "inputs.json").is_file():
                raise
    finally:
        shutil.rmtree(building, ignore_errors=True)
    return final, True


def _train_into(
    folder: Path, model: HookedTransformer, layer: int, sb: AbsorptionEvalConfig, device: str
) -> None:
    """SAEBench's probe training into a private folder; the probe is kept as ``probe.safetensors``."""
    from sae_bench.evals.absorption.common import load_probe, train_and_save_probes

    saebench_dir = folder / "saebench"
    train_and_save_probes(
        model,
        layers=[layer],
        base_template=sb.prompt_template,
        pos_idx=sb.prompt_token_pos,
        probes_dir=saebench_dir,
        device=device,
    )
    trained = saebench_dir / model.cfg.model_name / f"layer_{layer}"
    # SAEBench pickles the probe module; this process wrote it a moment ago into its private folder
    probe = load_probe(model.cfg.model_name, layer, saebench_dir, torch.float32, "cpu")
    save_file(
        {
            "weight": probe.fc.weight.detach().contiguous(),
            "bias": probe.fc.bias.detach().contiguous(),
        },
        folder / "probe.safetensors",
    )
    for name in KEPT:
        shutil.copyfile(trained / name, folder / name)
    shutil.rmtree(saebench_dir)


def install_probe(cached: Path, probes_dir: Path, model_name: str, layer: int) -> None:
    """The cached probe in SAEBench's layout under ``probes_dir`` (``{model}/layer_{L}/probe.pth``, its
    train/test activations and word tables)."""
    from sae_bench.evals.absorption.probing import LinearProbe

    target = probes_dir / model_name / f"layer_{layer}"
    target.mkdir(parents=True, exist_ok=True)
    tensors = load_file(cached / "probe.safetensors")
    n_letters, d_model = tensors["weight"].shape
    probe = LinearProbe(d_model, n_letters)
    probe.fc.load_state_dict(tensors)
    torch.save(probe, target / "probe.pth")
    for name in KEPT:
        shutil.copyfile(cached / name, target / name)
