"""--protocol paper: every metric against a numpy/sklearn computation of the paper's definitions on the
same codes; semi:T as T hand-written ISTA steps; per-mode λ calibration; no mixing of protocols."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from sae_lens import SAE
from sae_lens.saes.topk_sae import TopKSAE, TopKSAEConfig
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score

from conftest import read_result, write_activations


def paper_reference(x: np.ndarray, x_hat: np.ndarray, z: np.ndarray) -> dict:
    """The paper's definitions, written out densely in numpy / sklearn."""
    zp = np.maximum(z, 0.0)
    nmse = np.mean(np.sum((x - x_hat) ** 2, 1)) / (np.mean(np.sum(x**2, 1)) + 1e-9)
    frequency = (zp > 0).mean(0)
    norms = np.linalg.norm(x, axis=1)
    y = (norms > np.median(norms)).astype(float)
    s = (zp - zp.mean(0)) / (zp.std(0) + 1e-6)
    corr = np.mean(s * (y - y.mean())[:, None], 0) / (s.std(0) * (y.std() + 1e-6) + 1e-6)
    order = sorted(range(z.shape[1]), key=lambda j: (-abs(corr[j]), j))
    f1 = {}
    for k in (1, 2):
        features = s[:, order[:k]]
        probe = LogisticRegression(class_weight="balanced", solver="liblinear", max_iter=1000)
        probe.fit(features, y)
        f1[k] = f1_score(y, probe.predict(features))
    main, aux = zp[:, order[0]], zp[:, order[1:6]]
    absorbed = (main == 0) & (aux > 0).any(1)
    return {
        "nmse": nmse,
        "dead_rate": float((frequency <= 1e-6).mean()),
        "dense_rate": float((frequency >= 0.1).mean()),
        "dense_rate_0_2": float((frequency >= 0.2).mean()),
        "f1_at_1": f1[1],
        "f1_at_2": f1[2],
        "delta_f1": f1[2] - f1[1],
        "absorption_rate": float(absorbed[y == 1].mean()),
    }


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    """A TopK SAE (d_in 16, d_sae 48, k 4) and activations that are sparse sums of its decoder rows."""
    folder = tmp_path_factory.mktemp("paper")
    torch.manual_seed(0)
    sae = TopKSAE(TopKSAEConfig(d_in=16, d_sae=48, k=4))
    with torch.no_grad():
        sae.W_dec.copy_(torch.nn.functional.normalize(torch.randn(48, 16), dim=1))
        sae.W_enc.copy_(0.9 * sae.W_dec.T)
        sae.b_enc.zero_()
        sae.b_dec.zero_()
        sae.W_dec[40:] *= 0.0  # some latents that cannot help: dead or dense pathologies possible
    codes = (torch.rand(3000, 48) < 0.06) * (0.5 + torch.rand(3000, 48))
    acts = codes @ sae.W_dec + 0.05 * torch.randn(3000, 16)
    sae.save_model(folder / "sae")
    write_activations(folder / "acts.safetensors", acts)
    return folder / "sae", folder / "acts.safetensors", acts


def test_accumulator_equals_the_definitions():
    from sae_bench_amortization.metrics.paper import PaperProtocolAccumulator

    generator = torch.Generator().manual_seed(1)
    x = torch.randn(700, 12, generator=generator)
    z = torch.relu(torch.randn(700, 30, generator=generator) - 1.0)  # sparse, some dead columns
    z[:, 5] = 0.0
    z[:, 7] = 1.0 + torch.rand(700, generator=generator)  # always on
    z[:, 11] = torch.where(x.norm(dim=1) > x.norm(dim=1).median(), 2.0, 0.0)  # tracks the label
    x_hat = x + 0.3 * torch.randn(700, 12, generator=generator)
    accumulator = PaperProtocolAccumulator(30)
    for start in range(0, 700, 97):
        accumulator.update(x[start : start + 97], x_hat[start : start + 97], z[start : start + 97])
    got = accumulator.metrics()
    expected = paper_reference(x.double().numpy(), x_hat.double().numpy(), z.double().numpy())
    for key in ("nmse", "dead_rate", "dense_rate", "dense_rate_0_2", "absorption_rate"):
        assert got[key] == pytest.approx(expected[key], rel=1e-6, abs=1e-9), key
    for key in ("f1_at_1", "f1_at_2", "delta_f1"):
        assert abs(got[key] - expected[key]) <= 0.01, key
    assert got["f1_at_1"] > 0.9  # latent 11 is the label


def test_the_cap_of_50000_tokens():
    from sae_bench_amortization.metrics.paper import PaperProtocolAccumulator

    accumulator = PaperProtocolAccumulator(4, max_tokens=100)
    for _ in range(3):
        accumulator.update(torch.ones(60, 2), torch.zeros(60, 2), torch.ones(60, 4))
    assert accumulator.n_tokens == 100


def test_amortization_gap_rows_under_the_paper_protocol(planted, tmp_path, cli):
    sae_path, acts_path, acts = planted
    result = cli(
        "run", "--eval", "amortization_gap", "--protocol", "paper", "--sae-path", sae_path,
        "--activations", acts_path, "--output-dir", tmp_path / "out", "--calibration-tokens", "2000",
    )  # fmt: skip
    assert result.code == 0, result.err
    data = read_result(tmp_path / "out", "amortization_gap")
    config = data["eval_config"]
    assert config["protocol"] == "paper" and config["lambda_scope"] == "per_mode"
    assert config["modes"] == ["amortized", "semi:5", "semi:30", "semi:50", "non_amortized"]
    assert set(config["definitions"]) >= {"nmse", "dead_rate", "pseudo_label", "absorption_rate"}
    rows = {row["mode"]: row for row in data["eval_result_details"]}
    sae = SAE.load_from_disk(sae_path)
    with torch.no_grad():  # the amortized row, recomputed from the encoder's codes
        z = sae.encode(acts)
        expected = paper_reference(acts.double().numpy(), sae.decode(z).double().numpy(), z.numpy())
    for key in ("nmse", "dead_rate", "dense_rate", "dense_rate_0_2", "absorption_rate"):
        assert rows["amortized"][key] == pytest.approx(expected[key], rel=1e-5, abs=1e-9), key
    for key in ("f1_at_1", "f1_at_2", "delta_f1"):
        assert abs(rows["amortized"][key] - expected[key]) <= 0.01, key
    # each semi mode has its own λ; the gap and every objective stay at the shared λ
    shared = data["eval_result_metrics"]["amortization"]["l1_coefficient"]
    assert rows["non_amortized"]["l1_coefficient"] == shared
    assert len({rows[m]["l1_coefficient"] for m in ("semi:5", "semi:30", "semi:50")}) == 3
    assert rows["amortized"]["l1_coefficient"] is None
    gap = data["eval_result_metrics"]["amortization"]
    assert gap["mean_gap"] == pytest.approx(
        rows["amortized"]["objective"] - rows["non_amortized"]["objective"]
    )
    assert gap["median_gap"] is not None and gap["median_gap"] >= 0


def test_semi_is_t_hand_written_ista_steps(planted):
    from sae_bench_amortization.adapters import ISTARefinedSAE

    sae_path, _, acts = planted
    sae = SAE.load_from_disk(sae_path)
    with torch.no_grad():
        sae.b_dec.copy_(0.1 * torch.randn(16))
        lam, steps = 0.07, 7
        refined = ISTARefinedSAE.from_sae(sae, n_steps=steps, init="encoder", l1_coefficient=lam)
        x = acts[:200].double()
        D, b = sae.W_dec.double(), sae.b_dec.double()
        alpha = 1.0 / torch.linalg.matrix_norm(D, ord=2).item() ** 2
        z = sae.encode(acts[:200]).double()
        for _ in range(steps):  # z ← max(z − α(Dᵀ(Dz − x) + λ), 0), rows as tokens
            z = torch.clamp(z - alpha * ((z @ D + b - x) @ D.T + lam), min=0)
        torch.testing.assert_close(refined.encode(acts[:200]).double(), z, rtol=1e-4, atol=1e-5)
    assert refined.cfg.method == "ista"


def test_per_mode_calibration_matches_each_semi_mode_to_the_encoder(planted):
    from sae_bench_amortization.inference.dictionary import dictionary_of, sparse_coding_targets
    from sae_bench_amortization.inference.solver import ista
    from sae_bench_amortization.modes.semi import calibrate_semi_l1_coefficient

    sae_path, _, acts = planted
    sae = SAE.load_from_disk(sae_path)
    x = acts[:2000]
    with torch.no_grad():
        start = sae.encode(x)
        target = (start > 0).sum(-1).double().mean().item()
        for steps in (5, 30, 50):
            calibration = calibrate_semi_l1_coefficient(sae, x, steps)
            codes = ista(
                dictionary_of(sae), sparse_coding_targets(sae, x), calibration.l1_coefficient,
                start, steps, method="ista",
            )  # fmt: skip
            l0 = (codes > 0).sum(-1).double().mean().item()  # re-measured here
            assert abs(l0 - target) <= 0.02 * target, (steps, l0, target)
            assert calibration.mode == f"semi:{steps}"


def test_results_of_two_protocols_do_not_meet(planted, tmp_path, cli):
    sae_path, acts_path, _ = planted
    common = ("--sae-path", sae_path, "--activations", acts_path, "--l1-coefficient", "0.05",
              "--objective", "l1")  # fmt: skip
    for protocol in ("default", "paper"):
        out = tmp_path / protocol
        assert cli("run", "--eval", "amortization_gap", "--protocol", protocol, "--inference",
                   "semi:5", *common, "--output-dir", out).code == 0  # fmt: skip
    baseline = tmp_path / "baseline.json"
    assert cli("regress", "--results", tmp_path / "default", "--write-baseline", baseline).code == 0
    assert json.loads(baseline.read_text())["protocols"] == {
        "local_sae": {"amortization_gap": "default"}
    }
    mixed = cli("regress", "--results", tmp_path / "paper", "--baseline", baseline)
    assert mixed.code == 2 and "--protocol paper" in mixed.err and len(mixed.err.splitlines()) == 1
    same = cli("regress", "--results", tmp_path / "default", "--baseline", baseline)
    assert same.code == 0, same.out
    # one compare table over results of both protocols
    for protocol in ("default", "paper"):
        assert cli("run", "--eval", "amortization_gap", "--protocol", protocol, "--inference", "semi:5",
                   *common, "--sae-name", f"sae_{protocol}", "--output-dir", tmp_path / "both").code == 0  # fmt: skip
    compare = cli("compare", tmp_path / "both", "--out", tmp_path / "summary")
    assert compare.code == 2 and "mixes metric protocols" in compare.err
    assert not (tmp_path / "summary").exists()


def test_per_mode_lambda_reaches_every_per_mode_eval(planted, tmp_path, cli):
    """--lambda-calibration per_mode is a run setting: dead_dense's semi result records its own λ."""
    sae_path, acts_path, _ = planted
    result = cli(
        "run", "--eval", "dead_dense", "--inference", "semi:5", "--inference", "non_amortized",
        "--lambda-calibration", "per_mode", "--sae-path", sae_path, "--activations", acts_path,
        "--output-dir", tmp_path, "--calibration-tokens", "2000", "--objective", "l1",
    )  # fmt: skip
    assert result.code == 0, result.err
    semi = json.loads((tmp_path / "dead_dense/local_sae__semi-5_eval_results.json").read_text())
    exact = json.loads(
        (tmp_path / "dead_dense/local_sae__non_amortized_eval_results.json").read_text()
    )
    assert semi["eval_config"]["lambda_calibration"]["mode"] == "semi:5"
    assert exact["eval_config"]["lambda_calibration"]["mode"] == "non_amortized"
    assert semi["eval_config"]["l1_coefficient"] != exact["eval_config"]["l1_coefficient"]
    assert (
        semi["eval_config"]["l1_coefficient"]
        == semi["eval_config"]["lambda_calibration"]["l1_coefficient"]
    )
