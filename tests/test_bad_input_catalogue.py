"""The bad-input catalogue: every case exits 2 with one line on stderr naming the problem, no traceback, and
leaves the output folder exactly as it was (a finished result is already there, byte for byte unchanged)."""

from __future__ import annotations

import errno
import json
import os
import pickle
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from conftest import planted_standard_sae, write_activations


@dataclass
class Workspace:
    root: Path
    sae: Path  # planted StandardSAE, d_in 20
    acts: Path  # its activations
    out: Path  # holds a finished dead_dense result before every case

    def run(self, *extra, eval_name: str = "dead_dense", sae: Path | None = None, acts=None):
        return [
            "run", "--eval", eval_name, "--sae-path", str(sae or self.sae),
            "--activations", str(acts or self.acts), "--output-dir", str(self.out), "--device", "cpu", *extra,
        ]  # fmt: skip

    def file(self, name: str, acts: torch.Tensor, **tensors) -> Path:
        path = self.root / name
        save_file({"activations": acts, **tensors}, str(path), metadata=tensors.pop("_meta", None))
        return path


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    from sae_bench_amortization.cli import main

    root = tmp_path_factory.mktemp("catalogue")
    planted = planted_standard_sae(root)
    ws = Workspace(root, planted.path, planted.activations, root / "out")
    assert main(ws.run()) == 0
    return ws


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def _broken_sae(ws: Workspace, name: str, cfg: str | None, weights: bytes | None) -> Path:
    folder = ws.root / name
    folder.mkdir(exist_ok=True)
    if cfg is not None:
        (folder / "cfg.json").write_text(cfg)
    if weights is not None:
        (folder / "sae_weights.safetensors").write_bytes(weights)
    return folder


def _good_cfg(ws):
    return (ws.sae / "cfg.json").read_text()


def _good_weights(ws):
    return (ws.sae / "sae_weights.safetensors").read_bytes()


class Evil:
    """Unpickling this runs code (what weights_only loading must refuse)."""

    def __reduce__(self):
        return (os.system, ("echo pwned > /tmp/sae_bench_amortization_pwned",))


def _pickled_code(ws: Workspace) -> Path:
    folder = ws.root / "dl"
    folder.mkdir(exist_ok=True)
    (folder / "config.json").write_text(
        json.dumps(
            {"trainer": {"dict_class": "AutoEncoder", "activation_dim": 20, "dict_size": 15}}
        )
    )
    with open(folder / "ae.pt", "wb") as handle:
        pickle.dump({"encoder.weight": Evil()}, handle)
    return folder / "ae.pt"


def _nan(ws):
    acts = torch.zeros(50, 20)
    acts[7, 3] = float("nan")
    acts[9, 0] = float("nan")
    return ws.file("nan.safetensors", acts)


def _inf(ws):
    acts = torch.zeros(50, 20)
    acts[11, 5] = float("inf")
    return ws.file("inf.safetensors", acts)


def _baseline(ws, text: str) -> Path:
    path = ws.root / f"baseline_{abs(hash(text))}.json"
    path.write_text(text)
    return path


CASES = {
    # paths
    "missing SAE path": (lambda ws: ws.run(sae=ws.root / "nope"), ["SAE path not found"]),
    "missing activation file": (
        lambda ws: ws.run(acts=ws.root / "nope.safetensors"),
        ["activation file not found"],
    ),
    "activation path is a folder": (
        lambda ws: ws.run(acts=ws.root),
        ["activation file is not a file"],
    ),
    "missing text file": (
        lambda ws: [
            "run",
            "--eval",
            "dead_dense",
            "--sae-path",
            str(ws.sae),
            "--model",
            "tiny",
            "--text-file",
            str(ws.root / "none.txt"),
            "--output-dir",
            str(ws.out),
        ],
        ["text file not found"],
    ),  # fmt: skip
    # SAE folders and checkpoints
    "SAE folder without cfg.json": (
        lambda ws: ws.run(sae=_broken_sae(ws, "no_cfg", None, _good_weights(ws))),
        ["no cfg.json"],
    ),
    "SAE folder without weights": (
        lambda ws: ws.run(sae=_broken_sae(ws, "no_w", _good_cfg(ws), None)),
        ["no sae_weights.safetensors"],
    ),
    "truncated SAE weights": (
        lambda ws: ws.run(sae=_broken_sae(ws, "trunc", _good_cfg(ws), _good_weights(ws)[:200])),
        ["cannot load SAE folder"],
    ),
    "cfg.json not JSON": (
        lambda ws: ws.run(sae=_broken_sae(ws, "badjson", "{arch", _good_weights(ws))),
        ["cfg.json"],
    ),
    "unknown architecture": (
        lambda ws: ws.run(
            sae=_broken_sae(
                ws,
                "arch",
                '{"architecture": "standrd", "d_in": 20, "d_sae": 15}',
                _good_weights(ws),
            )
        ),
        ["unknown SAE architecture 'standrd'", "standard"],
    ),
    "pickled code in a .pt": (
        lambda ws: ws.run(sae=_pickled_code(ws)),
        ["refused to load", "could run code", "weights_only=True"],
    ),
    # activation files
    "corrupt activation file": (
        lambda ws: ws.run(acts=_write_bytes(ws.root / "junk.safetensors", os.urandom(300))),
        ["not a readable safetensors file"],
    ),
    "truncated activation file": (
        lambda ws: ws.run(
            acts=_write_bytes(ws.root / "cut.safetensors", ws.acts.read_bytes()[:-40])
        ),
        ["not a readable safetensors file"],
    ),
    "no 'activations' tensor": (
        lambda ws: ws.run(acts=_save(ws.root / "wrong.safetensors", {"acts": torch.zeros(4, 20)})),
        ["no tensor named 'activations'"],
    ),
    "empty activation file": (
        lambda ws: ws.run(acts=ws.file("empty.safetensors", torch.zeros(0, 20))),
        ["is empty"],
    ),
    "d_in mismatch SAE vs activations": (
        lambda ws: ws.run(
            "--sae-name",
            "not_yet_run",
            acts=write_activations(ws.root / "wide.safetensors", torch.zeros(10, 33)),
        ),
        ["SAE d_in is 20", "width 33"],
    ),
    "NaN in activations (count, first place)": (
        lambda ws: ws.run(acts=_nan(ws)),
        ["2 NaN and 0 Inf", "token 7, dimension 3"],
    ),
    "Inf in activations": (
        lambda ws: ws.run(acts=_inf(ws)),
        ["0 NaN and 1 Inf", "token 11, dimension 5"],
    ),
    "concepts rows != activation rows": (
        lambda ws: ws.run(
            acts=ws.file(
                "rows.safetensors",
                torch.zeros(10, 20),
                concepts=torch.zeros(9, 2, dtype=torch.bool),
            )
        ),
        ["concepts"],
    ),
    "concept_names length != C": (
        lambda ws: ws.run(
            acts=_save(
                ws.root / "names.safetensors",
                {
                    "activations": torch.zeros(10, 20),
                    "concepts": torch.zeros(10, 2, dtype=torch.bool),
                },
                {"concept_names": '["a"]'},
            )
        ),
        ["'concept_names' has 1 names but 'concepts' has 2 columns"],
    ),  # fmt: skip
    "concept eval without concepts": (
        lambda ws: ws.run(eval_name="splitting"),
        ["needs concept labels"],
    ),
    # evals, modes, flags
    "unknown eval": (
        lambda ws: ws.run(eval_name="dead_dens"),
        ["unknown eval 'dead_dens'", "dead_dense"],
    ),
    "unknown inference mode": (
        lambda ws: ws.run("--inference", "amortised"),
        ["unknown inference mode 'amortised'", "amortized"],
    ),
    "semi:-1": (
        lambda ws: ws.run("--inference", "semi:-1"),
        ["semi:T must be a non-negative integer"],
    ),
    "semi:abc": (
        lambda ws: ws.run("--inference", "semi:abc"),
        ["semi:T must be a non-negative integer", "'abc'"],
    ),
    "negative --l1-coefficient": (
        lambda ws: ws.run("--l1-coefficient", "-0.1"),
        ["--l1-coefficient must be a non-negative"],
    ),
    "NaN --l1-coefficient": (
        lambda ws: ws.run("--l1-coefficient", "nan"),
        ["--l1-coefficient must be a non-negative"],
    ),
    "--n-tokens 0": (lambda ws: ws.run("--n-tokens", "0"), ["--n-tokens", "positive"]),
    "--dense-threshold out of (0, 1)": (
        lambda ws: ws.run("--dense-threshold", "1.5"),
        ["--dense-threshold"],
    ),
    "--sae-release without --sae-id": (
        lambda ws: [
            "run",
            "--eval",
            "dead_dense",
            "--sae-release",
            "r",
            "--output-dir",
            str(ws.out),
        ],
        ["come in pairs"],
    ),
    "--sae-release offline": (
        lambda ws: [
            "run",
            "--eval",
            "dead_dense",
            "--sae-release",
            "gpt2-small-res-jb",
            "--sae-id",
            "blocks.0.hook_resid_pre",
            "--activations",
            str(ws.acts),
            "--output-dir",
            str(ws.out),
        ],
        ["hub cannot be reached", "--sae-path"],
    ),  # fmt: skip
    "two activation sources": (lambda ws: ws.run("--model", "gpt2"), ["one activation source"]),
    "--hf-module without --hf-model": (
        lambda ws: [
            "run",
            "--eval",
            "dead_dense",
            "--sae-path",
            str(ws.sae),
            "--hf-module",
            "x",
            "--output-dir",
            str(ws.out),
        ],
        ["--hf-module needs --hf-model"],
    ),
    "unknown command": (lambda ws: ["frobnicate"], ["invalid choice"]),
    "unwritable output dir": (
        lambda ws: [
            "run",
            "--eval",
            "dead_dense",
            "--sae-path",
            str(ws.sae),
            "--activations",
            str(ws.acts),
            "--output-dir",
            str(ws.out / "dead_dense" / next(iter(os.listdir(ws.out / "dead_dense"))) / "sub"),
        ],
        ["cannot create output folder"],
    ),  # fmt: skip
    "--loca-path missing": (
        lambda ws: ws.run("--loca-path", str(ws.root / "nope"), eval_name="amortization_gap"),
        ["--loca-path not found"],
    ),
    # regress
    "regress: baseline not JSON": (
        lambda ws: ["regress", "--results", str(ws.out), "--baseline", str(_baseline(ws, "{oops"))],
        ["is not readable JSON"],
    ),
    "regress: baseline of another format": (
        lambda ws: [
            "regress",
            "--results",
            str(ws.out),
            "--baseline",
            str(_baseline(ws, '{"results": {}}')),
        ],
        ["is not a sae-bench-amortization-baseline file"],
    ),
    "regress: SAE missing from results": (
        lambda ws: [
            "regress",
            "--results",
            str(ws.out),
            "--baseline",
            str(
                _baseline(
                    ws,
                    json.dumps(
                        {
                            "format": "sae-bench-amortization-baseline",
                            "version": 1,
                            "results": {"gone": {"dead_dense": {"amortized": {"dead_rate": 0.1}}}},
                        }
                    ),
                )
            ),
        ],
        ["SAE gone is in the baseline but has no results"],
    ),  # fmt: skip
    "regress: missing baseline file": (
        lambda ws: [
            "regress",
            "--results",
            str(ws.out),
            "--baseline",
            str(ws.root / "absent.json"),
        ],
        ["baseline not found"],
    ),
    # LocA training
    "train-loca: bad --group-k": (
        lambda ws: [
            "train-loca",
            "--sae-path",
            str(ws.sae),
            "--activations",
            str(ws.acts),
            "--group-k",
            "6,x",
            "--out",
            str(ws.out / "loca"),
        ],
        ["--group-k must be comma-separated positive integers"],
    ),  # fmt: skip
}


def _write_bytes(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _save(path: Path, tensors: dict, metadata: dict | None = None) -> Path:
    save_file(tensors, str(path), metadata=metadata)
    return path


def test_the_catalogue_has_at_least_30_cases():
    assert len(CASES) >= 30


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input(case, workspace, cli):
    make_args, fragments = CASES[case]
    args = make_args(workspace)
    before = _snapshot(workspace.out)
    result = cli(*args)
    assert result.code == 2, (result.code, result.err)
    lines = result.err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.err, result.err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    assert _snapshot(workspace.out) == before
    assert not Path("/tmp/sae_bench_amortization_pwned").exists()


def test_a_full_disk_is_one_line_and_loses_nothing(workspace, cli, monkeypatch, tmp_path):
    """ENOSPC while writing a result (simulated at fsync): one line, no partial or temporary file left."""
    out = tmp_path / "out"
    assert cli(*workspace.run("--output-dir", str(out))).code == 0  # a finished result to keep
    before = _snapshot(out)

    def full(_fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", full)
    result = cli(*workspace.run("--output-dir", str(out), eval_name="amortization_gap"))
    assert result.code == 2 and len(result.err.strip().splitlines()) == 1, result.err
    assert "No space left on device" in result.err and "cannot write" in result.err
    assert _snapshot(out) == before
