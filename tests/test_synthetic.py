"""The ground-truth benchmark: generator, reference SAEs with planted pathologies, trainer, oracle recovery."""

from __future__ import annotations

import json

import pytest
import torch
from sae_lens import SAE

from sae_bench_amortization.activations.file import ActivationFile
from sae_bench_amortization.inference.calibration import calibrate_lambda
from sae_bench_amortization.inference.dictionary import (
    Dictionary,
    dictionary_of,
    sparse_coding_targets,
)
from sae_bench_amortization.inference.solver import objective, solve
from sae_bench_amortization.synthetic.generator import (
    SyntheticConfig,
    ground_truth,
    load_truth,
    stream,
)
from sae_bench_amortization.synthetic.reference_saes import reference_saes

from conftest import TRAINED_D_SAE, read_result

CONFIG = SyntheticConfig()


@pytest.fixture(scope="module")
def truth():
    return ground_truth(CONFIG)


@pytest.fixture(scope="module")
def tokens(truth):
    (batch,) = list(stream(truth, 8000, 8000))
    return batch


def test_stream_is_deterministic_and_chunking_free(truth):
    whole = torch.cat([b.acts for b in stream(truth, 9000, 9000)])
    pieces = torch.cat([b.acts for b in stream(truth, 9000, 777)])
    later = torch.cat([b.acts for b in stream(truth, 4000, 1000, start=5000)])
    assert torch.equal(whole, pieces) and torch.equal(whole[5000:], later)
    assert not torch.equal(
        whole, torch.cat([b.acts for b in stream(ground_truth(SyntheticConfig(seed=1)), 9000)])
    )


def test_planted_structure(truth, tokens):
    F = CONFIG.n_features
    assert truth.dictionary.shape == (F, CONFIG.d_in) and CONFIG.d_in < F  # superposition
    torch.testing.assert_close(truth.dictionary.norm(dim=1), torch.ones(F))
    fires = tokens.concepts[:, :F]
    for parent, child in truth.hierarchies:  # child ⇒ parent, and the parent also fires alone
        assert fires[:, child].any() and bool((fires[:, parent] | ~fires[:, child]).all())
        assert bool((fires[:, parent] & ~fires[:, child]).any())
    for j, feature in enumerate(truth.composites):  # sub-context 1 labels a subset of the concept
        context_one = tokens.concepts[:, F + j]
        assert bool((fires[:, feature] | ~context_one).all())
        assert 0.3 < context_one.sum() / fires[:, feature].sum() < 0.7
    frequency = fires.float().mean(0)
    assert frequency.max() < 0.1 and frequency.min() > 0  # long tail, none dense, none absent
    assert frequency.max() / frequency.min() > 5
    # x = codes·D + contexts + noise: removing the planted part leaves only small noise
    assert float(tokens.acts.norm(dim=1).mean()) > 0.5


def test_synth_cli_writes_file_and_truth(tmp_path, cli):
    out = tmp_path / "synth.safetensors"
    result = cli("synth", "--out", out, "--n-tokens", "5000", "--seed", "3")
    assert result.code == 0, result.err
    file = ActivationFile(out)
    assert (file.n_tokens, file.d_in) == (5000, 128)
    assert len(file.concept_names) == 256 + 2 and file.concept_names[-1] == "composite_1_context_1"
    loaded = load_truth(f"{out}.truth.safetensors")
    expected = ground_truth(SyntheticConfig(seed=3))
    assert torch.equal(loaded.dictionary, expected.dictionary)
    assert loaded.hierarchies == expected.hierarchies and loaded.composites == expected.composites
    first = next(file.iter_batches(5000))
    (direct,) = list(stream(expected, 5000, 5000))
    assert torch.equal(first.acts, direct.acts) and torch.equal(first.concepts, direct.concepts)


def test_reference_saes_have_their_planted_dead_and_dense_rates(world, tmp_path, cli):
    acts = world.acts  # synth --n-tokens 20000 --reference-saes, built once (conftest)
    for name in ("oracle", "dead", "dense", "split", "absorbed"):
        folder = world.refs / name
        expected = json.loads((folder / "expected_metrics.json").read_text())
        out = tmp_path / f"out_{name}"
        assert cli.dead_dense(folder, acts, "--output-dir", out).code == 0
        metrics = read_result(out, "dead_dense")["eval_result_metrics"]["pathologies"]
        assert metrics["dead_rate"] == expected["dead_rate"], name
        assert metrics["dense_rate"] == expected["dense_rate"], name
    assert (
        json.loads((world.refs / "dead/expected_metrics.json").read_text())["dead_rate"] == 16 / 272
    )
    assert (
        json.loads((world.refs / "dense/expected_metrics.json").read_text())["dense_rate"]
        == 8 / 264
    )


def test_absorbed_and_split_references_behave_as_planted(truth, tokens):
    saes = reference_saes(truth)
    F = CONFIG.n_features
    absorbed, facts = saes["absorbed"]
    codes = absorbed.encode(tokens.acts)
    child_on = tokens.concepts[:, facts["absorbing_latent"]]
    assert bool(
        (codes[child_on, facts["parent_latent"]] == 0).all()
    )  # parent silent when the child fires
    assert float((codes[child_on, facts["absorbing_latent"]] > 0).float().mean()) > 0.9
    parent_direction = truth.dictionary[facts["parent_latent"]]
    assert float(absorbed.W_dec[facts["absorbing_latent"]] @ parent_direction) > 0.6
    split, facts = saes["split"]
    codes = split.encode(tokens.acts)
    context_one = tokens.concepts[:, F]
    concept = tokens.concepts[:, truth.composites[0]]
    first, second = facts["split_latents"]
    assert float((codes[context_one, first] > 0).float().mean()) > 0.9
    assert float((codes[concept & ~context_one, second] > 0).float().mean()) > 0.9
    assert float((codes[concept & ~context_one, first] > 0).float().mean()) < 0.1


def support_f1(predicted: torch.Tensor, actual: torch.Tensor) -> float:
    tp = int((predicted & actual).sum())
    return 2 * tp / (2 * tp + int((predicted & ~actual).sum()) + int((~predicted & actual).sum()))


def test_non_amortized_codes_of_the_oracle_recover_the_true_support(truth, tokens):
    z = solve(Dictionary(truth.dictionary, torch.zeros(CONFIG.d_in)), tokens.acts, 0.2)
    assert support_f1(z > 0, tokens.concepts[:, : CONFIG.n_features]) >= 0.9


def test_trained_topk_sae_has_a_positive_amortization_gap(trained_topk):
    # saebench synth, then saebench train of a TopK SAE on it (exit 0 checked there): built once
    acts, sae_path = trained_topk
    sae = SAE.load_from_disk(sae_path)
    assert sae.cfg.architecture() == "topk" and sae.cfg.d_sae == TRAINED_D_SAE
    with torch.no_grad():
        x = next(ActivationFile(acts).iter_batches(4000)).acts  # the world it was trained on
        r = sparse_coding_targets(sae, x)
        dictionary = dictionary_of(sae)
        amortized = sae.encode(x)
        lam = calibrate_lambda(
            dictionary, r, float((amortized > 0).sum(-1).double().mean())
        ).l1_coefficient
        gap = objective(dictionary.D, r, amortized, lam) - objective(
            dictionary.D, r, solve(dictionary, r, lam), lam
        )
    assert float(gap.mean()) > 0
    assert float(gap.min()) > -1e-4 * float(
        gap.abs().max()
    )  # the optimum is never worse, token by token


def test_train_cli_bad_input(tmp_path, cli):
    acts = tmp_path / "a.safetensors"
    assert cli("synth", "--out", acts, "--n-tokens", "1000").code == 0
    base = (
        "train",
        "--activations",
        acts,
        "--d-sae",
        "32",
        "--n-tokens",
        "100",
        "--out",
        tmp_path / "s",
    )
    result = cli(*base, "--architecture", "topk")
    assert result.code == 2 and "--k" in result.err and len(result.err.strip().splitlines()) == 1
    result = cli(*base, "--architecture", "gated")
    assert result.code == 2 and "invalid choice" in result.err
    result = cli("synth", "--n-tokens", "10")
    assert result.code == 2 and "--out FILE, --reference-saes DIR" in result.err
    assert not (tmp_path / "s").exists()


def test_splitting_is_high_on_the_split_concept_only(world, world_oracle_results, tmp_path, cli):
    acts = world.acts  # synth --n-tokens 20000 --reference-saes, and the oracle's run: built once
    assert (
        cli(
            "run",
            "--eval",
            "splitting",
            "--sae-path",
            world.refs / "split",
            "--activations",
            acts,
            "--output-dir",
            tmp_path / "split",
        ).code
        == 0
    )
    results = {
        name: {r["concept"]: r for r in read_result(out, "splitting")["eval_result_details"]}
        for name, out in (("oracle", world_oracle_results), ("split", tmp_path / "split"))
    }
    split_concept = json.loads((world.refs / "split/expected_metrics.json").read_text())[
        "split_concept"
    ]
    split = results["split"]
    clean = [  # the concepts that could be probed (the others are null, each with its reason)
        row["delta_f1"]
        for concept, row in split.items()
        if concept != split_concept and row["delta_f1"] is not None
    ]
    assert split[split_concept]["delta_f1"] > 0.1
    assert split[split_concept]["delta_f1"] > 3 * max(clean)  # clearly above every clean concept
    from safetensors import safe_open

    with safe_open(str(acts), "pt") as handle:  # ΔF1's positives, counted in the file
        names = json.loads(handle.metadata()["concept_names"])
        positives = int(handle.get_tensor("concepts")[:, names.index(split_concept)].sum())
    assert positives <= 2000 and split[split_concept]["n_positives"] == positives
    assert split[split_concept]["n_negatives"] > 0
    assert abs(results["oracle"][split_concept]["delta_f1"]) < 0.05
    assert set(split[split_concept]["top_latents"]) == {
        255,
        256,
    }  # the two planted sub-context latents


def test_concept_evals_without_concepts_say_so(tmp_path, cli):
    from conftest import planted_standard_sae

    planted = planted_standard_sae(tmp_path)
    result = cli(
        "run",
        "--eval",
        "splitting",
        "--sae-path",
        planted.path,
        "--activations",
        planted.activations,
        "--output-dir",
        tmp_path / "out",
    )
    assert (
        result.code == 2
        and "needs concept labels" in result.err
        and len(result.err.strip().splitlines()) == 1
    )


def test_absorption_is_high_on_the_absorbed_concept_and_near_zero_for_the_oracle(
    world, world_oracle_results, world_absorbed_results
):
    acts = world.acts  # synth --n-tokens 20000 --reference-saes, and both SAEs' runs: built once
    facts = json.loads((world.refs / "absorbed/expected_metrics.json").read_text())
    results = {}
    for name, out in (("oracle", world_oracle_results), ("absorbed", world_absorbed_results)):
        data = read_result(out, "absorption_rate")
        results[name] = ({r["concept"]: r for r in data["eval_result_details"]}, data)
    absorbed_rows, absorbed_data = results["absorbed"]
    oracle_rows, oracle_data = results["oracle"]
    concept = facts["absorbed_concept"]
    assert absorbed_rows[concept]["absorption_rate"] > 0.3
    assert absorbed_rows[concept]["full_absorption_rate"] > 0.01
    assert absorbed_rows[concept]["absorbing_latents"] == [facts["absorbing_latent"]]
    assert absorbed_rows[concept]["main_latents"] == [facts["parent_latent"]]
    # the oracle absorbs nothing: its main latent never misses the parent (0/0: null with the reason)
    oracle_row = oracle_rows[concept]
    assert oracle_row["n_absorbed"] == 0 and oracle_row["full_absorption_rate"] == 0.0
    assert oracle_row["n_main_silent"] == 0 and oracle_row["absorption_rate"] is None
    assert "never miss" in oracle_row["reason"]
    assert oracle_data["eval_result_metrics"]["absorption"]["absorption_rate"] < 0.01
    assert absorbed_data["eval_config"]["cosine_threshold"] == 0.3
    # the denominators: counted independently in the file, and the rates are their ratios
    from safetensors import safe_open

    with safe_open(str(acts), "pt") as handle:
        names = json.loads(handle.metadata()["concept_names"])
        positives = int(handle.get_tensor("concepts")[:, names.index(concept)].sum())
    row = absorbed_rows[concept]
    assert positives <= 2000  # every positive is in the sample (the cap is 2,000 per concept)
    assert row["n_concept_tokens"] == positives
    assert row["n_probe_fires"] == row["n_tokens"] <= positives
    assert row["absorption_rate"] == pytest.approx(row["n_absorbed"] / row["n_main_silent"])
    assert row["full_absorption_rate"] == pytest.approx(row["n_absorbed"] / row["n_probe_fires"])
