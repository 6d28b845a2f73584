"""SAEBench's own core eval, run through this package's registry on an offline model (wiring only)."""

from __future__ import annotations

import json
import math

import pytest
from sae_lens.saes.standard_sae import StandardSAE, StandardSAEConfig
from transformer_lens import HookedTransformer

from sae_bench_amortization.errors import InputError
from sae_bench_amortization.registry import discover_evals
from sae_bench_amortization.runner.loop import run_entry
from sae_bench_amortization.runner.request import EvalRequest
from sae_bench_amortization.sources.saes import spec_from_object

from conftest import core_request, offline_hooked_transformer


@pytest.fixture
def tiny_model(monkeypatch):
    model = offline_hooked_transformer(model_name="tiny")
    monkeypatch.setattr(HookedTransformer, "from_pretrained_no_processing", lambda *a, **k: model)
    return model


def tiny_sae(**metadata):
    cfg = StandardSAEConfig(d_in=32, d_sae=64)
    for key, value in {
        "hook_name": "blocks.0.hook_resid_post",
        "model_name": "tiny",
        **metadata,
    }.items():
        setattr(cfg.metadata, key, value)
    return StandardSAE(cfg)


def test_core_runs_through_the_registry(tmp_path, tiny_model):
    text = tmp_path / "t.txt"
    text.write_text(
        "\n\n".join(
            f"Document {i} is about foxes, dogs and the number {i * 7}." for i in range(200)
        )
    )
    request = core_request(tiny_sae(), "tiny_sae", text, tmp_path / "out", (2, 2, 4))
    (outcome,) = run_entry(discover_evals()["core"], request)
    assert outcome.status == "written"
    data = json.loads(outcome.path.read_text())
    assert (
        outcome.path.name == "local_tiny_sae_custom_sae_eval_results.json"
    )  # SAEBench's naming for SAE objects
    assert data["eval_type_id"] == "core"
    l0 = data["eval_result_metrics"]["sparsity"]["l0"]
    assert math.isfinite(l0) and 0 <= l0 <= 64


def test_core_without_its_per_latent_statistics_is_refused_before_any_work(tmp_path, tiny_model):
    """SAEBench 0.6.0's core cannot write its JSON without them (it fails after the work): one line."""
    import dataclasses

    text = tmp_path / "t.txt"
    text.write_text("\n\n".join(f"Document {i} is about foxes." for i in range(20)))
    request = core_request(tiny_sae(), "tiny_sae", text, tmp_path / "out", (1, 1, 2))
    off = dataclasses.replace(
        request.configs["core"], compute_featurewise_weight_based_metrics=False
    )
    request = dataclasses.replace(request, configs={"core": off})
    with pytest.raises(InputError, match="compute_featurewise_weight_based_metrics off"):
        run_entry(discover_evals()["core"], request)
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").rglob("*.json"))


def test_saebench_evals_need_model_metadata(tmp_path):
    sae = tiny_sae(hook_name=None)
    request = EvalRequest(saes=[spec_from_object(sae, "x")], output_dir=tmp_path)
    with pytest.raises(InputError, match="metadata.hook_name"):
        run_entry(discover_evals()["absorption"], request)


def test_core_runs_each_inference_mode(tmp_path, tiny_model):
    from sae_bench_amortization.modes import InferenceSettings, parse_modes

    text = tmp_path / "t.txt"
    text.write_text("\n\n".join(f"Document {i} is about foxes and dogs." for i in range(100)))
    request = core_request(
        tiny_sae(),
        "tiny_sae",
        text,
        tmp_path / "out",
        (1, 2, 4),
        inference=InferenceSettings(
            modes=parse_modes(["amortized", "semi:3"]), l1_coefficient=0.05
        ),
    )
    outcomes = run_entry(discover_evals()["core"], request)
    assert [o.status for o in outcomes] == ["written", "written"]
    names = sorted(o.path.name for o in outcomes)
    assert names == [
        "local_tiny_sae__amortized_custom_sae_eval_results.json",
        "local_tiny_sae__semi-3_custom_sae_eval_results.json",
    ]
    configs = [json.loads(o.path.read_text())["sae_cfg_dict"]["architecture"] for o in outcomes]
    assert sorted(configs) == ["ista_refined", "standard"]
