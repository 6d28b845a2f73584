"""Wide SAEs: no d_sae × d_sae matrix. The Gram-free solver reaches the cached-Gram solver's optimum, and
amortization_gap runs on a 65,536-latent SAE under a memory limit the Gram matrix alone would exceed."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import torch

from conftest import write_activations


def wide_problem(d_in: int, d_sae: int, n: int, active: int, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    D = torch.nn.functional.normalize(torch.randn(d_sae, d_in, generator=generator), dim=1)
    rows = torch.stack([torch.randperm(d_sae, generator=generator)[:active] for _ in range(n)])
    magnitudes = 0.5 + torch.rand(n, active, generator=generator)
    x = torch.einsum("nk,nkd->nd", magnitudes, D[rows]) + 0.05 * torch.randn(
        n, d_in, generator=generator
    )
    return D, x


def test_gram_free_solver_reaches_the_cached_gram_optimum():
    from sae_bench_amortization.inference.dictionary import Dictionary
    from sae_bench_amortization.inference.solver import objective
    from sae_bench_amortization.inference.working_set import working_set_solve

    D, x = wide_problem(d_in=48, d_sae=1024, n=300, active=6)
    for lam in (0.05, 0.2):
        cached = working_set_solve(Dictionary(D, torch.zeros(48)), x, lam, gram_cache_bytes=1 << 40)
        computed = working_set_solve(Dictionary(D, torch.zeros(48)), x, lam, gram_cache_bytes=0)
        f_cached = float(objective(D, x, cached, lam).sum())
        f_computed = float(objective(D, x, computed, lam).sum())
        assert abs(f_computed - f_cached) <= 1e-6 * abs(f_cached), (lam, f_cached, f_computed)


def save_wide_topk(folder, n_tokens: int) -> None:
    """``folder/wide``: a TopK SAE (d_in 64, 65,536 latents, k 16) on a planted decoder, encoder 0.9 × its
    transpose; ``folder/acts.safetensors``: n_tokens of 8 planted atoms each."""
    from sae_lens.saes.topk_sae import TopKSAE, TopKSAEConfig

    D, x = wide_problem(d_in=64, d_sae=65_536, n=n_tokens, active=8, seed=1)
    sae = TopKSAE(TopKSAEConfig(d_in=64, d_sae=65_536, k=16))
    with torch.no_grad():
        sae.W_dec.copy_(D)
        sae.W_enc.copy_(0.9 * D.T)
        sae.b_enc.zero_()
        sae.b_dec.zero_()
    sae.save_model(folder / "wide")
    write_activations(folder / "acts.safetensors", x)


def test_amortization_gap_at_65536_latents_under_a_memory_limit(tmp_path):
    """The Gram matrix of 65,536 latents is 16 GiB; the run gets 6 GiB of address space in all."""

    d_sae = 65_536
    save_wide_topk(tmp_path, n_tokens=300)
    limit = 6 << 30
    assert d_sae * d_sae * 4 > 2 * limit
    code = (
        "import resource, sys; resource.setrlimit(resource.RLIMIT_AS, (int(sys.argv[1]), int(sys.argv[1]))); "
        "from sae_bench_amortization.cli import main; sys.exit(main(sys.argv[2:]))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(limit), "run", "--eval", "amortization_gap", "--sae-path",
         tmp_path / "wide", "--activations", tmp_path / "acts.safetensors", "--output-dir", tmp_path / "out",
         "--device", "cpu", "--calibration-tokens", "300"],
        capture_output=True, text=True, timeout=900, env={**os.environ, "TQDM_DISABLE": "1"},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    (path,) = (tmp_path / "out" / "amortization_gap").glob("*_eval_results.json")
    rows = {row["mode"]: row for row in json.loads(path.read_text())["eval_result_details"]}
    objectives = [rows[m]["objective"] for m in ("non_amortized", "semi:25", "semi:5", "amortized")]
    assert objectives == sorted(objectives), objectives


def test_k_sparse_non_amortized_at_65536_latents_under_the_same_memory_limit(tmp_path):
    """--objective k_sparse's search (NN-OMP, IHT, subspace pursuit, swaps) at 65,536 latents within 6 GiB
    of address space: no d_sae × d_sae matrix, NN-OMP's gathers bounded (64 tokens: its search is slow)."""
    save_wide_topk(tmp_path, n_tokens=64)
    code = (
        "import resource, sys; resource.setrlimit(resource.RLIMIT_AS, (int(sys.argv[1]), int(sys.argv[1]))); "
        "from sae_bench_amortization.cli import main; sys.exit(main(sys.argv[2:]))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(6 << 30), "run", "--eval", "dead_dense", "--sae-path",
         tmp_path / "wide", "--activations", tmp_path / "acts.safetensors", "--output-dir", tmp_path / "out",
         "--device", "cpu", "--inference", "non_amortized", "--objective", "k_sparse"],
        capture_output=True, text=True, timeout=900, env={**os.environ, "TQDM_DISABLE": "1"},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    (path,) = (tmp_path / "out" / "dead_dense").glob("*_eval_results.json")
    result = json.loads(path.read_text())
    assert result["eval_config"]["objective"] == "k_sparse"
    assert result["eval_result_metrics"]["pathologies"]["mean_l0"] <= 16


def test_an_allocation_failure_is_one_line_naming_the_memory_and_the_flags(
    planted, tmp_path, cli, monkeypatch
):
    import sae_bench_amortization.evals.dead_dense.main as dead_dense

    def out_of_memory(*args, **kwargs):
        raise RuntimeError(
            "DefaultCPUAllocator: can't allocate memory: you tried to allocate 17179869184 bytes"
        )

    monkeypatch.setattr(dead_dense, "evaluate_sae", out_of_memory)
    out = tmp_path / "out"
    result = cli.dead_dense(planted.path, planted.activations, "--output-dir", out)
    assert result.code == 2 and len(result.err.strip().splitlines()) == 1, result.err
    assert "out of memory" in result.err and "--batch-size" in result.err and "GiB" in result.err
    assert not list(out.rglob("*_eval_results.json"))


def test_chunks_are_sized_to_the_free_memory(monkeypatch):
    from sae_bench_amortization.runner import memory

    monkeypatch.setattr(memory, "available_bytes", lambda device: 8 << 30)
    per_token = memory.chunk_bytes(1, 1_048_576)  # a 1M-latent SAE: 32 MiB of buffers per token
    assert memory.fit_batch_size(4096, 1_048_576, "cpu") == (4 << 30) // per_token == 128
    assert memory.fit_batch_size(4096, 16_384, "cpu") == 4096
