"""Bad input: exit code 2, one line on stderr naming the problem, no traceback, nothing written."""

from __future__ import annotations

import torch
from sae_lens.saes.standard_sae import StandardSAE, StandardSAEConfig
from safetensors.torch import save_file

from conftest import write_activations


def assert_one_line_error(result, *fragments):
    assert result.code == 2, (result.code, result.err)
    lines = result.err.strip().splitlines()
    assert len(lines) == 1, result.err
    assert "Traceback" not in result.err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def snapshot(folder):
    """Every file under ``folder`` with its bytes and mtime (folders' own mtimes move with lock files)."""
    if not folder.exists():
        return {}
    return {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in folder.rglob("*") if p.is_file()}


def test_missing_sae_path(planted, tmp_path, cli):
    out = tmp_path / "out"
    result = cli.dead_dense(
        tmp_path / "missing",
        planted.activations,
        "--output-dir",
        out,
    )
    assert_one_line_error(result, "SAE path not found", "missing")
    assert not out.exists()


def test_missing_activation_file(planted, tmp_path, cli):
    result = cli.dead_dense(
        planted.path,
        tmp_path / "nope.safetensors",
        "--output-dir",
        tmp_path / "out",
    )
    assert_one_line_error(result, "activation file not found", "nope.safetensors")


def test_d_in_mismatch(planted, tmp_path, cli):
    write_activations(tmp_path / "wide.safetensors", torch.randn(10, 33))
    out = tmp_path / "out"
    result = cli.dead_dense(
        planted.path,
        tmp_path / "wide.safetensors",
        "--output-dir",
        out,
    )
    assert_one_line_error(result, "SAE d_in is 20", "width 33")
    assert not list(out.rglob("*.json"))


def test_file_without_activations_tensor(planted, tmp_path, cli):
    save_file({"acts": torch.zeros(4, 20)}, tmp_path / "wrong.safetensors")
    result = cli.dead_dense(
        planted.path,
        tmp_path / "wrong.safetensors",
        "--output-dir",
        tmp_path / "out",
    )
    assert_one_line_error(result, "no tensor named 'activations'")


def test_unknown_eval_suggests_close_names(planted, tmp_path, cli):
    result = cli(
        "run",
        "--eval",
        "dead_dens",
        "--sae-path",
        planted.path,
        "--activations",
        planted.activations,
    )
    assert_one_line_error(result, "unknown eval 'dead_dens'", "did you mean: dead_dense")


def test_sae_release_offline_points_to_sae_path(planted, tmp_path, cli):
    result = cli(
        "run",
        "--eval",
        "dead_dense",
        "--sae-release",
        "gpt2-small-res-jb",
        "--sae-id",
        "blocks.0.hook_resid_pre",
        "--activations",
        planted.activations,
        "--output-dir",
        tmp_path / "out",
    )
    assert_one_line_error(
        result, "gpt2-small-res-jb/blocks.0.hook_resid_pre", "hub cannot be reached", "--sae-path"
    )


def test_unknown_release_and_id_suggest(planted, cli):
    result = cli(
        "run",
        "--eval",
        "dead_dense",
        "--sae-release",
        "gpt2-small-res-j",
        "--sae-id",
        "x",
        "--activations",
        planted.activations,
    )
    assert_one_line_error(result, "unknown SAE-Lens release", "did you mean: gpt2-small-res-jb")
    result = cli(
        "run",
        "--eval",
        "dead_dense",
        "--sae-release",
        "gpt2-small-res-jb",
        "--sae-id",
        "blocks.0.hook_resid_pr",
        "--activations",
        planted.activations,
    )
    assert_one_line_error(result, "has no SAE 'blocks.0.hook_resid_pr'", "blocks.0.hook_resid_pre")


def test_nan_activations_name_count_and_place(planted, tmp_path, cli):
    acts = torch.eye(20)[torch.arange(100) % 20]
    acts[42, 7] = float("nan")
    write_activations(tmp_path / "nan.safetensors", acts)
    out = tmp_path / "out"
    result = cli.dead_dense(
        planted.path,
        tmp_path / "nan.safetensors",
        "--output-dir",
        out,
    )
    assert_one_line_error(result, "1 NaN and 0 Inf", "token 42, dimension 7")
    assert not list(out.rglob("*.json"))


def test_sae_folder_problems(planted, tmp_path, cli):
    folder = tmp_path / "broken"
    folder.mkdir()
    base = (
        "run",
        "--eval",
        "dead_dense",
        "--activations",
        planted.activations,
        "--output-dir",
        tmp_path / "o",
    )
    assert_one_line_error(cli(*base, "--sae-path", folder), "no cfg.json")
    (folder / "cfg.json").write_text((planted.path / "cfg.json").read_text())
    assert_one_line_error(cli(*base, "--sae-path", folder), "no sae_weights.safetensors")
    (folder / "sae_weights.safetensors").write_bytes(
        (planted.path / "sae_weights.safetensors").read_bytes()[:100]
    )
    assert_one_line_error(cli(*base, "--sae-path", folder), "cannot load SAE folder")
    (folder / "cfg.json").write_text('{"architecture": "standrd", "d_in": 20, "d_sae": 15}')
    assert_one_line_error(
        cli(*base, "--sae-path", folder), "unknown SAE architecture 'standrd'", "standard"
    )


def test_flag_problems(planted, tmp_path, cli):
    base = ("run", "--eval", "dead_dense", "--sae-path", planted.path)
    assert_one_line_error(
        cli(*base, "--activations", planted.activations, "--n-tokens", "0"),
        "--n-tokens",
        "positive",
    )
    assert_one_line_error(
        cli(*base, "--activations", planted.activations, "--model", "gpt2"), "one activation source"
    )
    assert_one_line_error(cli("run", "--eval", "dead_dense", "--sae-release", "r"), "come in pairs")
    assert_one_line_error(cli("run"), "--eval")
    assert_one_line_error(cli("frobnicate"), "invalid choice")
    assert_one_line_error(
        cli(*base, "--activations", planted.activations, "--dense-threshold", "1.5"),
        "--dense-threshold",
    )


def test_unwritable_output_dir(planted, tmp_path, cli):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    result = cli.dead_dense(
        planted.path,
        planted.activations,
        "--output-dir",
        blocker / "sub",
    )
    assert_one_line_error(result, "cannot create output folder")


def test_failure_leaves_earlier_results_untouched(planted, tmp_path, cli):
    """A later SAE failing keeps the finished result of the earlier one, byte for byte."""
    out = tmp_path / "out"
    assert (
        cli.dead_dense(
            planted.path,
            planted.activations,
            "--output-dir",
            out,
        ).code
        == 0
    )
    before = snapshot(out)
    wide = StandardSAE(StandardSAEConfig(d_in=21, d_sae=4))
    wide.save_model(tmp_path / "wide_sae")
    result = cli(
        "run",
        "--eval",
        "dead_dense",
        "--sae-path",
        planted.path,
        "--sae-path",
        tmp_path / "wide_sae",
        "--activations",
        planted.activations,
        "--output-dir",
        out,
    )
    assert result.code == 2 and "SAE d_in is 21" in result.err
    assert snapshot(out) == before
