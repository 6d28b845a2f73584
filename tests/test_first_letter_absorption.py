"""absorption_rate with a TransformerLens model: SAEBench's first-letter machinery, reported under our keys.

The model is a random-weight HookedTransformer built offline (no hub), so its first-letter probes are weak:
the numbers are checked against SAEBench's own per-word tables, not against a scientific expectation.
SAEBench's vocabulary is cut to 25 words per letter to fit CI time (its full MiniLM vocabulary is ~20k words).
"""

from __future__ import annotations

import json

import pandas as pd
import pytest
import torch
from sae_lens.saes.standard_sae import StandardSAE, StandardSAEConfig

from sae_bench_amortization.activations.sources import TransformerLensActivationFactory
from sae_bench_amortization.evals.absorption_rate.eval_config import AbsorptionRateEvalConfig
from sae_bench_amortization.evals.absorption_rate.main import run_eval
from sae_bench_amortization.modes import InferenceSettings, parse_mode
from sae_bench_amortization.sources.saes import spec_from_path

from conftest import offline_hooked_transformer


@pytest.fixture
def small_vocab_model(monkeypatch):
    """The offline model, loaders patched to return it, SAEBench's word list cut to 25 words per letter."""
    import sae_bench.evals.absorption.common as common
    import sae_bench.evals.absorption.feature_absorption as feature_absorption
    from sae_bench.evals.absorption.vocab import get_alpha_tokens

    model = offline_hooked_transformer(d_model=32)
    by_letter: dict[str, list[str]] = {}
    for word in sorted(get_alpha_tokens(model.tokenizer)):
        by_letter.setdefault(word.strip()[0].lower(), []).append(word)
    words = [w for letter in sorted(by_letter) for w in by_letter[letter][::7][:25]]
    monkeypatch.setattr(common, "get_alpha_tokens", lambda tokenizer: list(words))
    monkeypatch.setattr(feature_absorption, "get_alpha_tokens", lambda tokenizer: list(words))
    monkeypatch.setattr(
        "sae_bench_amortization.activations.sources.load_transformer_lens_model",
        lambda name, device, dtype: model,
    )
    return model


def tl_sae(path, hook="blocks.1.hook_resid_post"):
    torch.manual_seed(0)
    cfg = StandardSAEConfig(d_in=32, d_sae=128)
    cfg.metadata.hook_name, cfg.metadata.model_name = hook, "tiny-offline"
    sae = StandardSAE(cfg)
    with torch.no_grad():
        sae.W_enc.normal_(0, 32**-0.5)
        sae.W_dec.copy_(sae.W_enc.T / sae.W_enc.T.norm(dim=1, keepdim=True))
        sae.b_enc.fill_(-0.1)
    sae.save_model(path)
    return path


def text_factory():
    return iter(["A short document about apples.", "Bananas are yellow."] * 4)


def test_saebench_first_letter_numbers_under_our_keys(tmp_path, small_vocab_model):
    factory = TransformerLensActivationFactory(None, text_factory, 200)
    config = AbsorptionRateEvalConfig(first_letter_min_probe_f1=0.0, first_letter_min_letters=1)
    modes = InferenceSettings(modes=[parse_mode("amortized"), parse_mode("semi:2")])
    outcomes = run_eval(
        config,
        [spec_from_path(tl_sae(tmp_path / "sae"), "tl")],
        factory,
        "cpu",
        tmp_path / "out",
        inference=modes,
        work_dir=tmp_path / "work",
    )
    assert [o.status for o in outcomes] == ["written", "written"]
    for outcome, tag in zip(outcomes, ("amortized", "semi-2"), strict=True):
        data = json.loads(outcome.path.read_text())
        config_out = data["eval_config"]
        assert config_out["definition"].startswith("saebench_first_letter")
        assert config_out["saebench_config"]["min_GT_probe_f1"] == 0.0
        assert config_out["inference_mode"] == tag.replace("-", ":")
        # SAEBench's own per-word table for this SAE x mode, aggregated here independently
        (table,) = (tmp_path / "work" / "experiments" / "feature_absorption").glob(
            f"*tl__{tag}/*.parquet"
        )
        words = pd.read_parquet(table)
        expected = {}
        for letter, group in words.groupby("letter"):
            positives = int(group["num_probe_true_positives"].iloc[0])
            expected[f"first_letter_{letter}"] = (
                group["absorption_fraction"].sum() / positives,
                group["is_full_absorption"].sum() / positives,
                positives,
                sorted(int(f) for f in group["split_feats"].iloc[0]),
                set(int(f) for f in group.loc[group["is_full_absorption"], "top_projection_feat"]),
            )
        rows = {row["concept"]: row for row in data["eval_result_details"]}
        assert set(rows) == set(expected) and len(rows) >= 10
        for concept, (fraction, full, positives, main, absorbing) in expected.items():
            row = rows[concept]
            assert row["absorption_rate"] == pytest.approx(fraction, abs=1e-12)
            assert row["full_absorption_rate"] == pytest.approx(full, abs=1e-12)
            assert row["n_tokens"] == positives
            assert sorted(row["main_latents"]) == main
            assert set(row["absorbing_latents"]) == absorbing
        metrics = data["eval_result_metrics"]["absorption"]
        assert metrics["n_concepts"] == len(rows)
        assert metrics["absorption_rate"] == pytest.approx(
            sum(v[0] for v in expected.values()) / len(expected), abs=1e-12
        )
        assert metrics["full_absorption_rate"] == pytest.approx(
            sum(v[1] for v in expected.values()) / len(expected), abs=1e-12
        )
    # SAEBench's probe was trained once and shared by both modes
    assert len(list((tmp_path / "work" / "probes").rglob("probe.pth"))) == 1


def test_weak_first_letter_probes_are_one_line_and_write_nothing(tmp_path, cli, small_vocab_model):
    text = tmp_path / "t.txt"
    text.write_text("Apples and bananas.\n\nCherries.")
    result = cli(
        "run",
        "--eval",
        "absorption_rate",
        "--sae-path",
        tl_sae(tmp_path / "sae"),
        "--text-file",
        text,
        "--n-tokens",
        "20",
        "--output-dir",
        tmp_path / "out",
        "--device",
        "cpu",
    )
    assert result.code == 2 and len(result.err.strip().splitlines()) == 1, result.err
    assert "SAEBench first-letter absorption: only" in result.err
    assert "--absorption-definition concepts" in result.err
    assert not list((tmp_path / "out").rglob("*.json"))


def test_saebench_definition_needs_a_resid_post_transformer_lens_source(tmp_path, cli):
    from conftest import write_activations

    acts = write_activations(tmp_path / "a.safetensors", torch.randn(300, 16))
    sae = StandardSAE(StandardSAEConfig(d_in=16, d_sae=32))
    sae.save_model(tmp_path / "sae")
    result = cli(
        "run",
        "--eval",
        "absorption_rate",
        "--sae-path",
        tmp_path / "sae",
        "--activations",
        acts,
        "--absorption-definition",
        "saebench_first_letter",
        "--output-dir",
        tmp_path / "out",
    )
    assert result.code == 2 and len(result.err.strip().splitlines()) == 1, result.err
    assert "needs a TransformerLens model read at blocks.L.hook_resid_post" in result.err
    assert not list((tmp_path / "out").rglob("*.json"))


def test_saebench_forward_stops_after_the_probed_layer_with_the_same_activations():
    """While SAEBench runs, ``run_with_cache`` stops after block L: the hook's activations are the full
    forward's, the unembedding is not computed, and the model is left as it was."""
    from sae_bench_amortization.evals.absorption_rate.first_letter import _forward_only_to

    model = offline_hooked_transformer(d_model=32)
    hook = "blocks.0.hook_resid_post"
    prompts = ["apple has the first letter:", "Bananas are yellow."]
    logits, full = model.run_with_cache(prompts, names_filter=[hook])
    with _forward_only_to(model, 0):
        resid, cut = model.run_with_cache(prompts, names_filter=[hook])
    torch.testing.assert_close(cut[hook], full[hook], rtol=0, atol=0)
    assert isinstance(logits, torch.Tensor) and isinstance(resid, torch.Tensor)
    assert logits.shape[-1] == model.cfg.d_vocab and resid.shape[-1] == model.cfg.d_model
    assert "run_with_cache" not in vars(model)


def test_the_ground_truth_probe_is_trained_once_per_inputs_and_the_numbers_do_not_depend_on_the_cache(
    tmp_path, small_vocab_model, monkeypatch
):
    """Two runs on one cold cache: the probe is trained in the first only (kept as safetensors with the
    inputs that made it), and both give the same rows; another seed is another probe."""
    import sae_bench.evals.absorption.common as common

    monkeypatch.setenv("SAE_BENCH_AMORTIZATION_CACHE", str(tmp_path / "cache"))
    trained = []
    original = common.train_and_save_probes
    monkeypatch.setattr(
        common, "train_and_save_probes", lambda *a, **k: trained.append(1) or original(*a, **k)
    )
    spec = spec_from_path(tl_sae(tmp_path / "sae"), "tl")

    def rows(name: str, seed: int = 42) -> list[dict]:
        config = AbsorptionRateEvalConfig(
            first_letter_min_probe_f1=0.0, first_letter_min_letters=1, seed=seed
        )
        factory = TransformerLensActivationFactory(None, text_factory, 200)
        (outcome,) = run_eval(config, [spec], factory, "cpu", tmp_path / name)
        return json.loads(outcome.path.read_text())["eval_result_details"]

    first, second = rows("cold"), rows("warm")
    assert len(trained) == 1
    assert first == second and len(first) >= 10
    (folder,) = (tmp_path / "cache" / "saebench-probes").iterdir()
    assert sorted(p.name for p in folder.iterdir()) == [
        "data.npz", "inputs.json", "probe.safetensors", "test_df.csv", "train_df.csv"
    ]  # fmt: skip
    inputs = json.loads((folder / "inputs.json").read_text())
    assert (inputs["layer"], inputs["random_seed"]) == (1, 42)
    assert inputs["model"] == small_vocab_model.cfg.model_name
    rows("other_seed", seed=7)
    assert len(trained) == 2 and len(list((tmp_path / "cache" / "saebench-probes").iterdir())) == 2


def test_saebench_encodes_the_probe_words_once_only_when_their_codes_fit_in_the_saes_size():
    """n_words × d_sae codes kept at most as large as the SAE's 2 · d_in · d_sae weights."""
    from sae_bench_amortization.evals.absorption_rate.first_letter import precalc_fits

    sae = StandardSAE(StandardSAEConfig(d_in=32, d_sae=128))
    assert precalc_fits(64, sae) and not precalc_fits(65, sae)


def test_the_rows_are_the_same_whether_saebench_encodes_the_probe_words_once_or_per_probe(
    tmp_path, small_vocab_model, monkeypatch
):
    import sae_bench_amortization.evals.absorption_rate.first_letter as first_letter

    spec = spec_from_path(tl_sae(tmp_path / "sae"), "tl")
    config = AbsorptionRateEvalConfig(first_letter_min_probe_f1=0.0, first_letter_min_letters=1)
    results = {}
    for precalc in (False, True):
        monkeypatch.setattr(first_letter, "precalc_fits", lambda n_words, sae, p=precalc: p)
        factory = TransformerLensActivationFactory(None, text_factory, 200)
        (outcome,) = run_eval(config, [spec], factory, "cpu", tmp_path / str(precalc))
        results[precalc] = json.loads(outcome.path.read_text())
        saebench_config = results[precalc]["eval_config"]["saebench_config"]
        assert saebench_config["precalc_k_sparse_probe_sae_acts"] is precalc
    assert len(results[True]["eval_result_details"]) >= 10
    assert results[True]["eval_result_details"] == results[False]["eval_result_details"]
