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

    def train(self, *extra) -> list[str]:
        """``saebench train`` of a TopK SAE on the planted activations (``extra``: width and k)."""
        return ["train", "--activations", str(self.acts), "--architecture", "topk", "--n-tokens", "100",
                "--out", str(self.out / "trained"), *extra]  # fmt: skip

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
        [
            "hub cannot be reached",
            "hf download jbloom/GPT2-Small-SAEs-Reformatted --include 'blocks.0.hook_resid_pre/*'",
            "--sae-path",
        ],
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
    # SAEs not fit to evaluate (checked for the whole command before the first write)
    "NaN in the decoder": (
        lambda ws: ws.run(
            sae=_sae_with(ws, "nan_dec", W_dec=lambda t: _nan_at(t, (2, 3), float("nan")))
        ),
        ["SAE local_nan_dec: W_dec holds 1 NaN and 0 Inf values"],
    ),
    "Inf in the encoder bias": (
        lambda ws: ws.run(
            sae=_sae_with(ws, "inf_b", b_enc=lambda t: _nan_at(t, (0,), float("inf")))
        ),
        ["b_enc holds 0 NaN and 1 Inf values"],
    ),
    "all-zero decoder": (
        lambda ws: ws.run(sae=_sae_with(ws, "zero_dec", W_dec=torch.zeros_like)),
        ["its decoder W_dec is all zeros"],
    ),
    "k > d_sae in cfg.json": (
        lambda ws: ws.run(sae=_sae_with(ws, "k_big", _cfg_with(ws, architecture="topk", k=100))),
        ["k must satisfy 0 < k <= d_sae (15), got 100"],
    ),
    "k = 0 in cfg.json": (
        lambda ws: ws.run(sae=_sae_with(ws, "k_zero", _cfg_with(ws, architecture="topk", k=0))),
        ["k must satisfy 0 < k <= d_sae (15), got 0"],
    ),
    "cfg.json d_sae disagrees with the weights": (
        lambda ws: ws.run(sae=_sae_with(ws, "wide_cfg", _cfg_with(ws, d_sae=64))),
        [
            "says d_sae 64 but W_enc in sae_weights.safetensors has shape [20, 15] (expected [20, 64])"
        ],
    ),
    "cfg.json d_in disagrees with the weights": (
        lambda ws: ws.run(sae=_sae_with(ws, "narrow_cfg", _cfg_with(ws, d_in=8))),
        ["says d_in 8 but W_enc", "has shape [20, 15] (expected [8, 15])"],
    ),
    "cfg.json d_sae not an integer": (
        lambda ws: ws.run(sae=_sae_with(ws, "str_cfg", _cfg_with(ws, d_sae="15"))),
        ["d_sae must be a positive integer, got '15'"],
    ),
    "cfg.json is a list": (
        lambda ws: ws.run(sae=_broken_sae(ws, "list_cfg", "[1, 2]", _good_weights(ws))),
        ["cfg.json: expected a JSON object"],
    ),
    "dictionary_learning weights of another width": (
        lambda ws: ws.run(sae=_dictionary_learning_mismatch(ws)),
        [
            "weights do not match config.json",
            "W_dec has shape [16, 20] in the weights but the config gives [15, 20]",
        ],
    ),
    "the same SAE selected twice": (
        lambda ws: ws.run("--sae-path", str(ws.sae)),
        ["local_planted_sae is selected twice"],
    ),
    "two SAEs given one --sae-name": (
        lambda ws: ws.run(
            "--sae-path", str(_sae_with(ws, "other")), "--sae-name", "same", "--sae-name", "same"
        ),
        ["local_same is selected twice"],
    ),
    "SAE weights without W_dec": (
        lambda ws: ws.run(
            sae=_broken_sae(ws, "no_wdec", _good_cfg(ws), _weights_without(ws, "W_dec"))
        ),
        ["the weights lack", "W_dec"],
    ),
    "train: --k 0": (
        lambda ws: ws.train("--d-sae", "64", "--k", "0"),
        ["argument --k: expected a positive integer, got '0'"],
    ),
    "train: --k above --d-sae": (
        lambda ws: ws.train("--d-sae", "64", "--k", "100"),
        ["--k must satisfy 0 < k <= --d-sae (64), got 100"],
    ),
    # stale results and requirements of later evals
    "a stored result made with other inputs": (
        lambda ws: ws.run("--dense-threshold", "0.3"),
        ["made with other inputs (config.dense_threshold: 0.1 → 0.3)", "--force-rerun"],
    ),
    "a later eval's requirement, before the first write": (
        lambda ws: [
            *ws.run(eval_name="amortization_gap"),
            "--eval",
            "splitting",
            "--eval",
            "dead_dense",
        ],
        ["splitting needs concept labels"],
    ),
    "semi:T above the bound without --allow-many-steps": (
        lambda ws: ws.run("--inference", "semi:100000"),
        ["semi:100000 runs 100000 solver steps", "--allow-many-steps to run more than 1000"],
    ),
    "all-zero activations and a λ to calibrate": (
        lambda ws: ws.run(
            eval_name="amortization_gap", acts=ws.file("zeros.safetensors", torch.zeros(64, 20))
        ),
        ["cannot calibrate λ", "pass --l1-coefficient"],
    ),
    # concept labels
    "duplicate concept names": (
        lambda ws: ws.run(
            eval_name="splitting",
            acts=_labelled(
                ws, "dup.safetensors", torch.zeros(100, 3, dtype=torch.uint8), ["a", "b", "a"]
            ),
        ),
        ["'concept_names' repeats 'a'"],
    ),  # fmt: skip
    "a concept label of 2": (
        lambda ws: ws.run(
            eval_name="splitting",
            acts=_labelled(
                ws,
                "two.safetensors",
                _nan_at(torch.zeros(9000, 2, dtype=torch.uint8), (8500, 1), 2),
                ["a", "b"],
            ),
        ),
        ["concept labels must be 0 or 1, found 2 at token 8500, concept 'b'"],
    ),  # fmt: skip
    "float concept labels": (
        lambda ws: ws.run(
            eval_name="splitting",
            acts=_labelled(ws, "float.safetensors", torch.zeros(100, 1), ["a"]),
        ),
        ["'concepts' has dtype F32; expected bool or integer"],
    ),  # fmt: skip
    "a negative concept label": (
        lambda ws: ws.run(
            eval_name="splitting",
            acts=_labelled(
                ws,
                "neg.safetensors",
                _nan_at(torch.zeros(100, 1, dtype=torch.int64), (7, 0), -1),
                ["a"],
            ),
        ),
        ["found -1 at token 7"],
    ),  # fmt: skip
    # amortization_gap's LocA pairing
    "--loca-path to an SAE that is not a LocA-SAE": (
        lambda ws: ws.run("--loca-path", str(ws.sae), eval_name="amortization_gap"),
        ["holds a 'standard' SAE, not a LocA-SAE"],
    ),
    "more --loca-path than SAEs": (
        lambda ws: ws.run(
            "--loca-path", str(ws.sae), "--loca-path", str(ws.sae), eval_name="amortization_gap"
        ),
        ["--loca-path pairs with the SAEs in order: got 2 for 1 SAEs"],
    ),
    # output folders
    "--output-dir is a file": (
        lambda ws: ws.run("--output-dir", str(ws.acts)),
        ["is not a folder"],
    ),
    "--output-dir below a file": (
        lambda ws: ws.run("--output-dir", str(ws.acts / "deeper")),
        ["is not a folder"],
    ),
    "regress: negative --rtol": (
        lambda ws: [
            "regress",
            "--results",
            str(ws.out),
            "--baseline",
            str(_baseline(ws, "{}")),
            "--rtol",
            "-1",
        ],
        ["--rtol and --atol must be non-negative"],
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


def _cfg_with(ws: Workspace, **changes) -> str:
    return json.dumps({**json.loads(_good_cfg(ws)), **changes})


def _weights_with(ws: Workspace, **changes) -> bytes:
    """The planted SAE's weights with tensors changed: name → function of the tensor."""
    from safetensors.torch import load_file, save

    weights = load_file(str(ws.sae / "sae_weights.safetensors"))
    return save(
        {name: changes.get(name, lambda t: t)(t).contiguous() for name, t in weights.items()}
    )


def _sae_with(ws: Workspace, name: str, cfg: str | None = None, **weights) -> Path:
    return _broken_sae(ws, name, cfg or _good_cfg(ws), _weights_with(ws, **weights))


def _weights_without(ws: Workspace, name: str) -> bytes:
    from safetensors.torch import load_file, save

    weights = load_file(str(ws.sae / "sae_weights.safetensors"))
    return save({key: tensor for key, tensor in weights.items() if key != name})


def _nan_at(tensor: torch.Tensor, where: tuple, value: float) -> torch.Tensor:
    tensor = tensor.clone()
    tensor[where] = value
    return tensor


def _labelled(ws: Workspace, name: str, concepts: torch.Tensor, names: list[str]) -> Path:
    acts = 2.0 * torch.eye(20)[torch.arange(concepts.shape[0]) % 20]
    return _save(ws.root / name, {"activations": acts, "concepts": concepts},
                 {"concept_names": json.dumps(names)})  # fmt: skip


def _dictionary_learning_mismatch(ws: Workspace) -> Path:
    folder = ws.root / "dl_mismatch"
    folder.mkdir(exist_ok=True)
    config = {"trainer": {"dict_class": "AutoEncoder", "activation_dim": 20, "dict_size": 15, "layer": 3,
                          "lm_name": "tiny"}}  # fmt: skip
    (folder / "config.json").write_text(json.dumps(config))
    weights = {"encoder.weight": torch.zeros(16, 20), "encoder.bias": torch.zeros(16),
               "decoder.weight": torch.ones(20, 16), "bias": torch.zeros(20)}  # fmt: skip
    torch.save(weights, folder / "ae.pt")
    return folder / "ae.pt"


def _write_bytes(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _save(path: Path, tensors: dict, metadata: dict | None = None) -> Path:
    save_file(tensors, str(path), metadata=metadata)
    return path


def _folder(ws: Workspace, name: str, **files: str) -> Path:
    """A folder under the workspace holding ``files`` (name → text)."""
    folder = ws.root / name
    folder.mkdir(exist_ok=True)
    for file_name, text in files.items():
        (folder / file_name).write_text(text)
    return folder


def _acts_in(ws: Workspace, folder: str) -> Path:
    """A copy of the planted activations at ``<root>/<folder>/dead_dense/acts.safetensors``."""
    target = ws.root / folder / "dead_dense" / "acts.safetensors"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(ws.acts.read_bytes())
    return target


def _copy_sae(ws: Workspace, name: str) -> Path:
    return _broken_sae(ws, name, _good_cfg(ws), _good_weights(ws))


def _extra_tensor(ws: Workspace) -> bytes:
    from safetensors.torch import load_file, save

    weights = load_file(str(ws.sae / "sae_weights.safetensors"))
    return save({**weights, "stray_tensor": torch.zeros(3)})


def _synth(ws: Workspace, *extra: str) -> list[str]:
    return ["synth", "--n-tokens", "100", *extra]


def _train_loca(ws: Workspace, *extra: str, sae: Path | None = None) -> list[str]:
    return ["train-loca", "--sae-path", str(sae or ws.sae), "--activations", str(ws.acts), "--groups", "2",
            "--group-k", "2,1", "--n-tokens", "200", "--grouping-tokens", "200", *extra]  # fmt: skip


def _trained_loca(ws: Workspace, name: str) -> Path:
    """A LocA-SAE fine-tuned from the planted SAE (200 tokens), made once per workspace."""
    from sae_bench_amortization.cli import main

    out = ws.root / name
    if not (out / "cfg.json").is_file():
        assert main(_train_loca(ws, "--out", str(out))) == 0
    return out


def _wider_sae(ws: Workspace) -> Path:
    from sae_lens import StandardSAE, StandardSAEConfig

    path = ws.root / "wider"
    StandardSAE(StandardSAEConfig(d_in=20, d_sae=30)).save_model(path)
    return path


def _earlier_dynamics(ws: Workspace) -> Path:
    """An output folder holding an earlier ``dynamics/dynamics.csv``."""
    (ws.root / "dyn_done" / "dynamics").mkdir(parents=True, exist_ok=True)
    (ws.root / "dyn_done" / "dynamics" / "dynamics.csv").write_text("mine")
    return ws.root / "dyn_done"


def _dynamics(ws: Workspace, *saes: Path, out: Path) -> list[str]:
    paths = [arg for sae in saes for arg in ("--sae-path", str(sae))]
    return ["dynamics", "--eval", "amortization_gap", *paths, "--activations", str(ws.acts), "--output-dir",
            str(out), "--device", "cpu"]  # fmt: skip


# Nothing a command reads is ever replaced, --overwrite replaces only a command's own output, and every
# user-reachable error is caught before the work.
CASES.update(
    {
        "run: --output-dir inside the SAE folder": (
            lambda ws: ws.run("--output-dir", str(ws.sae)),
            ["--output-dir", "lies inside --sae-path", "which this command reads"],
        ),
        "run: an eval folder of --output-dir holds the activation file": (
            lambda ws: ws.run("--output-dir", str(ws.root / "held"), acts=_acts_in(ws, "held")),
            ["dead_dense contains --activations", "which this command reads"],
        ),
        "run: --output-dir inside the --loca-path SAE": (
            lambda ws: ws.run(
                "--loca-path",
                str(_copy_sae(ws, "loca_like")),
                "--output-dir",
                str(ws.root / "loca_like"),
                eval_name="amortization_gap",
            ),  # fmt: skip
            ["lies inside --loca-path"],
        ),
        "train: --out is a pretrained SAE, --overwrite": (
            lambda ws: ws.train(
                "--d-sae", "32", "--k", "2", "--overwrite", "--out", str(_copy_sae(ws, "theirs"))
            ),
            ["is not an output of train", "--overwrite replaces only train's own output"],
        ),  # fmt: skip
        "train: --out holds the activation file, --overwrite": (
            lambda ws: ws.train("--d-sae", "32", "--k", "2", "--overwrite", "--out", str(ws.root)),
            ["contains --activations"],
        ),
        "train: --out below the activation file": (
            lambda ws: ws.train("--d-sae", "32", "--k", "2", "--out", str(ws.acts / "sae")),
            ["lies inside --activations"],
        ),
        "train: --out below another file": (
            lambda ws: ws.train(
                "--d-sae",
                "32",
                "--k",
                "2",
                "--out",
                str(_write_bytes(ws.root / "f.txt", b"x") / "sae"),
            ),
            ["cannot create --out", "is not a folder"],
        ),  # fmt: skip
        "train: --lr -1": (
            lambda ws: ws.train("--d-sae", "32", "--k", "2", "--lr", "-1"),
            ["--lr must be a positive number, got -1.0"],
        ),
        "train: --lr nan": (
            lambda ws: ws.train("--d-sae", "32", "--k", "2", "--lr", "nan"),
            ["--lr must be a positive number, got nan"],
        ),
        "train: a folder of other files, --overwrite": (
            lambda ws: ws.train(
                "--d-sae",
                "32",
                "--k",
                "2",
                "--overwrite",
                "--out",
                str(_folder(ws, "notes", **{"notes.txt": "mine"})),
            ),  # fmt: skip
            ["holds files train did not write (notes.txt)"],
        ),
        "train: an existing --out without --overwrite": (
            lambda ws: ws.train(
                "--d-sae", "32", "--k", "2", "--out", str(_folder(ws, "full", a="1"))
            ),
            ["exists: pass --overwrite to replace it"],
        ),
        "synth: --reference-saes is a user's SAE folder, --overwrite": (
            lambda ws: _synth(
                ws, "--reference-saes", str(_copy_sae(ws, "their_refs")), "--overwrite"
            ),
            ["holds files synth did not write (cfg.json, sae_weights.safetensors)"],
        ),
        "synth: --out is the --synthetic-model file": (
            lambda ws: _synth(
                ws,
                "--out",
                str(ws.root / "model.json"),
                "--synthetic-model",
                str(_write_bytes(ws.root / "model.json", b"{}")),
                "--overwrite",
            ),  # fmt: skip
            ["--out", "is --synthetic-model"],
        ),
        "synth: --out below a file": (
            lambda ws: _synth(ws, "--out", str(ws.acts / "w.safetensors")),
            ["cannot create --out", "is not a folder"],
        ),
        "activations: --out is the --text-file": (
            lambda ws: [
                "activations",
                "--hf-model",
                "all-MiniLM-L6-v2",
                "--hf-module",
                "encoder.layer.0",
                "--text-file",
                str(_write_bytes(ws.root / "text.txt", b"Some words.")),
                "--out",
                str(ws.root / "text.txt"),
                "--overwrite",
            ],  # fmt: skip
            ["--out", "is --text-file"],
        ),
        "regress: --write-baseline over a result it reads": (
            lambda ws: [
                "regress",
                "--results",
                str(ws.out),
                "--overwrite",
                "--write-baseline",
                str(next((ws.out / "dead_dense").glob("*_eval_results.json"))),
            ],  # fmt: skip
            ["--write-baseline", "is --results"],
        ),
        "cfg.json k not an integer": (
            lambda ws: ws.run(
                sae=_sae_with(ws, "k_float", _cfg_with(ws, architecture="topk", k=2.5))
            ),
            ["cfg.json: k must be an integer, got 2.5"],
        ),
        "cfg.json k a string": (
            lambda ws: ws.run(
                sae=_sae_with(ws, "k_str", _cfg_with(ws, architecture="topk", k="3"))
            ),
            ["cfg.json: k must be an integer, got '3'"],
        ),
        "train-loca: --out is the --sae-path, --overwrite": (
            lambda ws: _train_loca(
                ws, "--out", str(_copy_sae(ws, "base")), "--overwrite", sae=ws.root / "base"
            ),  # fmt: skip
            ["--out", "is --sae-path", "which this command reads"],
        ),
        "train-loca: --out holds its inputs, --overwrite": (
            lambda ws: _train_loca(ws, "--out", str(ws.root), "--overwrite"),
            ["contains --sae-path"],  # the first input it holds
        ),
        "train-loca: a folder of other files, --overwrite": (
            lambda ws: _train_loca(
                ws, "--overwrite", "--out", str(_folder(ws, "loca_notes", **{"notes.txt": "mine"}))
            ),  # fmt: skip
            ["holds files train-loca did not write (notes.txt)"],
        ),
        "train-loca: NaN in the base SAE's W_enc": (
            lambda ws: _train_loca(
                ws,
                "--out",
                str(ws.root / "loca_nan"),
                sae=_sae_with(ws, "nan_enc", W_enc=lambda t: _nan_at(t, (0, 0), float("nan"))),
            ),  # fmt: skip
            ["W_enc holds 1 NaN and 0 Inf values"],
        ),
        "train-loca: --lr -1": (
            lambda ws: _train_loca(ws, "--out", str(ws.root / "loca_lr"), "--lr", "-1"),
            ["--lr must be positive, got -1.0"],
        ),
        "train-loca: resume with another --group-k": (
            lambda ws: _train_loca(
                ws,
                "--out",
                str(_trained_loca(ws, "loca_done")),
                "--n-tokens",
                "400",
                "--group-k",
                "1,1",
            ),  # fmt: skip
            ["was trained with --group-k 2,1 (now 1,1)", "resume with the same inputs"],
        ),
        "train-loca: resume from another base SAE": (
            lambda ws: _train_loca(
                ws,
                "--out",
                str(_trained_loca(ws, "loca_done")),
                "--n-tokens",
                "400",
                sae=_sae_with(ws, "other_base", W_dec=lambda t: 2 * t),
            ),  # fmt: skip
            ["from base SAE"],
        ),
        "--loca-path fine-tuned from another SAE": (
            lambda ws: ws.run(
                "--loca-path",
                str(_trained_loca(ws, "loca_done")),
                eval_name="amortization_gap",
                sae=_sae_with(ws, "not_the_base", W_dec=lambda t: 2 * t),
            ),  # fmt: skip
            ["--loca-path", "was trained from another SAE (base sha256"],
        ),
        "dynamics: checkpoints of different widths": (
            lambda ws: _dynamics(ws, ws.sae, _wider_sae(ws), out=ws.root / "dyn_widths"),
            ["widths differ"],
        ),
        "dynamics: an earlier dynamics.csv without --overwrite": (
            lambda ws: _dynamics(ws, ws.sae, out=_earlier_dynamics(ws)),
            ["dynamics.csv exists: pass --overwrite"],
        ),
        "compare: --out is the results folder": (
            lambda ws: ["compare", str(ws.out), "--out", str(ws.out)],
            ["--out", "contains RESULTS_DIR"],
        ),
        "report: a results folder without result files": (
            lambda ws: ["report", str(_empty_folder(ws)), "--out", str(ws.root / "page.html")],
            ["no result files"],
        ),
        "report: --out is a folder": (
            lambda ws: ["report", str(ws.out), "--out", str(_empty_folder(ws))],
            ["is a folder"],
        ),
        "report: --baseline that does not exist": (
            lambda ws: [
                "report",
                str(ws.out),
                "--out",
                str(ws.root / "page_b.html"),
                "--baseline",
                str(ws.root / "no_baseline.json"),
            ],  # fmt: skip
            ["baseline not found"],
        ),
        "run: --device that torch does not know": (
            lambda ws: ws.run("--device", "tpu"),
            ["--device 'tpu' is not a torch device"],
        ),
        "train: --device that torch does not know": (
            lambda ws: ws.train("--d-sae", "32", "--k", "2", "--device", "tpu"),
            ["--device 'tpu' is not a torch device"],
        ),
        "SAE weights with a tensor the architecture lacks": (
            lambda ws: ws.run(sae=_broken_sae(ws, "stray", _good_cfg(ws), _extra_tensor(ws))),
            ["the weights hold tensors this architecture does not have", "stray_tensor"],
        ),
    }
)


def _empty_folder(ws) -> Path:
    folder = ws.root / "no_results"
    folder.mkdir(exist_ok=True)
    return folder


def test_the_catalogue_has_at_least_30_cases():
    assert len(CASES) >= 99


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input(case, workspace, cli):
    make_args, fragments = CASES[case]
    args = make_args(workspace)
    before = _snapshot(workspace.root)  # every input and output path of every case
    result = cli(*args)
    assert result.code == 2, (result.code, result.err)
    lines = result.err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.err, result.err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    assert _snapshot(workspace.root) == before
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
