"""The embedded offline default: the README's main job."""

from __future__ import annotations

import json

import numpy as np
from safetensors.torch import load_file

from sae_bench_amortization.activations.file import ActivationFile
from sae_bench_amortization.synthetic import default
from sae_bench_amortization.synthetic.generator import load_truth

from conftest import run_subprocess


def test_main_job_on_the_embedded_default(tmp_path):
    """`saebench run --eval dead_dense` with nothing else builds the default once and evaluates it."""
    done = run_subprocess("run", "--eval", "dead_dense", "--device", "cpu", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "local_synthetic_topk" in done.stdout
    result = tmp_path / "eval_results" / "dead_dense" / "local_synthetic_topk_eval_results.json"
    data = json.loads(result.read_text())
    metrics = data["eval_result_metrics"]["pathologies"]
    bench = default.default_benchmark()  # already built by the run: returns the cached copy
    file = ActivationFile(bench.activations)
    assert metrics["n_tokens"] == default.N_EVAL_TOKENS == file.n_tokens
    assert file.concept_names == load_truth(bench.truth).concept_names  # ground truth travels along
    assert metrics["mean_l0"] == default.K  # TopK SAE: exactly k positive latents per token here
    frequency = load_file(result.with_name("local_synthetic_topk_feature_frequency.safetensors"))[
        "feature_frequency"
    ]
    assert metrics["dead_rate"] == float((frequency == 0).double().mean())
    assert np.isclose(frequency.sum().item(), metrics["mean_l0"])  # Σ_j freq_j = mean L0
    assert (
        data["sae_cfg_dict"]["architecture"] == "topk"
        and data["sae_cfg_dict"]["d_sae"] == default.D_SAE
    )
    # a second run reuses the cache and skips the finished result
    again = run_subprocess("run", "--eval", "dead_dense", "--device", "cpu", cwd=tmp_path)
    assert again.returncode == 0 and "skipping local_synthetic_topk" in again.stdout
    assert "building" not in again.stdout
