"""saebench dynamics: amortization_gap over ordered checkpoints → CSV rows per checkpoint × mode, and plots."""

from __future__ import annotations

import pandas as pd


def test_dynamics_over_three_checkpoints(tmp_path, cli):
    acts = tmp_path / "a.safetensors"
    assert cli("synth", "--out", acts, "--n-tokens", "3000").code == 0
    paths = []
    for n in (2000, 6000, 12000):
        path = tmp_path / f"ckpt_{n}"
        assert (
            cli(
                "train",
                "--activations",
                acts,
                "--architecture",
                "topk",
                "--d-sae",
                "128",
                "--k",
                "4",
                "--n-tokens",
                n,
                "--out",
                path,
                "--device",
                "cpu",
            ).code
            == 0
        )
        paths.append(path)
    result = cli(
        "dynamics",
        "--eval",
        "amortization_gap",
        *[a for p in paths for a in ("--sae-path", p)],
        "--activations",
        acts,
        "--output-dir",
        tmp_path / "out",
        "--calibration-tokens",
        "1000",
        "--inference",
        "amortized",
        "--inference",
        "semi:5",
    )
    assert result.code == 0, result.err
    table = pd.read_csv(tmp_path / "out" / "dynamics" / "dynamics.csv")
    assert list(table["checkpoint"]) == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert list(table["sae"].unique()) == ["local_ckpt_2000", "local_ckpt_6000", "local_ckpt_12000"]
    assert list(table["mode"][:3]) == ["amortized", "semi:5", "non_amortized"]
    assert (table["mean_gap"] > 0).all()
    png = (tmp_path / "out" / "dynamics" / "dynamics.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 20_000


def test_dynamics_needs_amortization_gap_and_checkpoints(tmp_path, cli):
    result = cli("dynamics", "--eval", "dead_dense", "--sae-path", tmp_path)
    assert result.code == 2 and "amortization_gap" in result.err
    result = cli("dynamics", "--eval", "amortization_gap")
    assert result.code == 2 and "checkpoints" in result.err
