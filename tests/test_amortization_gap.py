"""amortization_gap: mode ordering, the gap against an independent sklearn computation, files, MiniLM path."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
from sae_lens import SAE
from sklearn.decomposition import sparse_encode

from conftest import read_result


def test_modes_are_ordered_and_the_gap_is_positive(trained_topk, tmp_path, cli):
    acts, sae_path = trained_topk  # built once (conftest)
    result = cli(
        "run",
        "--eval",
        "amortization_gap",
        "--sae-path",
        sae_path,
        "--activations",
        acts,
        "--output-dir",
        tmp_path / "out",
        "--calibration-tokens",
        "2000",
        "--objective",
        "l1",  # the paper's problem: one λ calibrated to the encoder's L0
    )
    assert result.code == 0, result.err
    assert "non_amortized" in result.out and "NMSE" in result.out  # the table is printed
    data = read_result(tmp_path / "out", "amortization_gap")
    rows = {row["mode"]: row for row in data["eval_result_details"]}
    assert list(rows) == ["amortized", "semi:5", "semi:25", "non_amortized"]
    slack = 1e-6
    objective = [rows[m]["objective"] for m in ("non_amortized", "semi:25", "semi:5", "amortized")]
    assert all(a <= b * (1 + slack) for a, b in zip(objective, objective[1:], strict=False)), (
        objective
    )
    metrics = data["eval_result_metrics"]["amortization"]
    assert metrics["mean_gap"] == pytest.approx(
        rows["amortized"]["objective"] - rows["non_amortized"]["objective"]
    )
    assert metrics["mean_gap"] > 0
    assert all(
        row["delta_f1"] is not None for row in rows.values()
    )  # synthetic tokens carry concepts
    assert all(0 <= row["absorption_rate"] <= 1 for row in rows.values())
    calibration = data["eval_config"]["lambda_calibration"]
    assert calibration["target_l0"] == pytest.approx(4.0)  # the TopK encoder's own L0 (k = 4)
    assert abs(calibration["achieved_l0"] - 4.0) <= 0.02 * 4.0
    # the CSV beside the JSON has the same rows
    path = tmp_path / "out" / "amortization_gap" / "local_topk_amortization_gap.csv"
    with path.open() as handle:
        table = list(csv.DictReader(handle))
    assert [r["mode"] for r in table] == list(rows)
    assert float(table[0]["nmse"]) == pytest.approx(rows["amortized"]["nmse"])


def test_gap_and_nmse_match_an_independent_computation(trained_topk, tmp_path, cli):
    """sklearn's lasso_cd gives the non-amortized optimum, numpy the amortized objective and NMSE."""
    acts, sae_path = trained_topk  # built once (conftest)
    lam = 0.05
    result = cli(
        "run",
        "--eval",
        "amortization_gap",
        "--sae-path",
        sae_path,
        "--activations",
        acts,
        "--n-tokens",
        "1500",
        "--l1-coefficient",
        str(lam),
        "--objective",
        "l1",
        "--output-dir",
        tmp_path / "out",
    )
    assert result.code == 0, result.err
    data = read_result(tmp_path / "out", "amortization_gap")
    sae = SAE.load_from_disk(sae_path)
    from safetensors.torch import load_file

    x = load_file(acts)["activations"][:1500].double()
    with torch.no_grad():
        z_amortized = sae.encode(x.float()).double()
        reconstruction = sae.decode(z_amortized.float()).double()
    W_dec = sae.W_dec.detach().double()
    if sae.cfg.rescale_acts_by_decoder_norm:
        W_dec = W_dec / W_dec.norm(dim=-1, keepdim=True)
    r = (x - sae.b_dec.detach().double()).numpy()
    D = W_dec.numpy()

    def objective(z):
        return 0.5 * ((r - z @ D) ** 2).sum(1) + lam * z.sum(1)

    z_optimal = sparse_encode(r, D, algorithm="lasso_cd", alpha=lam, positive=True, max_iter=10_000)
    expected_gap = float(np.mean(objective(z_amortized.numpy()) - objective(z_optimal)))
    assert data["eval_result_metrics"]["amortization"]["mean_gap"] == pytest.approx(
        expected_gap, rel=1e-3
    )
    nmse = float(((x - reconstruction) ** 2).sum() / ((x - x.mean(0)) ** 2).sum())
    rows = {row["mode"]: row for row in data["eval_result_details"]}
    assert rows["amortized"]["nmse"] == pytest.approx(nmse, rel=1e-6)
    assert (
        data["eval_config"]["l1_coefficient"] == lam
        and data["eval_config"]["lambda_calibration"] is None
    )


def test_amortization_gap_on_the_offline_minilm_path(tmp_path, cli):
    from sae_lens.saes.topk_sae import TopKSAE, TopKSAEConfig

    torch.manual_seed(0)
    TopKSAE(TopKSAEConfig(d_in=384, d_sae=768, k=8)).save_model(tmp_path / "minilm_topk")
    result = cli(
        "run",
        "--eval",
        "amortization_gap",
        "--sae-path",
        tmp_path / "minilm_topk",
        "--hf-model",
        "all-MiniLM-L6-v2",
        "--hf-module",
        "encoder.layer.3",
        "--n-tokens",
        "600",
        "--calibration-tokens",
        "300",
        "--inference",
        "amortized",
        "--inference",
        "semi:3",
        "--output-dir",
        tmp_path / "out",
        "--device",
        "cpu",
    )
    assert result.code == 0, result.err
    data = read_result(tmp_path / "out", "amortization_gap")
    assert [row["mode"] for row in data["eval_result_details"]] == [
        "amortized",
        "semi:3",
        "non_amortized",
    ]
    assert data["eval_result_metrics"]["amortization"]["mean_gap"] > 0
    assert json.dumps(data["eval_config"]).count("encoder.layer.3") == 1


def test_absorption_per_mode_equals_the_absorption_rate_eval_on_the_same_codes(
    world_absorbed_results,
):
    """Absorption is compared across modes on the concepts where every mode defines it. The full rate
    (share of the concept's tokens) is defined on every probed concept in every mode, so the amortized
    row's equals the absorption_rate eval's on the same codes, over the same number of concepts. The
    conditional rate (share of the main latents' misses) is 0/0 wherever a mode's main latents never
    miss: here the encoder misses on concepts where exact coding never does, so no concept is common,
    and both rows say so (null, with each mode's count), instead of showing means over different sets."""
    # synth --n-tokens 20000 --reference-saes, then sba.run of absorption_rate and amortization_gap
    # (max_concepts=10**6, inference and gap modes amortized) on the absorbed SAE: built once (conftest)
    out = world_absorbed_results
    single_result = read_result(out, "absorption_rate")
    single = single_result["eval_result_metrics"]["absorption"]
    per_concept = single_result["eval_result_details"]
    rows = read_result(out, "amortization_gap")["eval_result_details"]
    amortized = next(row for row in rows if row["mode"] == "amortized")
    non_amortized = next(row for row in rows if row["mode"] == "non_amortized")
    assert single["full_absorption_rate"] > 0
    n_full = sum(row["full_absorption_rate"] is not None for row in per_concept)
    assert amortized["n_concepts_full_absorption"] == non_amortized["n_concepts_full_absorption"]
    assert amortized["n_concepts_full_absorption"] == n_full > 0
    assert amortized["full_absorption_rate"] == pytest.approx(single["full_absorption_rate"])
    assert 0 <= non_amortized["full_absorption_rate"] <= 1
    # the conditional rate: the same (empty) concept set in both rows, null with the reason
    assert single["n_concepts"] > 0 and single["absorption_rate"] is not None
    assert amortized["n_concepts_absorption"] == non_amortized["n_concepts_absorption"] == 0
    for row in (amortized, non_amortized):
        assert row["absorption_rate"] is None
        reason = row["undefined"]["absorption_rate"]
        assert "in every mode" in reason and f"amortized {single['n_concepts']}" in reason


def test_every_mode_row_counts_the_same_concepts(world_oracle_results):
    """amortization_gap's concept-averaged metrics are paired across its modes: each n_concepts_* count
    is the same in every mode row (the oracle on the synthetic world, default modes)."""
    rows = read_result(world_oracle_results, "amortization_gap")["eval_result_details"]
    assert [row["mode"] for row in rows] == ["amortized", "semi:5", "semi:25", "non_amortized"]
    for key in ("n_concepts_delta_f1", "n_concepts_absorption", "n_concepts_full_absorption"):
        assert len({row[key] for row in rows}) == 1, (key, [row[key] for row in rows])
    assert rows[0]["n_concepts_full_absorption"] > 0 and rows[0]["n_concepts_delta_f1"] > 0


def test_each_mode_row_keeps_the_per_concept_evidence_of_its_means(world_oracle_results):
    """Each row's ``concepts`` re-derive its concept-averaged metrics: over the concepts where every mode
    defines a metric, the mean of the per-concept values is the row's value, with that count."""
    rows = read_result(world_oracle_results, "amortization_gap")["eval_result_details"]
    for key, count in (
        ("delta_f1", "n_concepts_delta_f1"),
        ("full_absorption_rate", "n_concepts_full_absorption"),
        ("absorption_rate", "n_concepts_absorption"),
    ):
        defined = [
            {c["concept"] for c in row["concepts"] if c.get(key) is not None} for row in rows
        ]
        common = set.intersection(*defined)
        for row in rows:
            assert row[count] == len(common), (key, row["mode"])
            values = [c[key] for c in row["concepts"] if c["concept"] in common]
            if common:
                assert row[key] == pytest.approx(sum(values) / len(values)), (key, row["mode"])
            else:
                assert row[key] is None
    concept = rows[0]["concepts"][0]
    assert {"main_latents", "absorbing_latents", "n_probe_fires", "top_latents"} <= set(concept)
