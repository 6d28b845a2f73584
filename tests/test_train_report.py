"""`saebench train` reports what it trained: training_log.csv, and a final line whose NMSE and
explained variance (SAEBench core's definition) are those of the saved SAE."""

from __future__ import annotations

import argparse
import csv
import re
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from sae_lens import SAE

from sae_bench_amortization.cli import build_parser, main
from sae_bench_amortization.metrics.reconstruction import ReconstructionAccumulator

from conftest import write_activations

FINAL = re.compile(
    r"final loss (\S+), NMSE (\S+), explained variance (\S+) \(on the file's first (\d+) tokens\)"
)


def saebench_explained_variance(x: np.ndarray, x_hat: np.ndarray) -> float:
    """SAEBench 0.6 core's formula, transcribed in numpy on one batch of tokens [N, d]."""
    mean_sum_of_squares = (x**2).sum(axis=-1).mean()
    mean_act_per_dimension = (x**2).mean(axis=0).mean()  # its torch.cat(...).mean(dim=0)
    total_variance = mean_sum_of_squares - mean_act_per_dimension**2
    residual_variance = ((x - x_hat) ** 2).sum(axis=-1).mean()
    return 1 - residual_variance / total_variance


@pytest.fixture
def offset_tokens(tmp_path):
    """2500 tokens, d_in 16, away from the origin (SAEBench's variance differs from the usual one)."""
    generator = torch.Generator().manual_seed(0)
    acts = torch.randn(2500, 16, generator=generator) * torch.linspace(0.5, 2.0, 16) + 1.5
    return write_activations(tmp_path / "acts.safetensors", acts), acts


def test_train_writes_a_log_and_reports_the_saved_saes_quality(tmp_path, cli, offset_tokens):
    path, acts = offset_tokens
    out = tmp_path / "sae"
    result = cli(
        "train", "--activations", path, "--architecture", "topk", "--d-sae", "32", "--k", "4",
        "--n-tokens", "20050", "--batch-size", "100", "--out", out, "--device", "cpu",
    )  # fmt: skip
    assert result.code == 0, result.err
    with (out / "training_log.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == ["step", "tokens", "loss", "mse", "nmse", "l0"]
    # 201 steps (200 of 100 tokens, then 50): a row every 201 // 100 = 2 steps, and the last step
    assert [int(r["step"]) for r in rows] == [*range(2, 201, 2), 201]
    assert [int(r["tokens"]) for r in rows] == [*range(200, 20001, 200), 20050]
    assert all(float(r["l0"]) == 4.0 and float(r["nmse"]) > 0 for r in rows)
    loss, nmse, explained, n_tokens = FINAL.search(result.out).groups()
    assert int(n_tokens) == 2500 and float(loss) == float(rows[-1]["loss"])
    sae = SAE.load_from_disk(str(out), device="cpu")
    with torch.no_grad():
        x_hat = sae.decode(sae.encode(acts)).double().numpy()
    x = acts.double().numpy()
    expected_nmse = ((x - x_hat) ** 2).sum() / ((x - x.mean(axis=0)) ** 2).sum()
    assert float(nmse) == pytest.approx(expected_nmse, abs=1e-6)
    assert float(explained) == pytest.approx(saebench_explained_variance(x, x_hat), abs=1e-6)
    assert abs(float(explained) - (1 - expected_nmse)) > 0.05  # the two definitions differ here


def test_streamed_explained_variance_is_saebench_cores(offset_tokens):
    """Chunks of any size give what SAEBench's own function computes over equal-size batches."""
    from sae_bench.evals.core.main import get_sparsity_and_variance_metrics

    _, acts = offset_tokens
    weights = torch.randn(16, 16, generator=torch.Generator().manual_seed(1)) * 0.2
    reconstruct = lambda x: 0.9 * x + x @ weights  # noqa: E731 - a stand-in SAE's encode∘decode
    accumulator = ReconstructionAccumulator()
    for chunk in acts.split([7, 993, 1500]):
        accumulator.update(chunk, reconstruct(chunk))
    batches = iter(torch.arange(2500).reshape(5, 10, 50))  # 5 batches of 10 prompts x 50 tokens
    model = SimpleNamespace(run_with_cache=lambda tokens, **_: (None, {"hook": acts[tokens]}))
    store = SimpleNamespace(get_batch_tokens=lambda _: next(batches))
    cfg = SimpleNamespace(hook_name="hook", hook_head_index=None, hook_layer=0, d_sae=16)
    sae = SimpleNamespace(cfg=cfg, device="cpu", encode=reconstruct, decode=lambda z: z)
    metrics, _ = get_sparsity_and_variance_metrics(
        sae, model, store, 5, False, False, True, False, 10, {}
    )
    assert accumulator.explained_variance == pytest.approx(metrics["explained_variance"], abs=1e-5)


def test_train_help_shows_every_default(capsys):
    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    train = commands.choices["train"]
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    shown = " ".join(capsys.readouterr().out.split())
    checked = []
    for action in train._actions:
        if action.default is None or action.default is False or action.default == argparse.SUPPRESS:
            continue  # no value to show (0 is one: the seed's)
        value = re.search(r"\(([^()]*)\)$", action.help).group(1)
        assert float(value) == action.default and " ".join(action.help.split()) in shown
        checked.append(action.dest)
    assert sorted(checked) == ["batch_size", "l1_coefficient", "lr", "seed"]
    assert "--device DEVICE (cuda when available, else cpu)" in shown
