"""ISTARefinedSAE inside the ecosystem: SAE-Lens save/load, HookedSAETransformer, SAEBench core, the CLI."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import torch
from sae_lens import SAE, HookedSAETransformer
from sae_lens.saes.standard_sae import StandardSAE, StandardSAEConfig

from sae_bench_amortization.adapters import ISTARefinedSAE
from sae_bench_amortization.registry import discover_evals
from sae_bench_amortization.runner.loop import run_entry

from conftest import core_request, offline_hooked_transformer, read_result


def trained_like_sae(d_in: int = 32, d_sae: int = 128, seed: int = 0, **metadata) -> StandardSAE:
    torch.manual_seed(seed)
    cfg = StandardSAEConfig(d_in=d_in, d_sae=d_sae)
    for key, value in metadata.items():
        setattr(cfg.metadata, key, value)
    sae = StandardSAE(cfg)
    with torch.no_grad():
        sae.W_dec.copy_(torch.nn.functional.normalize(torch.randn(d_sae, d_in), dim=1))
        sae.W_enc.copy_(sae.W_dec.T)
        sae.b_enc.fill_(-0.5)
    return sae


def test_save_and_load_round_trip(tmp_path):
    sae = trained_like_sae()
    refined = ISTARefinedSAE.from_sae(sae, n_steps=7, l1_coefficient=0.05, method="ista")
    x = torch.randn(64, 32)
    refined.save_model(tmp_path / "refined")
    cfg = json.loads((tmp_path / "refined" / "cfg.json").read_text())
    assert cfg["architecture"] == "ista_refined" and cfg["base_cfg"]["architecture"] == "standard"
    assert (cfg["n_steps"], cfg["method"], cfg["l1_coefficient"]) == (7, "ista", 0.05)
    loaded = SAE.load_from_disk(tmp_path / "refined")
    assert isinstance(loaded, ISTARefinedSAE)
    assert torch.equal(loaded.base.W_enc, sae.W_enc) and torch.equal(loaded.W_dec, sae.W_dec)
    assert torch.equal(loaded.encode(x), refined.encode(x))


def test_registered_on_importing_the_package(tmp_path):
    ISTARefinedSAE.from_sae(trained_like_sae(), l1_coefficient=0.1).save_model(tmp_path / "s")
    code = (
        "import sys, sae_bench_amortization; from sae_lens import SAE; "
        "print(type(SAE.load_from_disk(sys.argv[1])).__name__)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "s")], capture_output=True, text=True
    )
    assert done.stdout.strip() == "ISTARefinedSAE", done.stderr


def test_hooked_sae_transformer_caches_refined_codes():
    base_model = offline_hooked_transformer()
    model = HookedSAETransformer(base_model.cfg, tokenizer=base_model.tokenizer)
    model.load_state_dict(base_model.state_dict(), strict=False)
    sae = trained_like_sae(hook_name="blocks.0.hook_resid_post")
    refined = ISTARefinedSAE.from_sae(sae, n_steps=10, l1_coefficient=0.05)
    tokens = model.to_tokens(["A short sentence about foxes."])
    _, cache = model.run_with_cache_with_saes(tokens, saes=[refined])
    codes = cache["blocks.0.hook_resid_post.hook_sae_acts_post"]
    _, plain = model.run_with_cache(tokens, names_filter="blocks.0.hook_resid_post")
    torch.testing.assert_close(codes, refined.encode(plain["blocks.0.hook_resid_post"]))
    assert not torch.equal(codes, sae.encode(plain["blocks.0.hook_resid_post"]))


def test_saebench_core_on_a_refined_sae(tmp_path, monkeypatch):
    """SAEBench's own core eval takes an ISTARefinedSAE; its L0 is near the calibrated target."""
    from transformer_lens import HookedTransformer

    model = offline_hooked_transformer(model_name="tiny")
    monkeypatch.setattr(HookedTransformer, "from_pretrained_no_processing", lambda *a, **k: model)
    sae = trained_like_sae(
        hook_name="blocks.0.hook_resid_post", model_name="tiny", context_size=32, prepend_bos=True
    )
    text = [f"Document {i} is about foxes, dogs and the number {i * 7}." for i in range(200)]
    tokens = model.to_tokens(text[:50], padding_side="right")[:, 1:]
    _, cache = model.run_with_cache(tokens, names_filter="blocks.0.hook_resid_post")
    calibration = cache["blocks.0.hook_resid_post"].reshape(-1, 32)
    target = 12.0
    refined = ISTARefinedSAE.from_sae(
        sae, n_steps=None, init="zero", target_l0=target, calibration_activations=calibration
    )
    (tmp_path / "t.txt").write_text("\n\n".join(text))
    request = core_request(refined, "refined", tmp_path / "t.txt", tmp_path / "out", (2, 4, 8))
    (outcome,) = run_entry(discover_evals()["core"], request)
    assert outcome.status == "written"
    metrics = json.loads(outcome.path.read_text())["eval_result_metrics"]
    l0 = metrics["sparsity"]["l0"]
    assert math.isfinite(metrics["reconstruction_quality"]["explained_variance"])
    assert abs(l0 - target) <= 0.25 * target, (
        l0
    )  # other tokens than calibration's, padding included


def test_cli_runs_every_mode_with_one_file_each(planted, tmp_path, cli):
    out = tmp_path / "out"
    result = cli.dead_dense(
        planted.path,
        planted.activations,
        "--output-dir",
        out,
        "--inference",
        "amortized",
        "--inference",
        "semi:3",
        "--inference",
        "non_amortized",
        "--l1-coefficient",
        "0.5",
    )
    assert result.code == 0, result.err
    names = sorted(p.name for p in (out / "dead_dense").glob("*_eval_results.json"))
    assert names == [
        f"local_planted_sae__{tag}_eval_results.json"
        for tag in ("amortized", "non_amortized", "semi-3")
    ]
    configs = {n: json.loads((out / "dead_dense" / n).read_text())["eval_config"] for n in names}
    assert (
        configs[names[2]]["inference_mode"] == "semi:3"
        and configs[names[2]]["l1_coefficient"] == 0.5
    )
    assert configs[names[0]]["l1_coefficient"] is None
    for name in names:
        metrics = json.loads((out / "dead_dense" / name).read_text())["eval_result_metrics"][
            "pathologies"
        ]
        assert metrics["n_tokens"] == 1000
    assert (out / "dead_dense" / "local_planted_sae__semi-3_feature_frequency.safetensors").exists()


def test_cli_calibrates_lambda_when_not_given(tmp_path, cli):
    sae = trained_like_sae(d_in=16, d_sae=64)
    sae.save_model(tmp_path / "s")
    from conftest import write_activations

    write_activations(tmp_path / "a.safetensors", torch.randn(2000, 16))
    result = cli.dead_dense(
        tmp_path / "s",
        tmp_path / "a.safetensors",
        "--output-dir",
        tmp_path / "out",
        "--inference",
        "non_amortized",
        "--calibration-tokens",
        "1000",
    )
    assert result.code == 0, result.err
    data = read_result(tmp_path / "out", "dead_dense")
    calibration = data["eval_config"]["lambda_calibration"]
    assert data["eval_config"]["l1_coefficient"] == calibration["l1_coefficient"] > 0
    assert calibration["n_tokens"] == 1000
    assert (
        abs(calibration["achieved_l0"] - calibration["target_l0"])
        <= 0.02 * calibration["target_l0"]
    )


def test_bad_modes_and_lambda(planted, tmp_path, cli):
    for flags, message in (
        (("--inference", "semi:-1"), "non-negative integer"),
        (("--inference", "semi:abc"), "non-negative integer"),
        (("--inference", "non_amortised"), "did you mean: non_amortized"),
        (("--inference", "amortized", "--l1-coefficient", "-1"), "--l1-coefficient"),
        (("--inference", "amortized", "--l1-coefficient", "nan"), "--l1-coefficient"),
    ):
        result = cli.dead_dense(
            planted.path, planted.activations, "--output-dir", tmp_path / "o", *flags
        )
        assert result.code == 2 and len(result.err.strip().splitlines()) == 1, (flags, result.err)
        assert message in result.err, (flags, result.err)
    assert not (tmp_path / "o").exists()
