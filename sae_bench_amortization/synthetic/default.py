"""The embedded offline default: the synthetic ground-truth benchmark and a TopK SAE trained on it.

``SyntheticConfig()`` (d_in 128, 256 true features with planted hierarchies and composite concepts)
streams 60,000 training tokens into a TopK SAE (d_sae 512, k 4, SAE-Lens's TopK training SAE); the next
20,000 tokens, with their ground-truth concept labels, are the evaluation activation file, with the
truth sidecar beside it. Deterministic; built once into the user cache folder (``platformdirs``;
``SAE_BENCH_AMORTIZATION_CACHE`` overrides it) and reused.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from sae_bench_amortization.cache import cache_root
from sae_bench_amortization.synthetic.generator import (
    SyntheticActivations,
    SyntheticConfig,
    ground_truth,
    write_synthetic,
)
from sae_bench_amortization.synthetic.training import train_sae

VERSION = "synthetic-v2"
N_TRAIN_TOKENS = 60_000
N_EVAL_TOKENS = 20_000
D_SAE = 512
K = 4
N_EPOCHS = 4


@dataclass(frozen=True)
class DefaultBenchmark:
    activations: Path  # held-out evaluation activation file (with concepts)
    sae_path: Path  # SAE-Lens folder of the TopK SAE
    sae_name: str = "synthetic_topk"

    @property
    def truth(self) -> Path:
        return Path(f"{self.activations}.truth.safetensors")


def default_benchmark(rebuild: bool = False) -> DefaultBenchmark:
    """The cached default benchmark, built on first use (seconds on 2 CPU cores)."""
    folder = cache_root() / VERSION
    bench = DefaultBenchmark(folder / "eval_activations.safetensors", folder / "sae")
    if rebuild and folder.exists():
        shutil.rmtree(folder)
    if (
        bench.activations.is_file()
        and bench.truth.is_file()
        and (bench.sae_path / "cfg.json").is_file()
    ):
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
        f"building the offline default benchmark (synthetic ground truth, TopK SAE) in {folder.parent}"
    )
    config = SyntheticConfig()
    truth = ground_truth(config)
    train = SyntheticActivations(truth, N_TRAIN_TOKENS)
    sae = train_sae(
        train,
        "topk",
        D_SAE,
        N_EPOCHS * N_TRAIN_TOKENS,
        k=K,
        seed=0,
        metadata={
            "model_name": "synthetic",
            "hook_name": "synthetic",
            "context_size": 1,
            "prepend_bos": False,
        },
    )
    sae.save_inference_model(folder / "sae")
    write_synthetic(
        folder / "eval_activations.safetensors", config, N_EVAL_TOKENS, start=N_TRAIN_TOKENS
    )
