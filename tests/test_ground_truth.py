"""The ground-truth benchmark on SAE-Lens's synthetic toolkit: the world comes from ``sae_lens.synthetic``,
configs and saved models go through ``saebench synth``, and every eval on a synthetic source reports
SAE-Lens's ground-truth metrics for the codes of each mode."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from sae_lens.saes.standard_sae import StandardSAE, StandardSAEConfig
from sae_lens.synthetic import (
    HierarchyConfig,
    SyntheticModel,
    SyntheticModelConfig,
    ZipfianFiringProbabilityConfig,
)
from sklearn.metrics import accuracy_score, f1_score, precision_score, recall_score

from sae_bench_amortization.activations.file import ActivationFile
from sae_bench_amortization.metrics.ground_truth import GroundTruthAccumulator
from sae_bench_amortization.synthetic.generator import (
    PlantedExtras,
    SyntheticConfig,
    derived_seed,
    ground_truth,
    load_truth,
    stream,
    truth_path,
)
from sae_bench_amortization.synthetic.reference_saes import reference_saes

from conftest import WORLD_EVALS, read_result

CONFIG = SyntheticConfig(seed=5)
# A SAE-Lens config of a user's own: other sizes, Zipf, and mutually exclusive children.
USER_CONFIG = SyntheticModelConfig(
    num_features=200,
    hidden_dim=64,
    firing_probability=ZipfianFiringProbabilityConfig(exponent=0.8, max_prob=0.05, min_prob=0.005),
    hierarchy=HierarchyConfig(
        total_root_nodes=3, branching_factor=3, max_depth=1, mutually_exclusive_portion=1.0
    ),
    std_firing_magnitudes=0.1,
    bias=False,
    seed=11,
)


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def truth():
    return ground_truth(CONFIG)


@pytest.fixture(scope="module")
def tokens(truth):
    (batch,) = list(stream(truth, 8192, 8192))
    return batch


def test_features_firing_and_hierarchy_are_sae_lens_s(truth, tokens):
    """The dictionary, hierarchy and firings are SAE-Lens's own for the config the flags make."""
    model = SyntheticModel(CONFIG.model_config())  # SAE-Lens alone
    assert torch.equal(truth.dictionary, model.feature_dict.feature_vectors.detach())
    assert truth.model.hierarchy == model.hierarchy
    expected = model.activation_generator.firing_probabilities.clone()
    expected[[child for _, child in truth.hierarchies]] = CONFIG.child_share
    assert torch.equal(truth.firing_probability, expected)
    with torch.random.fork_rng(devices=[]):  # block 0's firings: SAE-Lens's sampler under its seed
        torch.manual_seed(derived_seed(CONFIG.seed, "features", 0))
        features = truth.model.activation_generator.sample(4096)
    assert torch.equal(tokens.concepts[:4096, : CONFIG.n_features], features > 0)
    fires = tokens.concepts[:, : CONFIG.n_features]
    for parent, child in truth.hierarchies:  # child ⇒ parent, on about child_share of the parent
        assert bool((fires[:, parent] | ~fires[:, child]).all())
        share = float(fires[:, child].sum() / fires[:, parent].sum())
        assert 0.03 < share < 0.25, (parent, child, share)


def test_per_latent_detection_scores_equal_a_direct_count(truth, tokens):
    """SAE-Lens's calculators on the oracle's codes = sklearn's scores per latent (oracle latent i's best
    match is true feature i: its decoder row is that feature), counts and norms taken directly."""
    oracle, _ = reference_saes(truth)["oracle"]
    with torch.no_grad():
        codes = oracle.encode(tokens.acts)
        x_hat = oracle.decode(codes)
    accumulator = GroundTruthAccumulator(oracle.W_dec, truth.dictionary)
    for rows in torch.arange(len(codes)).split(3000):  # in chunks, as streamed
        accumulator.update(codes[rows], tokens.acts[rows], x_hat[rows], tokens.concepts[rows])
    metrics = accumulator.metrics()
    F = CONFIG.n_features
    fires, on = tokens.concepts[:, :F].numpy(), (codes > 0).numpy()
    for name, score in (("precision", precision_score), ("recall", recall_score),
                        ("f1", f1_score), ("accuracy", accuracy_score)):  # fmt: skip
        kwargs = {} if name == "accuracy" else {"zero_division": 0}
        expected = np.mean([score(fires[:, i], on[:, i], **kwargs) for i in range(F)])
        assert metrics[name] == pytest.approx(expected, rel=1e-5), name
    assert metrics["dead_latents"] == int((~on.any(axis=0)).sum())
    assert metrics["sae_l0"] == pytest.approx(on.sum(axis=1).mean())
    assert metrics["true_l0"] == pytest.approx(fires.sum(axis=1).mean())
    shrinkage = (x_hat.norm(dim=1) / tokens.acts.norm(dim=1)).mean()
    assert metrics["shrinkage"] == pytest.approx(float(shrinkage), rel=1e-5)
    assert metrics["mcc"] == pytest.approx(1.0, abs=1e-6) and metrics["uniqueness"] == 1.0
    assert metrics["recall"] > 0.95  # the oracle detects its features (interference: false fires)


def test_sae_lens_mcc_of_the_oracle_is_one_and_of_a_random_sae_far_below(tmp_path, cli):
    acts = tmp_path / "eval.safetensors"
    assert cli("synth", "--out", acts, "--n-tokens", "6000", "--reference-saes", tmp_path / "refs").code == 0  # fmt: skip
    torch.manual_seed(0)
    StandardSAE(StandardSAEConfig(d_in=128, d_sae=256)).save_model(tmp_path / "random")
    measured = {}
    for name, folder in (("oracle", tmp_path / "refs" / "oracle"), ("random", tmp_path / "random")):
        assert cli.dead_dense(folder, acts, "--output-dir", tmp_path / f"results_{name}").code == 0
        measured[name] = read_result(tmp_path / f"results_{name}", "dead_dense")["eval_result_metrics"]["ground_truth"]  # fmt: skip
    assert measured["oracle"]["mcc"] == pytest.approx(1.0, abs=1e-6)
    assert measured["oracle"]["uniqueness"] == 1.0 and measured["oracle"]["null_reason"] is None
    assert measured["random"]["mcc"] < 0.5
    assert measured["oracle"]["f1"] > 4 * measured["random"]["f1"]


def test_every_eval_reports_ground_truth_for_each_mode(world, world_oracle_results, tmp_path, cli):
    """dead_dense, splitting, absorption_rate (one mode each) and amortization_gap (every mode) on the
    oracle: the same codes give the same numbers in every eval; a file without a truth sidecar has none."""
    # synth --n-tokens 20000 --reference-saes, and `saebench run` of the four evals on its oracle in one
    # run (exit 0 checked there): both built once (conftest)
    oracle = world.refs / "oracle"
    out = world_oracle_results
    single = {name: read_result(out, name)["eval_result_metrics"]["ground_truth"]
              for name in WORLD_EVALS[:3]}  # fmt: skip
    assert single["dead_dense"] == single["splitting"] == single["absorption_rate"]
    by_mode = read_result(out, "amortization_gap")["eval_result_metrics"]["ground_truth"]
    assert by_mode["modes"] == ["amortized", "semi:5", "semi:25", "non_amortized"]
    amortized = {key: values[0] for key, values in by_mode.items() if key != "modes"}
    assert amortized == pytest.approx(single["dead_dense"])  # the same codes, the same metrics
    assert len(set(by_mode["sae_l0"])) > 1  # each mode's own codes
    assert all(0 <= f1 <= 1 for f1 in by_mode["f1"]) and set(by_mode["mcc"]) == {by_mode["mcc"][0]}
    # an activation file without the sidecar (a copy: the shared file keeps its own): no ground truth
    acts = Path(shutil.copy(world.acts, tmp_path / world.acts.name))
    assert not truth_path(acts).exists()
    assert cli.dead_dense(oracle, acts, "--output-dir", tmp_path / "plain").code == 0
    assert (
        "ground_truth" not in read_result(tmp_path / "plain", "dead_dense")["eval_result_metrics"]
    )


@pytest.mark.parametrize("suffix", [".json", ".yaml"])
def test_a_sae_lens_config_file_round_trips_through_synth_and_the_sidecar(tmp_path, cli, suffix):
    path = tmp_path / f"world{suffix}"
    dump = json.dumps if suffix == ".json" else yaml.safe_dump
    path.write_text(dump(USER_CONFIG.to_dict()))
    out = tmp_path / "acts.safetensors"
    result = cli(
        "synth", "--synthetic-model", path, "--out", out, "--n-tokens", "3000", "--seed", "2"
    )
    assert result.code == 0, result.err
    loaded = load_truth(truth_path(out))
    assert loaded.model.cfg.to_dict() == USER_CONFIG.to_dict()  # recorded: the world can be rebuilt
    rebuilt = ground_truth(SyntheticModelConfig.from_dict(loaded.model.cfg.to_dict()), PlantedExtras(seed=2))  # fmt: skip
    assert torch.equal(loaded.dictionary, rebuilt.dictionary)
    assert loaded.hierarchies == rebuilt.hierarchies and len(loaded.hierarchies) == 9
    (direct,) = list(stream(rebuilt, 3000, 3000))
    first = next(ActivationFile(out).iter_batches(3000))
    assert torch.equal(first.acts, direct.acts) and torch.equal(first.concepts, direct.concepts)
    fires = first.concepts[:, :200]
    for root in loaded.model.hierarchy.roots:  # SAE-Lens's mutual exclusion: one child at a time
        children = [child.feature_index for child in root.children]
        assert int(fires[:, children].sum(dim=1).max()) <= 1


def test_a_saved_sae_lens_synthetic_model_folder_is_read_as_saved(tmp_path, cli):
    model = SyntheticModel(USER_CONFIG)
    model.save(tmp_path / "saved")
    out = tmp_path / "acts.safetensors"
    assert cli("synth", "--synthetic-model", tmp_path / "saved", "--out", out, "--n-tokens", "500").code == 0  # fmt: skip
    loaded = load_truth(truth_path(out))
    assert torch.equal(loaded.dictionary, model.feature_dict.feature_vectors.detach())
    assert torch.equal(loaded.firing_probability, model.activation_generator.firing_probabilities)


def sidecar_content(path: Path) -> tuple[dict, dict]:
    """(metadata, tensors as lists): safetensors writes a header of several metadata keys in no fixed
    order, so two equal sidecars can differ in bytes."""
    from safetensors import safe_open

    with safe_open(str(path), "pt") as handle:
        return handle.metadata(), {k: handle.get_tensor(k).tolist() for k in handle.keys()}  # noqa: SIM118


def test_the_same_seed_gives_the_same_files(tmp_path, cli):
    written = {}
    for run, seed in (("a", "4"), ("b", "4"), ("c", "5")):
        (tmp_path / run).mkdir()
        out = tmp_path / run / "x.safetensors"
        assert cli("synth", "--out", out, "--n-tokens", "5000", "--seed", seed).code == 0
        written[run] = (sha256(out), sidecar_content(truth_path(out)))
    assert written["a"] == written["b"]  # the activation file byte for byte, the truth by content
    assert written["a"][0] != written["c"][0] and written["a"][1] != written["c"][1]


@pytest.mark.parametrize(
    "case, extra, needle",
    [
        ("missing", ("--synthetic-model", "nowhere.json"), "not found"),
        ("not json", ("--synthetic-model", "bad.json"), "not valid JSON/YAML"),
        ("a list", ("--synthetic-model", "list.json"), "expected a SyntheticModelConfig"),
        ("no fields", ("--synthetic-model", "empty.json"), "not a SyntheticModelConfig"),
        ("flag it sets", ("--synthetic-model", "good.json", "--d-in", "64"), "--d-in"),
    ],
)
def test_synthetic_model_bad_input_is_one_line(tmp_path, cli, monkeypatch, case, extra, needle):
    monkeypatch.chdir(tmp_path)
    Path("bad.json").write_text("{not json")
    Path("list.json").write_text("[1, 2]")
    Path("empty.json").write_text("{}")
    Path("good.json").write_text(json.dumps(USER_CONFIG.to_dict()))
    result = cli("synth", *extra, "--out", "x.safetensors", "--n-tokens", "100")
    assert result.code == 2 and needle in result.err, (case, result.err)
    assert len(result.err.strip().splitlines()) == 1
    assert not Path("x.safetensors").exists() and not truth_path("x.safetensors").exists()
