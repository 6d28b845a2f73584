"""CONTRIBUTING.md's "add an eval" recipe, followed by a toy eval in a separate distribution: one folder
and one entry-point line, and it gets its own CLI option, the one runner loop (files, skip, per mode), its
metric direction in `saebench regress` and its metric in `saebench compare`'s plots — without touching
this package."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import torch

from sae_bench_amortization.registry import ENTRY_POINT_GROUP

from conftest import REPO

TOY_INIT = """
from pydantic.dataclasses import dataclass
from sae_bench.evals.base_eval_output import BaseEvalConfig

from sae_bench_amortization.registry import EvalEntry, EvalOption
from sae_bench_amortization.runner.outputs import setting


@dataclass
class ToyConfig(BaseEvalConfig):
    scale: float = setting(1.0, "Scale", "Multiplies the metric.")
    batch_size: int = setting(4096, "Batch Size", "Tokens per chunk.")
    inference_mode: str = setting("amortized", "Inference Mode", "Mode of the codes.")
    l1_coefficient: float | None = setting(None, "λ", "λ of the mode.")
    lambda_calibration: dict | None = setting(None, "λ Calibration", "How λ was found.")
    activation_source: str = setting("", "Activation Source", "Where tokens came from.")


EVAL = EvalEntry(
    name="toy_energy",
    description="toy: scale × mean squared norm of the SAE's reconstruction",
    evaluate="toy_eval.main:evaluate",
    config_class=ToyConfig,
    options=(EvalOption("--toy-scale", "multiplies the toy metric", type=float, field="scale"),),
    output="toy_eval.main:ToyOutput",
)
"""

TOY_MAIN = """
from pydantic.dataclasses import dataclass
from sae_bench.evals.base_eval_output import (
    BaseEvalOutput, BaseMetricCategories, BaseMetrics, BaseResultDetail,
)

from sae_bench_amortization.registry import HIGHER_IS_WORSE
from sae_bench_amortization.runner.outputs import category, details_field, metric, type_id_field
from toy_eval import ToyConfig


@dataclass
class ToyMetrics(BaseMetrics):
    energy: float = metric("Energy", "scale × mean ‖decode(encode(x))‖²", direction=HIGHER_IS_WORSE,
                           bounds=(0.0, None), label="toy energy (scale × mean ‖x̂‖²)",
                           topic="reconstruction", figures=("pathologies",))


@dataclass
class ToyDetail(BaseResultDetail):
    n_tokens: int = metric("Tokens", "tokens read")


@dataclass
class ToyCategories(BaseMetricCategories):
    toy: ToyMetrics = category("Toy", "Toy metrics")


@dataclass
class ToyOutput(BaseEvalOutput[ToyConfig, ToyCategories, ToyDetail]):
    '''A toy eval.'''

    eval_config: ToyConfig
    eval_id: str
    datetime_epoch_millis: int
    eval_result_metrics: ToyCategories
    eval_result_details: list[ToyDetail] = details_field("Details", "One row")
    eval_type_id: str = type_id_field("toy_energy")


def evaluate(context):
    total, n = 0.0, 0
    for batch in context.source.iter_batches(context.config.batch_size):
        recon = context.sae.decode(context.encode(batch.acts))
        total += float((recon.double() ** 2).sum())
        n += batch.acts.shape[0]
    energy = context.config.scale * total / n
    return context.result(ToyOutput, ToyCategories(toy=ToyMetrics(energy=energy)),
                          [ToyDetail(n_tokens=n)], {"energy": energy})
"""


def toy_distribution(root):
    """The recipe: a package folder, and one entry-point line in its distribution's metadata."""
    package = root / "toy_eval"
    package.mkdir()
    (package / "__init__.py").write_text(textwrap.dedent(TOY_INIT))
    (package / "main.py").write_text(textwrap.dedent(TOY_MAIN))
    info = root / "toy_eval-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: toy-eval\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[{ENTRY_POINT_GROUP}]\ntoy_energy = toy_eval:EVAL\n")


def saebench(root, *args):
    env = {**os.environ, "PYTHONPATH": str(root), "TQDM_DISABLE": "1"}
    return subprocess.run(
        [sys.executable, "-m", "sae_bench_amortization.cli", *map(str, args)],
        capture_output=True, text=True, cwd=root, env=env, timeout=600,
    )  # fmt: skip


def in_process(capsys, *args) -> subprocess.CompletedProcess:
    """``saebench`` in this interpreter (the toy's folder already on sys.path), like :func:`saebench`."""
    from sae_bench_amortization.cli import main

    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return subprocess.CompletedProcess(args, code, captured.out, captured.err)


def test_a_toy_eval_from_another_distribution(tmp_path, planted, monkeypatch, capsys):
    toy = tmp_path / "toy"
    toy.mkdir()
    toy_distribution(toy)
    listing = saebench(toy, "list")
    assert listing.returncode == 0, listing.stderr
    assert "toy_energy" in listing.stdout
    assert (
        "--toy-scale" in saebench(toy, "run", "--help").stdout
    )  # its own option, via the registry

    out = tmp_path / "out"
    run = [
        "run", "--eval", "toy_energy", "--sae-path", planted.path, "--activations", planted.activations,
        "--output-dir", out, "--inference", "amortized", "--inference", "semi:3", "--l1-coefficient", "0.1",
    ]  # fmt: skip
    first = saebench(toy, *run, "--toy-scale", "2")
    assert first.returncode == 0, first.stderr
    files = sorted((out / "toy_energy").glob("*_eval_results.json"))
    assert [f.name for f in files] == [
        "local_planted_sae__amortized_eval_results.json",
        "local_planted_sae__semi-3_eval_results.json",
    ]
    # the metric, computed here independently for the amortized codes
    from sae_lens import SAE

    sae = SAE.load_from_disk(planted.path)
    acts = 2.0 * torch.eye(20)[torch.arange(1000) % 20]
    with torch.no_grad():
        expected = 2 * float((sae.decode(sae.encode(acts)).double() ** 2).sum()) / 1000
    amortized = json.loads(files[0].read_text())
    assert amortized["eval_result_metrics"]["toy"]["energy"] == __import__("pytest").approx(
        expected
    )
    assert amortized["eval_config"]["scale"] == 2.0
    assert json.loads(files[1].read_text())["eval_config"]["l1_coefficient"] == 0.1

    # the rest in this interpreter, with the toy's distribution on sys.path as the subprocesses had it
    # (a fresh interpreter per command costs seconds of imports and proves no more)
    monkeypatch.syspath_prepend(str(toy))
    monkeypatch.setenv("TQDM_DISABLE", "1")
    monkeypatch.chdir(toy)

    assert "skipping" in in_process(capsys, *run, "--toy-scale", "2").stdout  # the runner's skip

    baseline = tmp_path / "baseline.json"
    assert (
        in_process(capsys, "regress", "--results", out, "--write-baseline", baseline).returncode
        == 0
    )
    worse = in_process(capsys, *run, "--toy-scale", "3", "--force-rerun")
    assert worse.returncode == 0, worse.stderr
    regress = in_process(capsys, "regress", "--results", out, "--baseline", baseline)
    assert regress.returncode == 1, regress.stdout + regress.stderr  # higher energy is worse
    assert "energy" in regress.stdout and "worse" in regress.stdout
    in_process(capsys, *run, "--toy-scale", "1", "--force-rerun")
    better = in_process(capsys, "regress", "--results", out, "--baseline", baseline)
    assert better.returncode == 0 and "better" in better.stdout, better.stdout

    # compare's plots: the metric gets its own pathologies panel, titled by its declared label
    summary = tmp_path / "summary"
    compared = in_process(capsys, "compare", out, "--out", summary)
    assert compared.returncode == 0, compared.stderr
    assert (summary / "pathologies_by_mode.png").read_bytes()[:4] == b"\x89PNG"
    from sae_bench_amortization.registry import discover_evals, facts_by_column
    from sae_bench_amortization.reports.compare import load_results
    from sae_bench_amortization.reports.plots import per_sae_and_mode, plot_pathologies

    registry = discover_evals()
    table = per_sae_and_mode(load_results(out, registry), registry)
    figure = plot_pathologies(table, facts_by_column(registry))
    assert figure is not None
    titles = [ax.get_title() for ax in figure.axes]
    assert titles == ["toy energy (scale × mean ‖x̂‖²)"]
    bars = [bar.get_height() for bar in figure.axes[0].patches]
    assert bars == __import__("pytest").approx(table["energy"].tolist())  # amortized, semi:3


def test_contributing_guide_names_the_files():
    guide = (REPO / "CONTRIBUTING.md").read_text()
    for section in ("## Add an eval", "## Add an inference mode", "## Add an SAE architecture"):
        assert section in guide
    for path in (
        "evals/",
        "sae_bench_amortization/modes/",
        "adapters/__init__.py",
        "pyproject.toml",
    ):
        assert path in guide
