"""The README's promises: its two set-up commands are what CI runs, and its examples run."""

from __future__ import annotations

import json
import re

import torch
from sae_lens.saes.standard_sae import StandardSAE, StandardSAEConfig

from conftest import REPO, write_activations

README = (REPO / "README.md").read_text()


def code_blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", README, flags=re.S)


def test_two_setup_commands_and_ci():
    first = code_blocks("bash")[0]
    assert "bash scripts/dev.sh demo" in first and "bash scripts/dev.sh test" in first
    assert "bash scripts/dev.sh test" in (REPO / ".ci" / "run").read_text()


def test_library_example_runs(tmp_path, monkeypatch):
    (example,) = [block for block in code_blocks("python") if "run_eval" in block]
    monkeypatch.chdir(tmp_path)
    sae = StandardSAE(StandardSAEConfig(d_in=8, d_sae=16))
    sae.save_model("my_sae")
    write_activations(tmp_path / "acts.safetensors", torch.randn(300, 8))
    exec(compile(example, "README.md", "exec"), {})
    result = json.loads(
        (tmp_path / "eval_results/dead_dense/my_release_custom_sae_eval_results.json").read_text()
    )
    assert result["eval_result_metrics"]["pathologies"]["n_tokens"] == 300


def test_cli_examples_parse():
    """Every `saebench ...` line in the README parses with the real parser (flags stay in sync)."""
    from sae_bench_amortization.cli import build_parser

    commands = []
    for block in code_blocks("bash"):
        for command in re.sub(r"\\\n\s*", " ", block).splitlines():
            command = command.split("#")[0].strip()
            if command.startswith("saebench "):
                commands.append(command)
    assert len(commands) >= 5
    import shlex

    for command in commands:
        build_parser().parse_args(shlex.split(command)[1:])


def test_ista_refined_example_runs():
    (example,) = [block for block in code_blocks("python") if "ISTARefinedSAE.from_sae" in block]
    torch.manual_seed(0)
    sae = StandardSAE(StandardSAEConfig(d_in=8, d_sae=32))
    namespace = {"sae": sae, "acts": torch.randn(400, 8), "x": torch.randn(10, 8)}
    exec(compile(example, "README.md", "exec"), namespace)
    assert namespace["codes"].shape == (10, 32)
    assert namespace["exact"].cfg.l1_coefficient == namespace["semi"].cfg.l1_coefficient > 0


def test_loca_example_runs():
    from sae_lens.saes.topk_sae import TopKSAE, TopKSAEConfig

    (example,) = [block for block in code_blocks("python") if "LocASAE.from_sae" in block]
    torch.manual_seed(0)
    sae = TopKSAE(TopKSAEConfig(d_in=8, d_sae=64, k=26))
    namespace = {"sae": sae, "acts": torch.randn(400, 8), "x": torch.randn(10, 8)}
    exec(compile(example, "README.md", "exec"), namespace)
    assert namespace["codes"].shape == (10, 64) and namespace["avar"].shape == (64,)
    assert ((namespace["codes"] > 0).sum(1) <= 26).all() and namespace["W_g"].shape == (8, 8)


def test_library_run_example_runs(tmp_path, monkeypatch, capsys):
    """The README's ``sba.run`` block: what ``saebench run`` does, as a library call."""
    (example,) = [block for block in code_blocks("python") if "sba.run(" in block]
    monkeypatch.chdir(tmp_path)
    torch.manual_seed(0)
    StandardSAE(StandardSAEConfig(d_in=8, d_sae=16)).save_model("my_sae")
    write_activations(tmp_path / "acts.safetensors", torch.randn(300, 8))
    namespace: dict = {}
    exec(compile(example, "README.md", "exec"), namespace)
    rows = [(name, outcome.status, outcome.path.name) for name, outcome in namespace["result"].rows]
    assert rows == [
        ("dead_dense", "written", "local_my_sae__amortized_eval_results.json"),
        ("dead_dense", "written", "local_my_sae__semi-5_eval_results.json"),
        ("amortization_gap", "written", "local_my_sae_eval_results.json"),
    ]
    dead_dense = json.loads((tmp_path / "eval_results/dead_dense" / rows[1][2]).read_text())
    assert dead_dense["eval_config"]["dense_threshold"] == 0.2
    assert dead_dense["eval_config"]["inference_mode"] == "semi:5"
    gap = json.loads((tmp_path / "eval_results/amortization_gap" / rows[2][2]).read_text())
    assert [row["mode"] for row in gap["eval_result_details"]] == [
        "amortized",
        "semi:5",
        "non_amortized",
    ]
    assert "local_my_sae" in capsys.readouterr().out


# The conditional absorption rate (share of the main latents' misses absorbed) is not the paper's: the
# paper's absorption is metrics/paper.py's share of the concept's tokens. These phrasings named it so.
CONDITIONAL_CALLED_PAPERS = (
    "the paper's rate",
    "paper's conditional",
    "paper: of misses",
    "the paper's absorption rate is null",
)


def test_the_conditional_absorption_rate_is_never_called_the_papers():
    texts = [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md")),
             *sorted((REPO / "docs").rglob("*.csv")),
             *sorted((REPO / "sae_bench_amortization").rglob("*.py")),
             *sorted((REPO / "evals").rglob("*.py")), *sorted((REPO / "benchmarks").rglob("*.py"))]  # fmt: skip
    assert len(texts) > 20
    found = [
        f"{path.relative_to(REPO)}: {phrase!r}"
        for path in texts
        for phrase in CONDITIONAL_CALLED_PAPERS
        if phrase in path.read_text(encoding="utf-8").lower()
    ]
    assert not found, found
    # the paper's own definition is still stated where the conditional rate is explained
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert "share of the concept's tokens: top-ranked latent silent, one of the next five" in readme
