"""train-loca never touches what it reads, replaces only its own earlier output, resumes only the same run,
refuses an insane base SAE, and records its base SAE in the LocA-SAE's cfg.json (issue 26)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from sae_lens import SAE
from sae_lens.saes.standard_sae import StandardSAE, StandardSAEConfig
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from sae_bench_amortization.digest import tensors_digest
from sae_bench_amortization.sources.saes import spec_from_path

from conftest import planted_standard_sae, write_activations

FAST = ["--n-tokens", "400", "--grouping-tokens", "200", "--batch-size", "64",
        "--checkpoint-every", "200", "--device", "cpu"]  # fmt: skip


@pytest.fixture
def ws(tmp_path):
    """A planted SAE (d_in 20, d_sae 15), its 400-token activation file, and a LocA run's argv."""
    planted = planted_standard_sae(tmp_path, n_tokens=400)

    def argv(*extra, sae=planted.path, acts=planted.activations, group_k="3,1", out=None):
        return ["train-loca", "--sae-path", sae, "--activations", acts, "--groups", "2",
                "--group-k", group_k, *FAST, *extra, "--out", out or tmp_path / "lk"]  # fmt: skip

    return planted, argv, tmp_path


def snapshot(root: Path) -> dict[str, bytes | None]:
    """Every file (bytes) and folder (None) under ``root``."""
    return {
        str(p.relative_to(root)): (p.read_bytes() if p.is_file() else None)
        for p in sorted(root.rglob("*"))
    }


def refused(cli, root: Path, argv, fragment: str) -> str:
    """Run argv: exit 2, one stderr line holding ``fragment``, nothing under ``root`` changed."""
    before = snapshot(root)
    result = cli(*argv)
    lines = result.err.strip().splitlines()
    assert result.code == 2 and len(lines) == 1, result.err
    assert fragment in lines[0], lines[0]
    assert snapshot(root) == before
    return lines[0]


def other_sae(folder: Path, d_sae: int, seed: int = 1) -> Path:
    torch.manual_seed(seed)
    sae = StandardSAE(StandardSAEConfig(d_in=20, d_sae=d_sae))
    with torch.no_grad():
        sae.W_enc.normal_()
        sae.W_dec.copy_(torch.nn.functional.normalize(torch.randn(d_sae, 20), dim=1))
    sae.save_model(folder)
    return folder


# ------------------------------------------------------------------------------ inputs are never replaced


def test_out_that_is_the_base_sae_is_refused_and_the_sae_survives(ws, cli):
    planted, argv, root = ws
    line = refused(cli, root, argv("--overwrite", out=planted.path), "--out")
    assert line == "saebench: error: " + (
        f"--out {planted.path} is --sae-path {planted.path}, which this command reads: write somewhere "
        "else (nothing a command reads is ever replaced)"
    )
    assert (planted.path / "cfg.json").is_file() and (
        planted.path / "sae_weights.safetensors"
    ).is_file()


def test_out_inside_the_sae_folder_or_holding_the_activations_is_refused(ws, cli):
    planted, argv, root = ws
    refused(cli, root, argv(out=planted.path / "loca"), "lies inside --sae-path")
    data = root / "data"
    data.mkdir()
    acts = shutil.copy(planted.activations, data / "a.safetensors")
    refused(cli, root, argv("--overwrite", acts=acts, out=data), "contains --activations")
    refused(cli, root, argv("--overwrite", acts=acts, out=acts), "is --activations")


def test_a_foreign_folder_is_refused_even_with_overwrite(ws, cli):
    planted, argv, root = ws
    mine = root / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("mine")
    (mine / "cfg.json").write_text("{}")
    refused(cli, root, argv(out=mine), "--overwrite replaces only train-loca's own output")
    line = refused(cli, root, argv("--overwrite", out=mine), "holds files train-loca did not write")
    assert "(notes.txt)" in line
    # another SAE folder: only names train-loca also writes, but no training in it
    sae_copy = shutil.copytree(planted.path, root / "sae_copy")
    refused(cli, root, argv("--overwrite", out=sae_copy), "is not an output of train-loca")


def test_an_earlier_own_output_is_replaced_with_overwrite(ws, cli):
    planted, argv, root = ws
    assert cli(*argv()).code == 0
    refused(cli, root, argv(group_k="2,2"), "--group-k 3,1 (now 2,2)")
    result = cli(*argv("--overwrite", group_k="2,2"))
    assert result.code == 0, result.err
    assert "resuming" not in result.out
    cfg = json.loads((root / "lk" / "cfg.json").read_text())
    assert cfg["group_k"] == [2, 2]
    state = root / "lk" / "checkpoints" / "tokens_400" / "trainer_state.safetensors"
    with safe_open(str(state), framework="pt") as handle:
        assert json.loads(handle.metadata()["run"])["group_k"] == [2, 2]


# ------------------------------------------------------------------------------ bad inputs before any work


@pytest.mark.parametrize(
    ("extra", "fragment"),
    [
        (["--lr", "-1"], "--lr must be positive, got -1.0"),
        (["--lr", "nan"], "--lr must be positive, got nan"),
        (["--aux-loss-coefficient", "-1"], "--aux-loss-coefficient must be >= 0"),
        (["--groups", "0"], "argument --groups: expected a positive integer, got '0'"),
        (["--groups", "3"], "--group-k has 2 budgets but --groups is 3"),
        (["--group-k", "3,x"], "--group-k must be comma-separated positive integers, got '3,x'"),
        (["--group-k", "3,0"], "--group-k must be comma-separated positive integers, got '3,0'"),
        (["--grouping-tokens", "0"], "argument --grouping-tokens: expected a positive integer"),
        (
            ["--groups", "16", "--group-k", ",".join(["1"] * 16)],
            "--groups 16 exceeds the SAE's d_sae 15",
        ),
        (["--skip-tokens", "400"], "--skip-tokens 400 skips every token"),
        (["--sae-release", "r"], "--sae-release and --sae-id come together"),
    ],
)
def test_bad_settings_are_one_line_before_any_work(ws, cli, extra, fragment):
    _, argv, root = ws
    refused(cli, root, argv(*extra), fragment)
    assert not (root / "lk").exists()


def test_activations_of_another_width_are_one_line(ws, cli):
    _, argv, root = ws
    acts = write_activations(root / "wide.safetensors", torch.randn(50, 24))
    refused(cli, root, argv(acts=acts), "activations have d_in 24 but the SAE has d_in 20")


def test_a_base_sae_with_nan_is_refused_before_any_write(ws, cli):
    planted, argv, root = ws
    weights = load_file(str(planted.path / "sae_weights.safetensors"))
    weights["W_enc"][3, 4] = float("nan")
    save_file(weights, str(planted.path / "sae_weights.safetensors"))
    refused(cli, root, argv(), f"SAE {planted.path}: W_enc holds 1 NaN and 0 Inf values")
    assert not (root / "lk").exists()


# ------------------------------------------------------------------------------ resume only the same run


def test_resume_with_anything_else_names_the_difference(ws, cli):
    planted, argv, root = ws
    assert cli(*argv()).code == 0
    more = ["--n-tokens", "600"]  # a longer run would resume: every refusal is about the difference
    refused(cli, root, argv(*more, group_k="2,2"), "was trained with --group-k 3,1 (now 2,2): resume "
            "with the same inputs, or use another --out")  # fmt: skip
    refused(
        cli,
        root,
        argv(*more, "--group-order", "avar_asc"),
        "--group-order avar_desc (now avar_asc)",
    )
    refused(
        cli, root, argv(*more, "--budget-scaling", "match_k"), "--budget-scaling none (now match_k)"
    )
    refused(cli, root, argv(*more, "--grouping-tokens", "300"), "--grouping-tokens 200 (now 300)")
    refused(cli, root, argv(*more, "--seed", "3"), "--seed 0 (now 3)")
    refused(cli, root, argv(*more, "--groups", "3", group_k="3,1,1"), "--groups 2 (now 3); with --group-k 3,1 (now 3,1,1)")  # fmt: skip
    other_acts = write_activations(
        root / "b.safetensors", 3.0 * torch.eye(20)[torch.arange(400) % 20]
    )
    line = refused(cli, root, argv(*more, acts=other_acts), "was trained on activation file")
    assert str(planted.activations) in line and f"(now activation file {other_acts}" in line
    wide = other_sae(root / "wide_sae", d_sae=30)
    line = refused(cli, root, argv(*more, sae=wide), "from base SAE")
    assert (
        f"{planted.path} (standard, d_sae 15" in line and f"(now {wide} (standard, d_sae 30" in line
    )
    # the same file name with other contents
    saved = planted.activations.read_bytes()
    write_activations(planted.activations, 2.5 * torch.eye(20)[torch.arange(400) % 20])
    refused(cli, root, argv(*more), "with other contents (activation_file_sha256)")
    planted.activations.write_bytes(saved)
    refused(
        cli,
        root,
        argv("--n-tokens", "300"),
        "already trained on 400 tokens, more than --n-tokens 300",
    )


def test_an_exact_resume_and_an_extension_still_work(ws, cli):
    planted, argv, root = ws
    assert cli(*argv()).code == 0
    first = (root / "lk" / "sae_weights.safetensors").read_bytes()
    again = cli(*argv())
    assert again.code == 0 and "already trained on 400 tokens" in again.out, again.err
    assert (root / "lk" / "sae_weights.safetensors").read_bytes() == first
    moved = shutil.copytree(
        planted.path, root / "moved_sae"
    )  # same weights elsewhere: the same run
    longer = cli(*argv("--n-tokens", "600", sae=moved))
    assert longer.code == 0 and "resuming from" in longer.out, longer.err
    log = (root / "lk" / "training_log.csv").read_text().splitlines()
    assert log[-1].startswith("600,")


def test_a_checkpoint_without_a_record_is_refused(ws, cli):
    _, argv, root = ws
    assert cli(*argv()).code == 0
    state = root / "lk" / "checkpoints" / "tokens_400" / "trainer_state.safetensors"
    with safe_open(str(state), framework="pt") as handle:
        meta = {k: v for k, v in handle.metadata().items() if k != "run"}
    save_file(load_file(str(state)), str(state), metadata=meta)  # as the earlier version wrote it
    refused(cli, root, argv("--n-tokens", "600"), "did not record its base SAE and inputs")
    assert cli(*argv("--n-tokens", "600", "--overwrite")).code == 0


# ------------------------------------------------------------------------------ what the output records


def test_the_loca_cfg_records_its_base_sae_and_keeps_it_through_load_from_disk(ws, cli):
    planted, argv, root = ws
    result = cli(*argv())
    assert result.code == 0, result.err
    cfg = json.loads((root / "lk" / "cfg.json").read_text())
    base = spec_from_path(planted.path).load("cpu", "float32")
    assert cfg["base_sae"] == {
        "weights_sha256": tensors_digest(base.state_dict()),
        "d_sae": 15,
        "d_in": 20,
        "architecture": "standard",
        "path": str(planted.path.resolve()),
    }
    loca = SAE.load_from_disk(root / "lk")
    assert loca.cfg.base_sae == cfg["base_sae"]
    loca.save_model(root / "again")
    assert json.loads((root / "again" / "cfg.json").read_text())["base_sae"] == cfg["base_sae"]


def test_n_tokens_beyond_the_file_says_how_many_passes_training_makes(ws, cli):
    _, argv, root = ws
    result = cli(*argv("--n-tokens", "2000"))
    assert result.code == 0, result.err
    assert "reading its" not in result.err
    assert "note: --n-tokens 2000 exceeds the 400 tokens of activation file" in result.err
    assert "training makes 5 passes over them" in result.err
    log = (root / "lk" / "training_log.csv").read_text().splitlines()
    assert log[-1].startswith("2000,")
