"""CONTRIBUTING.md's "add an inference mode" recipe, followed by a toy mode kind in a separate distribution:
one module and one entry-point line, and the kind gets its own CLI option, its result files, its rows in
`saebench compare` and the plots, and its metrics judged by `saebench regress` — without touching this
package."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import textwrap

import pytest
from test_contributing import saebench

from sae_bench_amortization.modes import ENTRY_POINT_GROUP

# keep each token's T largest codes of the SAE's encoder (and none below --top-min-code): a refinement
# of the encoder's codes along a step axis T
TOY_MODE = """
import copy
from dataclasses import dataclass

import torch

from sae_bench_amortization.modes.kind import ModeKind, ModeOption


@dataclass(frozen=True)
class TopSettings:
    min_code: float = 0.0


def keep_top(codes, t, min_code):
    kept = torch.zeros_like(codes)
    values, index = codes.topk(min(t, codes.shape[-1]), dim=-1)
    kept.scatter_(-1, index, values)
    return torch.where(kept >= min_code, kept, torch.zeros_like(kept))


def build(sae, mode, l1_coefficient, settings):
    toy = copy.copy(sae)  # the same weights; only encode differs
    toy.encode = lambda x: keep_top(sae.encode(x), mode.n_steps, settings.min_code)
    return toy


KIND = ModeKind(
    name="top", syntax="top:T", pattern=r"top:(\\d{1,3})", rank=4, needs_lambda=False,
    role="refinement", help="the encoder's T largest codes per token", build=build,
    settings=TopSettings,
    options=(ModeOption("--top-min-code", "top:T: drop codes below this", field="min_code",
                        type=float),),
)
"""


def toy_mode_distribution(root):
    """The recipe: a kind module, and one entry-point line in its distribution's metadata."""
    (root / "toy_mode.py").write_text(textwrap.dedent(TOY_MODE))
    info = root / "toy_mode-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: toy-mode\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[{ENTRY_POINT_GROUP}]\ntop = toy_mode:KIND\n")


# `saebench compare`, printing the figure legends of the plots it saves (title: labels)
COMPARE_SHOWING_LEGENDS = """
import sys
from matplotlib.figure import Figure
from sae_bench_amortization.cli import main

savefig = Figure.savefig


def showing_legends(figure, *args, **kwargs):
    for legend in figure.legends:
        print(legend.get_title().get_text(), [text.get_text() for text in legend.get_texts()])
    return savefig(figure, *args, **kwargs)


Figure.savefig = showing_legends
sys.exit(main(["compare", *sys.argv[1:]]))
"""


def test_a_toy_mode_from_another_distribution(tmp_path, planted):
    toy = tmp_path / "toy"
    toy.mkdir()
    toy_mode_distribution(toy)
    help_text = " ".join(saebench(toy, "run", "--help").stdout.split())
    assert "top:T: the encoder's T largest codes per token" in help_text  # --inference's help
    assert "--top-min-code" in help_text  # its own option, from the kind

    out = tmp_path / "out"
    run = [
        "run", "--eval", "dead_dense", "--sae-path", planted.path, "--activations", planted.activations,
        "--output-dir", out, "--inference", "amortized", "--inference", "top:2", "--inference", "top:3",
    ]  # fmt: skip
    first = saebench(toy, *run)
    assert first.returncode == 0, first.stderr
    files = sorted((out / "dead_dense").glob("*_eval_results.json"))
    assert [f.name for f in files] == [
        "local_planted_sae__amortized_eval_results.json",
        "local_planted_sae__top-2_eval_results.json",
        "local_planted_sae__top-3_eval_results.json",
    ]
    # by construction (conftest): a token's codes are 1e3 on the 2 dense latents and 1 on at most one of
    # the 10 normal ones; T = 2 keeps the dense ones only, T = 3 all
    metrics = {
        json.loads(f.read_text())["eval_config"]["inference_mode"]: json.loads(f.read_text())[
            "eval_result_metrics"
        ]["pathologies"]
        for f in files
    }
    d_sae = planted.d_sae
    assert metrics["top:2"]["dead_rate"] == pytest.approx((d_sae - planted.n_dense) / d_sae)
    assert metrics["top:2"]["mean_l0"] == pytest.approx(2.0)
    assert metrics["top:3"]["dead_rate"] == pytest.approx(planted.n_dead / d_sae)
    assert metrics["top:3"] == metrics["amortized"]

    summary = tmp_path / "summary"
    compare = saebench_python(toy, COMPARE_SHOWING_LEGENDS, out, "--out", summary)
    assert compare.returncode == 0, compare.stderr
    with open(summary / "summary.csv", newline="") as handle:
        rows = {row["mode"]: row for row in csv.DictReader(handle)}
    assert list(rows) == ["amortized", "top:2", "top:3"]  # the kind's rank orders its rows
    assert float(rows["top:2"]["dead_rate"]) == pytest.approx(metrics["top:2"]["dead_rate"])
    assert (summary / "pathologies_by_mode.png").stat().st_size > 0
    # the pathologies plot: one bar per mode, the toy's among them
    assert "inference mode ['amortized', 'top:2', 'top:3']" in compare.stdout, compare.stdout

    baseline = tmp_path / "baseline.json"
    assert saebench(toy, "regress", "--results", out, "--write-baseline", baseline).returncode == 0
    changed = saebench(toy, *run, "--top-min-code", "5")  # the kind's setting is in the fingerprint
    assert changed.returncode == 2 and "min_code" in changed.stderr, changed.stderr
    worse = saebench(toy, *run, "--top-min-code", "5", "--force-rerun")
    assert worse.returncode == 0, worse.stderr
    regress = saebench(toy, "regress", "--results", out, "--baseline", baseline)
    assert regress.returncode == 1, regress.stdout + regress.stderr  # more dead latents: worse
    judged = [
        line for line in regress.stdout.splitlines() if "top:3" in line and "dead_rate" in line
    ]
    assert judged and "worse" in judged[0], regress.stdout


def saebench_python(root, script, *args):
    """``python -c script args`` where the toy distribution is installed (as ``saebench`` runs)."""
    env = {**os.environ, "PYTHONPATH": str(root), "TQDM_DISABLE": "1"}
    return subprocess.run(
        [sys.executable, "-c", script, *map(str, args)],
        capture_output=True, text=True, cwd=root, env=env, timeout=600,
    )  # fmt: skip
