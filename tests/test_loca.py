"""LocA-SAE: angular variance, grouping, group TopK, SAE-Lens round trip, fine-tuning with resume, the CLI
and the ``loca`` row of amortization_gap."""

from __future__ import annotations

import json
import math
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from sae_lens import SAE, HookedSAETransformer
from sae_lens.saes.standard_sae import StandardSAE, StandardSAEConfig
from sae_lens.saes.topk_sae import TopKSAE, TopKSAEConfig
from safetensors.torch import load_file

from sae_bench_amortization.adapters import LocASAE, LocASAEConfig, angular_variance
from sae_bench_amortization.adapters.loca_grouping import group_by_angular_variance, scale_budgets
from sae_bench_amortization.loca.training import LocATrainingConfig, train_loca

from conftest import offline_hooked_transformer, read_result, write_activations

PAPER_K = (6, 5, 4, 3, 3, 2, 2, 1)


def random_topk(d_in=16, d_sae=64, k=13, seed=0, rescale=False) -> TopKSAE:
    torch.manual_seed(seed)
    sae = TopKSAE(TopKSAEConfig(d_in=d_in, d_sae=d_sae, k=k, rescale_acts_by_decoder_norm=rescale))
    with torch.no_grad():
        sae.W_dec.copy_(torch.randn(d_sae, d_in) * torch.rand(d_sae, 1).add(0.5))
        sae.W_enc.copy_(sae.W_dec.T)
        sae.b_enc.normal_(0, 0.1)
    return sae


def reference_group_topk(pre: torch.Tensor, groups: list[int], group_k: list[int]) -> torch.Tensor:
    """Per group, in a plain loop: ReLU then the k_g largest (the definition, written independently)."""
    codes = torch.zeros_like(pre)
    groups_t = torch.tensor(groups)
    for g, k in enumerate(group_k):
        members = (groups_t == g).nonzero().squeeze(1)
        values, order = pre[:, members].relu().topk(k, dim=1)
        for row in range(pre.shape[0]):
            codes[row, members[order[row]]] = values[row]
    return codes


# ------------------------------------------------------------------------------ angular variance


def test_angular_variance_equals_numpy_brute_force_and_marks_never_firing(tmp_path):
    sae = StandardSAE(StandardSAEConfig(d_in=8, d_sae=12))
    torch.manual_seed(1)
    with torch.no_grad():
        sae.W_enc.normal_()
        sae.b_enc.normal_(0, 0.5)
        sae.b_enc[[3, 7]] = -1e4  # never fire
    x = torch.randn(500, 8) + 0.5
    codes = sae.encode(x).detach().numpy()
    x64 = x.double().numpy()
    unit = x64 / np.linalg.norm(x64, axis=1, keepdims=True)
    expected = np.array(
        [
            1 - np.linalg.norm(unit[codes[:, j] > 0].mean(axis=0))
            if (codes[:, j] > 0).any()
            else np.nan
            for j in range(12)
        ]
    )
    for given in (x, write_activations(tmp_path / "a.safetensors", x)):
        avar = angular_variance(sae, given, batch_size=37).numpy()
        np.testing.assert_allclose(avar, expected, rtol=1e-10, atol=1e-12, equal_nan=True)
    assert np.isnan(expected[[3, 7]]).all() and np.isfinite(np.delete(expected, [3, 7])).all()


def test_one_direction_has_zero_angular_variance():
    sae = StandardSAE(StandardSAEConfig(d_in=4, d_sae=2))
    with torch.no_grad():
        sae.W_enc.zero_()
        sae.W_enc[0, 0] = 1.0  # latent 0 fires on +e0 only
        sae.W_enc[1, 1] = 1.0  # latent 1 fires on ±e1 + e2 mixtures
        sae.b_enc.zero_()
        sae.b_dec.zero_()
    x = torch.tensor([[3.0, 0, 0, 0], [1.0, 0, 0, 0], [0, 1.0, 1.0, 0], [0, 1.0, -1.0, 0]])
    avar = angular_variance(sae, x)
    assert avar[0].item() == pytest.approx(0.0, abs=1e-12)
    assert avar[1].item() == pytest.approx(
        1 - math.sqrt(0.5), abs=1e-12
    )  # mean of two 45° directions


def test_grouping_sorts_ascending_equal_sizes_never_firing_last():
    avar = torch.tensor(
        [0.5, math.nan, 0.1, 0.9, 0.3, math.nan, 0.2, 0.0, 0.7, 0.4], dtype=torch.float64
    )
    groups = group_by_angular_variance(avar, 4, "avar_asc")
    assert torch.bincount(groups).tolist() == [3, 3, 2, 2]
    # ascending: 7 2 6 | 4 9 0 | 8 3 | 1 5 (NaN)
    assert groups.tolist() == [1, 3, 0, 2, 1, 3, 0, 0, 2, 1]


def test_grouping_descending_puts_never_firing_latents_in_group_0():
    """The authors' order (the default): never-firing latents count as AVar 1, the highest."""
    avar = torch.tensor(
        [0.5, math.nan, 0.1, 0.9, 0.3, math.nan, 0.2, 0.0, 0.7, 0.4], dtype=torch.float64
    )
    groups = group_by_angular_variance(avar, 4)
    assert torch.bincount(groups).tolist() == [3, 3, 2, 2]
    # descending, NaN = 1, ties by index: 1 5 3 | 8 0 9 | 4 6 | 2 7
    assert groups.tolist() == [1, 0, 3, 0, 2, 0, 2, 3, 1, 1]


def test_from_sae_as_published_gives_the_largest_budget_to_the_highest_angular_variance():
    sae = random_topk(d_sae=64, k=20, rescale=True)
    with torch.no_grad():
        sae.b_enc[[5, 9, 40]] = -1e4  # never fire
    x = torch.randn(2000, 16)
    loca = LocASAE.from_sae(sae, x)  # defaults: avar_desc, budgets as given
    assert loca.cfg.group_k == list(PAPER_K) and loca.cfg.grouping["budgets_scaled"] is False
    assert loca.cfg.grouping["group_order"] == "avar_desc"
    assert loca.cfg.grouping["budget_scaling"] == "none"
    avar = angular_variance(sae, x)
    groups = torch.tensor(loca.cfg.latent_groups)
    assert set(groups[[5, 9, 40]].tolist()) == {0}
    means = [avar[(groups == g) & ~avar.isnan()].mean().item() for g in range(8)]
    assert means == sorted(means, reverse=True)
    assert max(range(8), key=lambda g: loca.cfg.group_k[g]) == int(np.argmax(means))
    assert (loca.encode(x) > 0).sum(-1).double().mean().item() <= 26


def test_budget_scaling_keeps_proportions():
    assert scale_budgets(PAPER_K, 26) == list(PAPER_K)
    # 16/26 of each: 3.69 3.08 2.46 1.85 1.85 1.23 1.23 0.62 → floors (min 1) 3 3 2 1 1 1 1 1 = 13,
    # the 3 left go to the largest fractions .85 .85 .69
    assert scale_budgets(PAPER_K, 16) == [4, 3, 2, 2, 2, 1, 1, 1]
    assert scale_budgets(PAPER_K, 52) == [12, 10, 8, 6, 6, 4, 4, 2]
    assert scale_budgets(PAPER_K, 4) == [1] * 8
    for total in range(8, 60):
        scaled = scale_budgets(PAPER_K, total)
        assert sum(scaled) == total and scaled == sorted(scaled, reverse=True)


# ------------------------------------------------------------------------------ the SAE


@pytest.mark.parametrize("d_sae", [64, 61])  # equal groups, and groups of unequal size (padded)
def test_group_topk_equals_the_per_group_definition(d_sae):
    torch.manual_seed(0)
    groups = (torch.randperm(d_sae) % 8).tolist()
    loca = LocASAE(LocASAEConfig(d_in=16, d_sae=d_sae, latent_groups=groups, group_k=list(PAPER_K)))
    with torch.no_grad():
        loca.W_enc.normal_()
        loca.b_enc.normal_(0, 0.5)
    x = torch.randn(300, 16)
    codes = loca.encode(x)
    pre = x @ loca.W_enc + loca.b_enc - loca.b_dec @ loca.W_enc
    torch.testing.assert_close(codes, reference_group_topk(pre.detach(), groups, list(PAPER_K)))
    groups_t = torch.tensor(groups)
    for g, k in enumerate(PAPER_K):
        assert ((codes[:, groups_t == g] > 0).sum(dim=1) <= k).all()
    assert ((codes > 0).sum(dim=1) <= sum(PAPER_K)).all()
    # the hooked path (pre-activations in latent order) gives the same codes, batched [B, T, d_in] too
    torch.testing.assert_close(loca.encode_with_hidden_pre(x)[0], codes)
    torch.testing.assert_close(loca.encode(x.view(30, 10, 16)), codes.view(30, 10, d_sae))


def test_from_sae_groups_by_angular_variance_and_starts_from_the_global_sae():
    sae = random_topk(d_sae=64, k=13, rescale=True)
    with torch.no_grad():
        sae.b_enc[[5, 9, 40]] = -1e4  # never fire
    x = torch.randn(2000, 16)
    loca = LocASAE.from_sae(sae, x, group_order="avar_asc", budget_scaling="match_k")
    avar = angular_variance(sae, x)
    groups = torch.tensor(loca.cfg.latent_groups)
    means = [avar[(groups == g) & ~avar.isnan()].mean().item() for g in range(8)]
    assert means == sorted(means)
    assert set(groups[[5, 9, 40]].tolist()) == {7}
    assert loca.cfg.grouping["n_never_fired"] == 3
    assert loca.cfg.group_k == scale_budgets(PAPER_K, 13) and sum(loca.cfg.group_k) == 13
    assert loca.cfg.grouping["budgets_scaled"] is True
    # decoder kept (unit rows, norms folded into the encoder): the same reconstruction of the same codes
    norms = sae.W_dec.norm(dim=1)
    torch.testing.assert_close(loca.W_dec * norms[:, None], sae.W_dec)
    torch.testing.assert_close(loca.W_enc, sae.W_enc * norms)
    assert torch.equal(loca.b_dec, sae.b_dec)
    # group W_enc^(g) are the global encoder's columns of that group's latents
    W_g, b_g = loca.group_encoder(2)
    members = (groups == 2).nonzero().squeeze(1)
    torch.testing.assert_close(W_g, sae.W_enc[:, members] * norms[members])
    torch.testing.assert_close(b_g, sae.b_enc[members] * norms[members])


def test_round_trip_through_sae_lens_gives_identical_codes(tmp_path):
    loca = LocASAE.from_sae(random_topk(d_sae=61), torch.randn(500, 16))
    loca.save_model(tmp_path / "loca")
    code = (
        "import sys, torch, sae_bench_amortization; from sae_lens import SAE; "
        "sae = SAE.load_from_disk(sys.argv[1]); torch.manual_seed(3); "
        "print(type(sae).__name__, sae.encode(torch.randn(200, 16)).sum().item())"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "loca")], capture_output=True, text=True
    )
    name, total = done.stdout.split()
    torch.manual_seed(3)
    assert name == "LocASAE" and float(total) == loca.encode(torch.randn(200, 16)).sum().item(), (
        done.stderr
    )
    back = SAE.load_from_disk(tmp_path / "loca")
    x = torch.randn(300, 16)
    assert torch.equal(back.encode(x), loca.encode(x)) and back.cfg.grouping == loca.cfg.grouping


def test_hooked_sae_transformer_caches_group_topk_codes():
    base_model = offline_hooked_transformer()
    model = HookedSAETransformer(base_model.cfg, tokenizer=base_model.tokenizer)
    model.load_state_dict(base_model.state_dict(), strict=False)
    sae = random_topk(d_in=32, d_sae=128, k=26)
    sae.cfg.metadata.hook_name = "blocks.0.hook_resid_post"
    loca = LocASAE.from_sae(sae, torch.randn(400, 32))
    tokens = model.to_tokens(["A short sentence about foxes."])
    _, cache = model.run_with_cache_with_saes(tokens, saes=[loca])
    codes = cache["blocks.0.hook_resid_post.hook_sae_acts_post"]
    _, plain = model.run_with_cache(tokens, names_filter="blocks.0.hook_resid_post")
    torch.testing.assert_close(codes, loca.encode(plain["blocks.0.hook_resid_post"]))
    assert ((codes > 0).sum(-1) <= 26).all()


# ------------------------------------------------------------------------------ fine-tuning


def planted_data(n=4096, d_in=16, n_features=48, seed=0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    features = torch.nn.functional.normalize(
        torch.randn(n_features, d_in, generator=generator), dim=1
    )
    codes = (torch.rand(n, n_features, generator=generator) < 0.06) * torch.rand(
        n, n_features, generator=generator
    )
    return codes @ features


def test_fine_tuning_lowers_mse_and_keeps_unit_decoder_rows(tmp_path):
    x = planted_data()
    loca = LocASAE.from_sae(random_topk(d_sae=64, k=8), x)
    before = (loca.decode(loca.encode(x)) - x).pow(2).sum(-1).mean().item()
    config = LocATrainingConfig(n_tokens=65536, batch_size=256, lr=3e-3, checkpoint_every=16384)
    tuned = train_loca(loca, _source(x), tmp_path / "out", config)
    after = (tuned.decode(tuned.encode(x)) - x).pow(2).sum(-1).mean().item()
    assert after < 0.5 * before
    torch.testing.assert_close(tuned.W_dec.norm(dim=1), torch.ones(64))
    assert ((tuned.encode(x) > 0).sum(1) <= sum(tuned.cfg.group_k)).all()
    log = (tmp_path / "out" / "training_log.csv").read_text().splitlines()
    assert log[0] == "tokens,mse,aux_loss,dead_fraction" and log[-1].startswith("65536,")
    assert isinstance(SAE.load_from_disk(tmp_path / "out"), LocASAE)


def test_resumed_training_ends_with_the_weights_of_an_uninterrupted_one(tmp_path):
    x = planted_data()
    start = LocASAE.from_sae(random_topk(d_sae=64, k=8), x)
    start.save_model(tmp_path / "start")
    config = LocATrainingConfig(
        n_tokens=6144, batch_size=256, lr=3e-3, checkpoint_every=1024, log_every=1
    )
    whole = train_loca(
        SAE.load_from_disk(tmp_path / "start"), _source(x), tmp_path / "whole", config
    )
    # the first part of a run: stop after 2048 tokens (a checkpoint), then resume to the end
    first = LocATrainingConfig(**{**config.__dict__, "n_tokens": 2048})
    train_loca(SAE.load_from_disk(tmp_path / "start"), _source(x), tmp_path / "split", first)
    resumed = train_loca(None, _source(x), tmp_path / "split", config)
    for name, tensor in whole.state_dict().items():
        assert torch.equal(tensor, resumed.state_dict()[name]), name
    assert (tmp_path / "whole" / "training_log.csv").read_text() == (
        tmp_path / "split" / "training_log.csv"
    ).read_text()


def _source(x):
    from sae_bench_amortization.activations.sources import TensorActivations

    return TensorActivations(x)


def test_killed_train_loca_resumes_from_its_last_checkpoint(tmp_path):
    x = planted_data(n=8192)
    acts = write_activations(tmp_path / "a.safetensors", x)
    random_topk(d_sae=64, k=8).save_model(tmp_path / "topk")
    args = [
        sys.executable, "-m", "sae_bench_amortization.cli", "train-loca", "--sae-path", str(tmp_path / "topk"),
        "--activations", str(acts), "--n-tokens", "160000", "--batch-size", "256", "--lr", "3e-3",
        "--checkpoint-every", "4096", "--device", "cpu",
    ]  # fmt: skip
    reference = subprocess.run(
        [*args, "--out", str(tmp_path / "whole")], capture_output=True, text=True
    )
    assert reference.returncode == 0, reference.stderr
    process = subprocess.Popen([*args, "--out", str(tmp_path / "killed")], stderr=subprocess.PIPE)
    checkpoints = tmp_path / "killed" / "checkpoints"
    deadline = time.time() + 120
    while time.time() < deadline and not any(
        p.name.startswith("tokens_") and "partial" not in p.name
        for p in (checkpoints.glob("*") if checkpoints.exists() else [])
    ):
        time.sleep(0.05)
    time.sleep(0.3)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not (tmp_path / "killed" / "cfg.json").exists(), "killed too late to test resuming"
    again = subprocess.run(
        [*args, "--out", str(tmp_path / "killed")], capture_output=True, text=True
    )
    assert again.returncode == 0 and "resuming from" in again.stdout, again.stderr
    whole = load_file(tmp_path / "whole" / "sae_weights.safetensors")
    resumed = load_file(tmp_path / "killed" / "sae_weights.safetensors")
    assert all(torch.equal(whole[k], resumed[k]) for k in whole)


# ------------------------------------------------------------------------------ CLI and amortization_gap


def test_train_loca_cli_and_bad_inputs(tmp_path, cli):
    acts = write_activations(tmp_path / "a.safetensors", planted_data())
    random_topk(d_sae=64, k=8).save_model(tmp_path / "topk")
    common = [
        "train-loca",
        "--sae-path",
        tmp_path / "topk",
        "--activations",
        acts,
        "--device",
        "cpu",
    ]
    for extra, message in [
        (["--group-k", "6,x,4"], "--group-k must be comma-separated positive integers"),
        (["--groups", "4"], "--group-k has 8 budgets but --groups is 4"),
        (["--lr", "-1"], "--lr must be positive"),
        (
            ["--groups", "100", "--group-k", ",".join(["1"] * 100)],
            "--groups 100 exceeds the SAE's d_sae 64",
        ),
    ]:
        result = cli(*common, *extra, "--out", tmp_path / "bad")
        assert result.code == 2 and len(result.err.strip().splitlines()) == 1, result.err
        assert message in result.err, result.err
        assert not (tmp_path / "bad" / "cfg.json").exists()
    result = cli("train-loca", "--activations", acts, "--out", tmp_path / "bad")
    assert result.code == 2 and "--sae-path P, or --sae-release R --sae-id I" in result.err
    result = cli(
        *common,
        "--groups",
        "4",
        "--group-k",
        "3,2,2,1",
        "--n-tokens",
        "2048",
        "--out",
        tmp_path / "ok",
    )
    assert result.code == 0, result.err
    cfg = json.loads((tmp_path / "ok" / "cfg.json").read_text())
    assert (
        cfg["architecture"] == "loca"
        and cfg["group_k"] == [3, 2, 2, 1]
        and len(cfg["latent_groups"]) == 64
    )


def test_amortization_gap_runs_loca_beside_the_sae_and_as_the_sae(tmp_path, cli):
    x = planted_data()
    acts = write_activations(tmp_path / "a.safetensors", x)
    sae = random_topk(d_sae=64, k=8)
    sae.save_model(tmp_path / "topk")
    # budgets of Σ 9 beside the SAE's k 8: the default's Σ 26 would put more actives than d_in 16 on every
    # token, where each refit is a rank-deficient NNLS left to scipy token by token (tested in test_refit)
    loca = LocASAE.from_sae(sae, x, group_k=(2, 1, 1, 1, 1, 1, 1, 1))
    loca.save_model(tmp_path / "loca")
    # λ calibrated on 512 tokens (what is checked here does not depend on λ; calibration has its tests)
    common = ["run", "--eval", "amortization_gap", "--activations", acts, "--device", "cpu",
              "--calibration-tokens", "512"]  # fmt: skip
    result = cli(*common, "--sae-path", tmp_path / "topk", "--loca-path", tmp_path / "loca",
                 "--output-dir", tmp_path / "beside")  # fmt: skip
    assert result.code == 0, result.err
    rows = {
        row["mode"]: row
        for row in read_result(tmp_path / "beside", "amortization_gap")["eval_result_details"]
    }
    assert list(rows) == ["amortized", "semi:5", "semi:25", "non_amortized", "loca"]
    recon = loca.decode(loca.encode(x))
    nmse = ((recon - x).pow(2).sum() / (x - x.mean(0)).pow(2).sum()).item()
    assert rows["loca"]["nmse"] == pytest.approx(nmse, rel=1e-5)
    assert rows["loca"]["l0"] == pytest.approx(
        (loca.encode(x) > 0).sum(1).float().mean().item(), rel=1e-6
    )
    result = cli(*common, "--sae-path", tmp_path / "loca", "--output-dir", tmp_path / "as_sae")
    assert result.code == 0, result.err
    data = read_result(tmp_path / "as_sae", "amortization_gap")
    rows = {row["mode"]: row for row in data["eval_result_details"]}
    assert list(rows) == ["loca", "semi:5", "semi:25", "non_amortized"]
    gap = data["eval_result_metrics"]["amortization"]["mean_gap"]
    assert gap == pytest.approx(rows["loca"]["objective"] - rows["non_amortized"]["objective"])
    assert rows["non_amortized"]["objective"] <= rows["semi:25"]["objective"] * (1 + 1e-6)
    result = cli(*common, "--sae-path", tmp_path / "topk", "--loca-path", tmp_path / "nope",
                 "--output-dir", tmp_path / "bad")  # fmt: skip
    assert result.code == 2 and "--loca-path not found" in result.err


def test_encode_follows_weight_edits_made_any_way():
    """No stale copy of the encoder: .data writes and SAE-Lens's fold_* methods show in encode at once."""
    torch.manual_seed(0)
    loca = LocASAE(
        LocASAEConfig(
            d_in=16,
            d_sae=61,
            latent_groups=(torch.randperm(61) % 8).tolist(),
            group_k=list(PAPER_K),
        )
    )
    x = torch.randn(50, 16)
    with torch.no_grad():
        loca.encode(x)
        loca.W_enc.data.mul_(-1.5)
        loca.b_enc.data[:5] = 2.0
        torch.testing.assert_close(loca.encode(x), loca.encode_with_hidden_pre(x)[0])
        loca.fold_activation_norm_scaling_factor(3.0)
        torch.testing.assert_close(loca.encode(x), loca.encode_with_hidden_pre(x)[0])


def test_resume_refuses_other_settings_and_ignores_a_half_written_checkpoint(tmp_path):
    from sae_bench_amortization.errors import InputError

    x = planted_data()
    loca = LocASAE.from_sae(random_topk(d_sae=64, k=8), x)
    config = LocATrainingConfig(n_tokens=2048, batch_size=256, lr=3e-3, checkpoint_every=1024)
    train_loca(loca, _source(x), tmp_path / "out", config)
    (tmp_path / "out" / "checkpoints" / "tokens_9999.partial").mkdir()  # killed mid-write
    (
        tmp_path / "out" / "checkpoints" / "tokens_9999.partial" / "trainer_state.safetensors"
    ).write_bytes(b"")
    longer = LocATrainingConfig(**{**config.__dict__, "n_tokens": 3072})
    assert train_loca(None, _source(x), tmp_path / "out", longer) is not None
    other = LocATrainingConfig(**{**config.__dict__, "n_tokens": 4096, "batch_size": 128})
    with pytest.raises(InputError, match=r"--batch-size 256 \(now 128\)"):
        train_loca(None, _source(x), tmp_path / "out", other)


def test_a_loca_sae_with_loca_path_is_one_line(tmp_path, cli):
    x = planted_data()
    acts = write_activations(tmp_path / "a.safetensors", x)
    LocASAE.from_sae(random_topk(d_sae=64, k=8), x).save_model(tmp_path / "loca")
    result = cli("run", "--eval", "amortization_gap", "--sae-path", tmp_path / "loca", "--loca-path",
                 tmp_path / "loca", "--activations", acts, "--output-dir", tmp_path / "out")  # fmt: skip
    assert result.code == 2 and "is itself a LocA-SAE" in result.err, result.err
    assert not list((tmp_path / "out").rglob("*.json"))
