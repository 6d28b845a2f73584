"""SAE sources: dictionary_learning checkpoints, untrusted pickles, regex selection, result naming."""

from __future__ import annotations

import json
import os

import pytest
import torch

from sae_bench_amortization.errors import InputError
from sae_bench_amortization.runner.results import result_path
from sae_bench_amortization.sources.saes import (
    load_dictionary_learning_sae,
    spec_from_path,
    specs_from_regex,
)


def write_dictionary_learning(folder, d_in=6, d_sae=10, dict_class="AutoEncoder", extra=None):
    """A checkpoint in dictionary_learning's own layout: nn.Linear weights [out, in], bias = b_dec."""
    folder.mkdir(parents=True, exist_ok=True)
    generator = torch.Generator().manual_seed(3)
    weights = {
        "encoder.weight": torch.randn(d_sae, d_in, generator=generator),
        "encoder.bias": torch.randn(d_sae, generator=generator),
        "decoder.weight": torch.randn(d_in, d_sae, generator=generator),
        "bias": torch.randn(d_in, generator=generator),
        **(extra or {}),
    }
    torch.save(weights, folder / "ae.pt")
    trainer = {
        "dict_class": dict_class,
        "activation_dim": d_in,
        "dict_size": d_sae,
        "layer": 3,
        "lm_name": "EleutherAI/pythia-70m-deduped",
        "k": 2,
    }
    (folder / "config.json").write_text(
        json.dumps({"trainer": trainer, "buffer": {"ctx_len": 128}})
    )
    return weights


def test_dictionary_learning_standard_encodes_like_the_original(tmp_path):
    weights = write_dictionary_learning(tmp_path / "trainer_0")
    sae = load_dictionary_learning_sae(tmp_path / "trainer_0" / "ae.pt", "cpu", "float32")
    x = torch.randn(32, 6)
    # dictionary_learning's AutoEncoder: f = relu(W_enc (x - b) + b_enc), x_hat = W_dec f + b
    expected = torch.relu(
        (x - weights["bias"]) @ weights["encoder.weight"].T + weights["encoder.bias"]
    )
    torch.testing.assert_close(sae.encode(x), expected)
    torch.testing.assert_close(
        sae.decode(expected), expected @ weights["decoder.weight"].T + weights["bias"]
    )
    assert sae.cfg.metadata.hook_name == "blocks.3.hook_resid_post"
    assert sae.cfg.metadata.model_name == "pythia-70m-deduped"


def test_dictionary_learning_topk(tmp_path):
    write_dictionary_learning(tmp_path / "t", dict_class="AutoEncoderTopK")
    sae = load_dictionary_learning_sae(tmp_path / "t" / "ae.pt", "cpu", "float32")
    assert sae.cfg.architecture() == "topk" and sae.cfg.k == 2
    assert ((sae.encode(torch.randn(50, 6)) > 0).sum(dim=1) <= 2).all()


class Payload:
    """Unpickling this would run os.system."""

    def __reduce__(self):
        return (os.system, ("touch /tmp/sae_bench_amortization_pwned",))


def test_pickled_code_is_refused(tmp_path):
    folder = tmp_path / "evil"
    write_dictionary_learning(folder)
    torch.save({"W_enc": torch.zeros(2, 2), "hook": Payload()}, folder / "ae.pt")
    with pytest.raises(InputError, match="refused to load.*could run code"):
        load_dictionary_learning_sae(folder / "ae.pt", "cpu", "float32")
    assert not os.path.exists("/tmp/sae_bench_amortization_pwned")


def test_dictionary_learning_needs_config(tmp_path):
    write_dictionary_learning(tmp_path / "d")
    (tmp_path / "d" / "config.json").unlink()
    with pytest.raises(InputError, match="config.json beside it"):
        load_dictionary_learning_sae(tmp_path / "d" / "ae.pt", "cpu", "float32")


def test_cli_runs_dictionary_learning_checkpoint(tmp_path, cli):
    from conftest import read_result, write_activations

    write_dictionary_learning(tmp_path / "trainer_7")
    write_activations(tmp_path / "a.safetensors", torch.randn(200, 6))
    result = cli.dead_dense(
        tmp_path / "trainer_7" / "ae.pt",
        tmp_path / "a.safetensors",
        "--output-dir",
        tmp_path / "out",
    )
    assert result.code == 0, result.err
    data = read_result(tmp_path / "out", "dead_dense")
    assert data["sae_lens_release_id"] == "local" and data["sae_lens_id"] == "trainer_7"


def test_local_names_from_paths(tmp_path):
    (tmp_path / "my_sae").mkdir()
    (tmp_path / "trainer_2").mkdir()
    (tmp_path / "trainer_2" / "ae.pt").write_bytes(b"")
    (tmp_path / "width16k.pt").write_bytes(b"")
    assert spec_from_path(tmp_path / "my_sae").sae_name == "local_my_sae"
    assert spec_from_path(tmp_path / "trainer_2" / "ae.pt").sae_name == "local_trainer_2"
    assert spec_from_path(tmp_path / "width16k.pt").sae_name == "local_width16k"
    assert spec_from_path(tmp_path / "my_sae", name="other").sae_name == "local_other"


def test_result_path_uses_saebench_sanitising(tmp_path):
    path = result_path(tmp_path, "gemma-scope-2b-pt-res", "layer_12/width_16k/average_l0_41")
    assert (
        path
        == tmp_path / "gemma-scope-2b-pt-res_layer_12_width_16k_average_l0_41_eval_results.json"
    )


def test_regex_selection_uses_saelens_directory_offline():
    specs = specs_from_regex(r"gpt2-small-res-jb", r"blocks\.[0-2]\.hook_resid_pre")
    assert [(s.release, s.sae_id) for s in specs] == [
        ("gpt2-small-res-jb", f"blocks.{i}.hook_resid_pre") for i in range(3)
    ]
    with pytest.raises(InputError, match="no SAE-Lens SAE matches"):
        specs_from_regex("nothing-like-this", ".*")
    with pytest.raises(InputError, match="invalid regular expression"):
        specs_from_regex("(", ".*")
