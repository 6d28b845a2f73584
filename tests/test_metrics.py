"""Firing statistics against values derived by hand and by numpy."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sae_bench_amortization.metrics.firing import (
    FiringCounter,
    log_frequency_histogram,
    pathologies,
)


def test_hand_built_codes():
    codes = torch.tensor(
        [
            [0.0, 1.0, 0.5, 0.0],
            [0.0, 2.0, 0.0, 0.0],
            [0.0, 0.1, 0.0, -1.0],  # negative codes do not fire
            [0.0, 3.0, 0.0, 0.0],
        ]
    )
    counter = FiringCounter(4)
    counter.update(codes)
    stats = pathologies(counter, dense_threshold=0.5)
    # latent 0 and 3 never fire; latent 1 fires on 4/4 (> 0.5); latent 2 on 1/4
    assert stats.dead_rate == 0.5
    assert stats.dense_rate == 0.25
    assert stats.alive_fraction == 0.5
    assert stats.mean_l0 == 5 / 4
    assert stats.n_tokens == 4


def test_dense_threshold_is_strict():
    counter = FiringCounter(2)
    counter.update(torch.tensor([[1.0, 1.0], [0.0, 1.0], [0.0, 1.0], [0.0, 1.0], [0.0, 1.0]]))
    assert pathologies(counter, dense_threshold=0.2).dense_rate == 0.5  # 0.2 is not > 0.2, 1.0 is


@pytest.mark.parametrize("chunk", [1, 7, 1000])
def test_streaming_equals_numpy(chunk):
    generator = torch.Generator().manual_seed(1)
    codes = torch.relu(torch.randn(1000, 50, generator=generator) - torch.linspace(-1, 3.5, 50))
    counter = FiringCounter(50)
    for start in range(0, 1000, chunk):
        counter.update(codes[start : start + chunk])
    fired = codes.numpy() > 0
    freq = fired.mean(axis=0)
    stats = pathologies(counter, dense_threshold=0.1)
    assert stats.dead_rate == (freq == 0).mean()
    assert stats.dense_rate == (freq > 0.1).mean()
    assert stats.mean_l0 == pytest.approx(fired.sum(axis=1).mean(), abs=1e-12)
    np.testing.assert_allclose(counter.frequency.numpy(), freq)


def test_histogram_matches_numpy():
    n_tokens = 10_000
    counts = torch.tensor([0, 0, 1, 5, 10, 99, 100, 2500, 10_000, 7])
    frequency = counts.double() / n_tokens
    rows = log_frequency_histogram(frequency, n_tokens, bins=8)
    assert rows[0] == {
        "bin": "dead",
        "log10_frequency_low": None,
        "log10_frequency_high": None,
        "n_latents": 2,
    }
    edges = np.linspace(-4.0, 0.0, 9)
    expected, _ = np.histogram(np.log10(frequency.numpy()[frequency.numpy() > 0]), bins=edges)
    assert [row["n_latents"] for row in rows[1:]] == expected.tolist()
    assert sum(row["n_latents"] for row in rows) == 10
    assert rows[1]["log10_frequency_low"] == -4.0 and rows[-1]["log10_frequency_high"] == 0.0
