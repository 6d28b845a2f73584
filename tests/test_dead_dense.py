"""dead_dense end to end: planted dead/dense latents, a brute-force check, result files, skipping."""

from __future__ import annotations

import json

import numpy as np
import torch
from sae_lens.saes.standard_sae import StandardSAE, StandardSAEConfig
from safetensors.torch import load_file

from conftest import read_result, run_subprocess, write_activations


def test_planted_dead_and_dense_rates_are_exact(planted, tmp_path, cli):
    out = tmp_path / "out"
    result = cli.dead_dense(
        planted.path,
        planted.activations,
        "--output-dir",
        out,
        "--device",
        "cpu",
    )
    assert result.code == 0, result.err
    data = read_result(out, "dead_dense")
    metrics = data["eval_result_metrics"]["pathologies"]
    assert metrics["dead_rate"] == planted.n_dead / planted.d_sae
    assert metrics["dense_rate"] == planted.n_dense / planted.d_sae
    assert metrics["alive_fraction"] == 1 - planted.n_dead / planted.d_sae
    # each token: one of the 10 readers fires iff its coordinate is hot (10 of 20 tokens), + 2 dense
    assert metrics["mean_l0"] == 0.5 + planted.n_dense
    assert metrics["n_tokens"] == 1000


def test_result_file_is_saebench_format(planted, tmp_path, cli):
    out = tmp_path / "out"
    assert (
        cli.dead_dense(
            planted.path,
            planted.activations,
            "--output-dir",
            out,
            "--device",
            "cpu",
        ).code
        == 0
    )
    path = out / "dead_dense" / "local_planted_sae_eval_results.json"
    data = json.loads(path.read_text())
    for key in (
        "eval_type_id",
        "eval_config",
        "eval_id",
        "datetime_epoch_millis",
        "eval_result_metrics",
        "eval_result_details",
        "sae_bench_commit_hash",
        "sae_lens_id",
        "sae_lens_release_id",
        "sae_lens_version",
        "sae_cfg_dict",
    ):
        assert key in data, key
    assert data["eval_type_id"] == "dead_dense"
    assert data["sae_lens_release_id"] == "local" and data["sae_lens_id"] == "planted_sae"
    assert data["eval_config"]["inference_mode"] == "amortized"
    assert data["eval_config"]["dense_threshold"] == 0.1
    assert data["sae_cfg_dict"]["d_sae"] == planted.d_sae
    # histogram: dead row + alive bins covering every latent
    details = data["eval_result_details"]
    assert details[0]["bin"] == "dead" and details[0]["n_latents"] == planted.n_dead
    assert sum(row["n_latents"] for row in details) == planted.d_sae
    # the per-latent frequencies beside the JSON
    freq = load_file(out / "dead_dense" / "local_planted_sae_feature_frequency.safetensors")
    expected = np.array([0.05] * 10 + [0.0] * 3 + [1.0] * 2)
    np.testing.assert_allclose(freq["feature_frequency"].numpy(), expected)
    assert freq["firing_counts"].tolist() == [50] * 10 + [0] * 3 + [1000] * 2
    # SAEBench's own schema check accepts the file
    from sae_bench.sae_bench_utils.testing_utils import validate_eval_output_format_file

    from sae_bench_amortization.evals.dead_dense.eval_output import DeadDenseEvalOutput

    validate_eval_output_format_file(str(path), DeadDenseEvalOutput)


def test_random_sae_matches_brute_force(tmp_path, cli):
    """Rates from the CLI equal numpy's relu(x W_enc + b_enc) > 0 counts on the same tokens."""
    torch.manual_seed(0)
    d_in, d_sae, n = 16, 64, 3000
    sae = StandardSAE(StandardSAEConfig(d_in=d_in, d_sae=d_sae))
    with torch.no_grad():
        sae.W_enc.normal_()
        sae.b_enc.uniform_(-25.0, 2.0)
        sae.b_dec.normal_(0, 0.1)
    sae.save_model(tmp_path / "random_sae")
    acts = torch.randn(n, d_in)
    write_activations(tmp_path / "acts.safetensors", acts)
    out = tmp_path / "out"
    result = cli.dead_dense(
        tmp_path / "random_sae",
        tmp_path / "acts.safetensors",
        "--output-dir",
        out,
        "--device",
        "cpu",
        "--batch-size",
        "257",
        "--dense-threshold",
        "0.2",
    )
    assert result.code == 0, result.err
    x, w, b, bd = (t.detach().double().numpy() for t in (acts, sae.W_enc, sae.b_enc, sae.b_dec))
    fired = ((x - bd) @ w + b) > 0
    freq = fired.mean(axis=0)
    metrics = read_result(out, "dead_dense")["eval_result_metrics"]["pathologies"]
    assert (
        0 < (freq == 0).sum() < d_sae and 0 < (freq > 0.2).sum() < d_sae
    )  # the case is not trivial
    assert metrics["dead_rate"] == (freq == 0).mean()
    assert metrics["dense_rate"] == (freq > 0.2).mean()
    assert abs(metrics["mean_l0"] - fired.sum(axis=1).mean()) < 1e-9


def test_existing_result_is_skipped_unless_forced(planted, tmp_path, cli):
    out = tmp_path / "out"
    args = (
        "run",
        "--eval",
        "dead_dense",
        "--sae-path",
        planted.path,
        "--activations",
        planted.activations,
        "--output-dir",
        out,
        "--device",
        "cpu",
    )
    assert cli(*args).code == 0
    path = out / "dead_dense" / "local_planted_sae_eval_results.json"
    first = json.loads(path.read_text())["eval_id"]
    again = cli(*args)
    assert again.code == 0 and "skipping local_planted_sae" in again.out
    assert json.loads(path.read_text())["eval_id"] == first
    assert cli(*args, "--force-rerun").code == 0
    assert json.loads(path.read_text())["eval_id"] != first
    assert not [
        p for p in (out / "dead_dense").iterdir() if p.name.startswith(".")
    ]  # no temporaries left


def test_sae_name_and_n_tokens(planted, tmp_path, cli):
    out = tmp_path / "out"
    result = cli(
        "run",
        "--eval",
        "dead_dense",
        "--sae-path",
        planted.path,
        "--sae-name",
        "mine",
        "--activations",
        planted.activations,
        "--output-dir",
        out,
        "--n-tokens",
        "20",
        "--device",
        "cpu",
    )
    assert result.code == 0, result.err
    data = json.loads((out / "dead_dense" / "local_mine_eval_results.json").read_text())
    assert data["eval_result_metrics"]["pathologies"]["n_tokens"] == 20
    assert data["eval_config"]["n_tokens"] == 20


def test_real_subprocess_exit_codes(planted, tmp_path):
    out = tmp_path / "out"
    done = run_subprocess(
        "run",
        "--eval",
        "dead_dense",
        "--sae-path",
        planted.path,
        "--activations",
        planted.activations,
        "--output-dir",
        out,
        "--device",
        "cpu",
    )
    assert done.returncode == 0, done.stderr
    assert "local_planted_sae" in done.stdout and "dead_rate=0.2" in done.stdout
    bad = run_subprocess(
        "run",
        "--eval",
        "dead_dense",
        "--sae-path",
        tmp_path / "nope",
        "--activations",
        planted.activations,
        "--output-dir",
        out,
    )
    assert bad.returncode == 2
    assert bad.stderr.strip().count("\n") == 0 and "Traceback" not in bad.stderr
    assert "SAE path not found" in bad.stderr
