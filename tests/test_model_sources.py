"""Activations read off models: the offline MiniLM path end to end, and the TransformerLens wiring."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from sae_lens.saes.standard_sae import StandardSAE, StandardSAEConfig
from safetensors.torch import load_file
from transformers import AutoModel, AutoTokenizer

from sae_bench_amortization.activations.models import HFModelActivations, resolve_hf_model
from sae_bench_amortization.activations.text import iter_fortunes
from sae_bench_amortization.errors import InputError

from conftest import offline_hooked_transformer, read_result, run_subprocess

MINILM = "all-MiniLM-L6-v2"


def random_sae(path, d_in, seed=0, metadata=None):
    torch.manual_seed(seed)
    cfg = StandardSAEConfig(d_in=d_in, d_sae=4 * d_in)
    for key, value in (metadata or {}).items():
        setattr(cfg.metadata, key, value)
    sae = StandardSAE(cfg)
    with torch.no_grad():
        sae.W_enc.normal_(0, 1 / d_in**0.5)
        sae.b_enc.uniform_(-3.0, 0.5)
    sae.save_model(path)
    return sae


def test_hf_module_output_is_the_models_hidden_state():
    """encoder.layer.3's output equals transformers' hidden_states[4], special tokens dropped."""
    docs = [
        "The quick brown fox jumps over the lazy dog.",
        "A second, rather longer document about foxes.",
    ]
    source = HFModelActivations(MINILM, "encoder.layer.3", lambda: iter(docs), n_tokens=10_000)
    acts = torch.cat([b.acts for b in source.iter_batches(1000)])
    path = resolve_hf_model(MINILM)
    tokenizer, model = AutoTokenizer.from_pretrained(path), AutoModel.from_pretrained(path)
    expected = []
    for doc in docs:
        encoded = tokenizer(doc, return_tensors="pt")
        with torch.no_grad():
            hidden = model(**encoded, output_hidden_states=True).hidden_states[4][0]
        expected.append(hidden[1:-1])  # drop [CLS] and [SEP]
    torch.testing.assert_close(acts, torch.cat(expected), atol=1e-4, rtol=1e-4)


def test_unknown_hf_module_suggests():
    with pytest.raises(InputError, match=r"no module 'encoder.layer.33'.*encoder.layer.3"):
        HFModelActivations(MINILM, "encoder.layer.33", lambda: iter_fortunes(), n_tokens=10)


def test_minilm_activations_then_dead_dense_end_to_end(tmp_path):
    """The offline real-model path: `saebench activations` then `saebench run`, as a user runs them."""
    acts_path = tmp_path / "minilm_l3.safetensors"
    done = run_subprocess(
        "activations",
        "--hf-model",
        MINILM,
        "--hf-module",
        "encoder.layer.3",
        "--n-tokens",
        "2000",
        "--out",
        acts_path,
        "--device",
        "cpu",
    )
    assert done.returncode == 0, done.stderr
    acts = load_file(acts_path)["activations"]
    assert acts.shape == (2000, 384) and torch.isfinite(acts).all()
    sae = random_sae(tmp_path / "minilm_sae", 384)
    out = tmp_path / "out"
    done = run_subprocess(
        "run",
        "--eval",
        "dead_dense",
        "--sae-path",
        tmp_path / "minilm_sae",
        "--activations",
        acts_path,
        "--output-dir",
        out,
        "--device",
        "cpu",
    )
    assert done.returncode == 0, done.stderr
    metrics = read_result(out, "dead_dense")["eval_result_metrics"]["pathologies"]
    x, w, b, bd = (t.detach().double().numpy() for t in (acts, sae.W_enc, sae.b_enc, sae.b_dec))
    freq = (((x - bd) @ w + b) > 0).mean(axis=0)
    assert metrics["n_tokens"] == 2000
    assert metrics["dead_rate"] == pytest.approx((freq == 0).mean(), abs=1 / 1536 + 1e-12)
    assert metrics["dense_rate"] == pytest.approx((freq > 0.1).mean(), abs=1 / 1536 + 1e-12)


def test_hf_model_read_directly_by_run(tmp_path, cli):
    random_sae(tmp_path / "s", 384)
    text = tmp_path / "doc.txt"
    paragraphs = ["First paragraph of real words.", "Second paragraph, with more words in it."]
    text.write_text("\n\n".join(paragraphs) + "\n")
    result = cli(
        "run",
        "--eval",
        "dead_dense",
        "--sae-path",
        tmp_path / "s",
        "--hf-model",
        MINILM,
        "--hf-module",
        "encoder.layer.1",
        "--text-file",
        text,
        "--output-dir",
        tmp_path / "out",
        "--device",
        "cpu",
    )
    assert result.code == 0, result.err
    data = read_result(tmp_path / "out", "dead_dense")
    tokenizer = AutoTokenizer.from_pretrained(resolve_hf_model(MINILM))
    n_word_pieces = sum(len(tokenizer(p, add_special_tokens=False).input_ids) for p in paragraphs)
    assert data["eval_result_metrics"]["pathologies"]["n_tokens"] == n_word_pieces
    assert "encoder.layer.1" in data["eval_config"]["activation_source"]


@pytest.fixture
def offline_transformer_lens(monkeypatch):
    """A random-weight HookedTransformer built offline; the loader is patched to return it (wiring only)."""
    model = offline_hooked_transformer()
    asked = []

    def load(name, device, dtype):
        asked.append(name)
        return model

    monkeypatch.setattr(
        "sae_bench_amortization.activations.sources.load_transformer_lens_model", load
    )
    return model, asked


def test_transformer_lens_path_uses_sae_hook_and_model(tmp_path, cli, offline_transformer_lens):
    model, asked = offline_transformer_lens
    random_sae(
        tmp_path / "tl_sae",
        32,
        metadata={"hook_name": "blocks.0.hook_resid_post", "model_name": "tiny"},
    )
    text = tmp_path / "t.txt"
    text.write_text(
        "\n\n".join(f"Document number {i} talks about foxes and dogs." for i in range(40))
    )
    result = cli(
        "run",
        "--eval",
        "dead_dense",
        "--sae-path",
        tmp_path / "tl_sae",
        "--text-file",
        text,
        "--n-tokens",
        "150",
        "--output-dir",
        tmp_path / "out",
        "--device",
        "cpu",
    )
    assert result.code == 0, result.err
    data = read_result(tmp_path / "out", "dead_dense")
    assert asked == ["tiny"]  # the SAE's metadata.model_name
    assert data["eval_result_metrics"]["pathologies"]["n_tokens"] == 150
    assert "blocks.0.hook_resid_post" in data["eval_config"]["activation_source"]
    result = cli(
        "run",
        "--eval",
        "dead_dense",
        "--sae-path",
        tmp_path / "tl_sae",
        "--model",
        "other",
        "--hook",
        "blocks.1.hook_resid_pre",
        "--text-file",
        text,
        "--n-tokens",
        "50",
        "--output-dir",
        tmp_path / "out2",
        "--device",
        "cpu",
    )
    assert result.code == 0, result.err
    assert asked[-1] == "other"
    assert "blocks.1.hook_resid_pre" in json.dumps(
        read_result(tmp_path / "out2", "dead_dense")["eval_config"]
    )


def test_transformer_lens_unknown_hook(tmp_path, cli, offline_transformer_lens):
    random_sae(
        tmp_path / "s", 32, metadata={"hook_name": "blocks.0.hook_resid_pst", "model_name": "tiny"}
    )
    text = tmp_path / "t.txt"
    text.write_text("some words")
    result = cli(
        "run",
        "--eval",
        "dead_dense",
        "--sae-path",
        tmp_path / "s",
        "--text-file",
        text,
        "--output-dir",
        tmp_path / "out",
    )
    assert result.code == 2 and "no hook 'blocks.0.hook_resid_pst'" in result.err
    assert "blocks.0.hook_resid_post" in result.err


def test_transformer_lens_model_offline_is_one_line(tmp_path, cli):
    text = tmp_path / "t.txt"
    text.write_text("words")
    result = cli(
        "activations",
        "--model",
        "not-a-real-model-name",
        "--hook",
        "blocks.0.hook_resid_post",
        "--text-file",
        text,
        "--out",
        tmp_path / "a.safetensors",
    )
    assert result.code == 2 and len(result.err.strip().splitlines()) == 1
    assert "cannot load TransformerLens model 'not-a-real-model-name'" in result.err
    assert not (tmp_path / "a.safetensors").exists()


def test_fortunes_are_real_text_and_deterministic():
    first = [doc for _, doc in zip(range(5), iter_fortunes(seed=0), strict=False)]
    assert first == [doc for _, doc in zip(range(5), iter_fortunes(seed=0), strict=False)]
    assert sum(len(doc.split()) for doc in iter_fortunes()) > 100_000
    assert np.mean([doc.isascii() for doc in first]) > 0.5


def test_hf_dataset_offline_is_one_line_and_writes_nothing(tmp_path, cli):
    out = tmp_path / "a.safetensors"
    result = cli(
        "activations",
        "--hf-model",
        MINILM,
        "--hf-module",
        "encoder.layer.3",
        "--dataset",
        "Skylion007/openwebtext",
        "--n-tokens",
        "10",
        "--out",
        out,
    )
    assert result.code == 2 and len(result.err.strip().splitlines()) == 1, result.err
    assert (
        "cannot load HF dataset 'Skylion007/openwebtext'" in result.err
        and "--text-file" in result.err
    )
    assert list(tmp_path.iterdir()) == []


def test_model_tokens_carry_first_letter_concepts():
    docs = ["Apples and bananas are fruit.", "Zebras zigzag."]
    source = HFModelActivations(MINILM, "encoder.layer.3", lambda: iter(docs), n_tokens=100)
    (batch,) = list(source.iter_batches(100))
    assert source.concept_names[0] == "first_letter_a" and batch.concepts.shape == (
        batch.acts.shape[0],
        26,
    )
    tokens = source.tokenizer.tokenize(" ".join(docs))
    expected = [
        ord(t[0]) - ord("a") if t[0].isalpha() and not t.startswith("##") else -1 for t in tokens
    ]
    got = [int(row.nonzero()[0]) if row.any() else -1 for row in batch.concepts]
    assert got == expected


def test_splitting_and_absorption_run_on_the_offline_minilm_path(tmp_path, cli):
    random_sae(tmp_path / "s", 384)
    for eval_name in ("splitting", "absorption_rate"):
        result = cli(
            "run",
            "--eval",
            eval_name,
            "--sae-path",
            tmp_path / "s",
            "--hf-model",
            MINILM,
            "--hf-module",
            "encoder.layer.3",
            "--n-tokens",
            "3000",
            "--output-dir",
            tmp_path / "out",
            "--device",
            "cpu",
        )
        assert result.code == 0, result.err
        data = read_result(tmp_path / "out", eval_name)
        concepts = [row["concept"] for row in data["eval_result_details"]]
        assert concepts and all(c.startswith("first_letter_") for c in concepts)


def test_exported_activations_carry_the_readers_first_letter_concepts(tmp_path, cli):
    """`saebench activations` writes, token by token, the labels the reader yields for the same text;
    `--no-concepts` writes none; `saebench run --eval splitting` reads the exported file."""
    from safetensors import safe_open

    from sae_bench_amortization.activations.models import FIRST_LETTER_NAMES

    read = ("activations", "--hf-model", MINILM, "--hf-module", "encoder.layer.0", "--n-tokens")
    labelled, bare = tmp_path / "labelled.safetensors", tmp_path / "bare.safetensors"
    assert cli(*read, "300", "--out", labelled, "--device", "cpu").code == 0
    assert cli(*read, "300", "--out", bare, "--device", "cpu", "--no-concepts").code == 0
    reader = HFModelActivations(
        MINILM, "encoder.layer.0", lambda: iter_fortunes(seed=0), n_tokens=300, context_size=128
    )
    batches = list(reader.iter_batches(64))
    expected = torch.cat([b.concepts for b in batches])
    written = load_file(labelled)
    with safe_open(str(labelled), framework="pt") as handle:
        names = json.loads(handle.metadata()["concept_names"])
    assert names == [f"first_letter_{c}" for c in "abcdefghijklmnopqrstuvwxyz"]
    assert names == FIRST_LETTER_NAMES and written["concepts"].shape == (300, 26)
    assert torch.equal(written["concepts"], expected) and 50 < int(expected.sum()) < 300
    torch.testing.assert_close(written["activations"], torch.cat([b.acts for b in batches]))
    with safe_open(str(bare), framework="pt") as handle:
        assert set(handle.keys()) == {"activations"}
        assert "concept_names" not in (handle.metadata() or {})
    random_sae(tmp_path / "s", 384)
    run = ("run", "--eval", "splitting", "--sae-path", tmp_path / "s", "--device", "cpu")
    result = cli(*run, "--activations", labelled, "--output-dir", tmp_path / "out")
    assert result.code == 0, result.err
    result = cli(*run, "--activations", bare, "--output-dir", tmp_path / "out_bare")
    assert result.code == 2 and "concept" in result.err
