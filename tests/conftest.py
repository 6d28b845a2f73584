"""Shared fixtures: hand-built SAEs with known behaviour, activation files, and a CLI runner."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from sae_lens.saes.standard_sae import StandardSAE, StandardSAEConfig
from threadpoolctl import threadpool_limits

from sae_bench_amortization.activations.file import ActivationFileWriter
from sae_bench_amortization.cli import main

REPO = Path(__file__).resolve().parents[1]
XDIST_WORKER = os.environ.get("PYTEST_XDIST_WORKER")  # gw0, gw1 under the README's test command

if XDIST_WORKER:
    # two workers on two cores: one thread each, for this process and the commands it starts (two
    # thread pools of two would oversubscribe the cores and spin)
    os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = "1"
    torch.set_num_threads(1)
    # numpy's OpenBLAS was loaded (by torch) before the variables above were set and kept two threads:
    # scikit-learn's probes then ran a third of their time slower under two workers
    threadpool_limits(1)


@pytest.fixture(autouse=True, scope="session")
def _isolated_cache(tmp_path_factory):
    """The embedded default is built into a per-session cache, never the user's; the workers of one
    session share it (the package's cache is safe to fill from two processes)."""
    if XDIST_WORKER:
        # the session's folder, above each worker's own
        cache = tmp_path_factory.getbasetemp().parent / "cache"
        cache.mkdir(exist_ok=True)
    else:
        cache = tmp_path_factory.mktemp("cache")
    os.environ["SAE_BENCH_AMORTIZATION_CACHE"] = str(cache)


# ------------------------------------------------------------------ two workers
# The README's test command runs two workers (pytest-xdist, ``-n 2``). Each file runs whole on one worker,
# so its module fixtures are built once; the files that read the synthetic world's session fixtures form
# one group (one worker builds them); the groups start longest first (times from ``pytest --durations=0``
# on 2 cores), so that the two workers finish together.
SYNTHETIC_WORLD = ("test_amortization_gap", "test_ground_truth", "test_synthetic", "test_report")
LONGEST_FIRST = (
    "synthetic_world",
    "test_readme_commands",
    "test_ci_example",
    "test_ray_executor",
    "test_air_gapped",
    "test_loca",
    "test_claims",
    "test_model_sources",
    "test_reliability",
    "test_contributing",
    "test_wheel",
    "test_wide",
    "test_run_integrity",
    "test_contributing_mode",
    "test_types",
    "test_first_letter_absorption",
    "test_ista_refined_sae",
)


def worker_group(nodeid: str) -> str:
    """``tests/test_x.py::test_y[...]`` → the group its file runs in."""
    module = Path(nodeid.split("::", 1)[0]).stem
    return "synthetic_world" if module in SYNTHETIC_WORLD else module


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    rank = {group: i for i, group in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(worker_group(item.nodeid), len(rank)))  # stable


def pytest_xdist_make_scheduler(config, log):
    """xdist's per-scope scheduler with :func:`worker_group` as the scope, in collection order."""
    from xdist.scheduler import LoadScopeScheduling

    class ByGroup(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return worker_group(nodeid)

    config.option.loadscopereorder = False  # keep the longest-first order
    return ByGroup(config, log)


@dataclass
class CliResult:
    code: int
    out: str
    err: str


class Cli:
    """Runs ``saebench`` in-process; each call returns exit code, stdout and stderr."""

    def __init__(self, capsys):
        self.capsys = capsys

    def __call__(self, *args) -> CliResult:
        code = main([str(a) for a in args])
        captured = self.capsys.readouterr()
        return CliResult(code, captured.out, captured.err)

    def dead_dense(self, sae, activations, *extra) -> CliResult:
        """``saebench run --eval dead_dense --sae-path SAE --activations FILE ...``"""
        return self(
            "run", "--eval", "dead_dense", "--sae-path", sae, "--activations", activations, *extra
        )


@pytest.fixture
def cli(capsys) -> Cli:
    return Cli(capsys)


def offline_hooked_transformer(d_model: int = 32, model_name: str = "tiny-offline"):
    """A random-weight 2-layer HookedTransformer built offline, with MiniLM's WordPiece tokenizer."""
    from transformer_lens import HookedTransformer, HookedTransformerConfig
    from transformers import AutoTokenizer

    from sae_bench_amortization.activations.models import resolve_hf_model

    tokenizer = AutoTokenizer.from_pretrained(resolve_hf_model("all-MiniLM-L6-v2"))
    cfg = HookedTransformerConfig(
        n_layers=2,
        d_model=d_model,
        n_ctx=64,
        d_head=8,
        n_heads=d_model // 8,
        d_mlp=2 * d_model,
        d_vocab=tokenizer.vocab_size,
        act_fn="relu",
        model_name=model_name,
        seed=0,
    )
    return HookedTransformer(cfg, tokenizer=tokenizer)


def run_subprocess(
    *args: str, cwd: Path | None = None, timeout: int = 600
) -> subprocess.CompletedProcess:
    """Run the real ``saebench`` entry in a fresh interpreter."""
    return subprocess.run(
        [sys.executable, "-m", "sae_bench_amortization.cli", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=timeout,
        env={**os.environ, "TQDM_DISABLE": "1"},
    )


def write_activations(path: Path, acts: torch.Tensor, concepts=None, names=None) -> Path:
    with ActivationFileWriter(path, acts.shape[1], concept_names=names) as writer:
        for start in range(0, acts.shape[0], 97):  # odd chunk size on purpose
            chunk_concepts = None if concepts is None else concepts[start : start + 97]
            writer.write(acts[start : start + 97], chunk_concepts)
    return path


@dataclass
class PlantedSAE:
    """A StandardSAE whose dead and dense latents are known by construction."""

    path: Path
    activations: Path
    n_dead: int
    n_dense: int
    d_sae: int


def planted_standard_sae(folder: Path, n_tokens: int = 1000) -> PlantedSAE:
    """d_in = 20. Tokens are x_t = 2·e_{t mod 20}.

    Latents 0..9 read coordinate k with bias -1: each fires on exactly 1/20 of tokens (alive, not dense).
    Latents 10..12 have bias -1e4 and zero weights: they can never fire (dead).
    Latents 13..14 have bias +1e3 and zero weights: they fire on every token (dense).
    """
    d_in, n_normal, n_dead, n_dense = 20, 10, 3, 2
    d_sae = n_normal + n_dead + n_dense
    sae = StandardSAE(StandardSAEConfig(d_in=d_in, d_sae=d_sae))
    with torch.no_grad():
        sae.W_enc.zero_()
        sae.b_dec.zero_()
        for k in range(n_normal):
            sae.W_enc[k, k] = 1.0
        sae.b_enc[:n_normal] = -1.0
        sae.b_enc[n_normal : n_normal + n_dead] = -1e4
        sae.b_enc[n_normal + n_dead :] = 1e3
        sae.W_dec.copy_(torch.nn.functional.normalize(torch.randn(d_sae, d_in), dim=1))
    sae_path = folder / "planted_sae"
    sae.save_model(sae_path)
    acts = 2.0 * torch.eye(d_in)[torch.arange(n_tokens) % d_in]
    act_path = write_activations(folder / "planted_acts.safetensors", acts)
    return PlantedSAE(sae_path, act_path, n_dead, n_dense, d_sae)


@pytest.fixture
def planted(tmp_path) -> PlantedSAE:
    return planted_standard_sae(tmp_path)


def read_result(output_dir: Path, eval_name: str) -> dict:
    files = sorted((output_dir / eval_name).glob("*_eval_results.json"))
    assert len(files) == 1, files
    return json.loads(files[0].read_text())


def core_request(sae, name, text_file, output_dir, batches, **request):
    """An EvalRequest running SAEBench's core on one SAE object over a local text (32-token documents);
    ``batches`` = (reconstruction batches, sparsity/variance batches, prompts per batch)."""
    from sae_bench_amortization.activations.text import TextSettings
    from sae_bench_amortization.registry import discover_evals
    from sae_bench_amortization.runner.request import EvalRequest
    from sae_bench_amortization.sources.saes import spec_from_object

    entry = discover_evals()["core"]
    reconstruction, sparsity, prompts = batches
    config = entry.config_class(
        **{**entry.config_defaults, "n_eval_reconstruction_batches": reconstruction,
           "n_eval_sparsity_variance_batches": sparsity, "batch_size_prompts": prompts}
    )  # fmt: skip
    return EvalRequest(
        saes=[spec_from_object(sae, name)], output_dir=output_dir, device="cpu",
        text=TextSettings(text_file=str(text_file), context_size=32), configs={"core": config}, **request,
    )  # fmt: skip


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder``: relative path → bytes (to check a command changed nothing)."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def assert_one_line_error(result, *fragments: str) -> None:
    """Exit 2 with exactly one stderr line, no traceback, holding every fragment."""
    assert result.code == 2, (result.code, result.err)
    lines = result.err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.err, result.err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


# ------------------------------------------------------------------ suite-wide fixtures (built once)
# Each is built once per session and shared by every test file that needs it: its users read it and
# never change it (a test that changes one copies it first, e.g. to tmp_path); teardown checks that.


def _digests(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@contextmanager
def read_only(folder: Path) -> Iterator[None]:
    """Fails at teardown if a user of a shared fixture added, removed or changed a file in ``folder``."""
    before = _digests(folder)
    yield
    assert _digests(folder) == before, f"a test changed the shared folder {folder}"


@dataclass(frozen=True)
class World:
    """``saebench synth --out eval.safetensors --n-tokens 20000 --reference-saes refs``: the default
    synthetic world (seed 0, d_in 128, 256 features + 2 sub-contexts) with its truth sidecar, and the
    five reference SAEs (oracle, dead, dense, split, absorbed)."""

    acts: Path
    refs: Path


@pytest.fixture(scope="session")
def world(tmp_path_factory) -> Iterator[World]:
    folder = tmp_path_factory.mktemp("world")
    made = World(folder / "eval.safetensors", folder / "refs")
    argv = ["synth", "--out", made.acts, "--n-tokens", "20000", "--reference-saes", made.refs]
    assert main([str(a) for a in argv]) == 0
    with read_only(folder):
        yield made


WORLD_EVALS = ("dead_dense", "splitting", "absorption_rate", "amortization_gap")


@pytest.fixture(scope="session")
def world_oracle_results(world, tmp_path_factory) -> Iterator[Path]:
    """``saebench run`` of dead_dense, splitting, absorption_rate and amortization_gap (default settings,
    one run) with the oracle reference SAE on the world: the output folder."""
    out = tmp_path_factory.mktemp("world_oracle") / "out"
    evals = [arg for name in WORLD_EVALS for arg in ("--eval", name)]
    argv = ["run", *evals, "--sae-path", world.refs / "oracle", "--activations", world.acts,
            "--output-dir", out]  # fmt: skip
    assert main([str(a) for a in argv]) == 0
    with read_only(out):
        yield out


@pytest.fixture(scope="session")
def world_absorbed_results(world, tmp_path_factory) -> Iterator[Path]:
    """``sba.run`` of absorption_rate and amortization_gap (amortized mode, every concept probed; the gap
    compares amortized with non_amortized only, the rows its users read) with the absorbed reference SAE on
    the world: the output folder."""
    import sae_bench_amortization as sba
    from sae_bench_amortization.evals.amortization_gap.eval_config import AmortizationGapEvalConfig
    from sae_bench_amortization.sources.saes import spec_from_path

    out = tmp_path_factory.mktemp("world_absorbed") / "out"
    every_concept = AmortizationGapEvalConfig(max_concepts=10**6, modes=["amortized"])
    result = sba.run(
        evals=["absorption_rate", "amortization_gap"],
        saes=[spec_from_path(world.refs / "absorbed", "absorbed")],
        source=sba.SourceSettings(activations=str(world.acts)),
        inference=["amortized"],
        configs={"amortization_gap": every_concept},
        output_dir=out,
        device="cpu",
    )
    assert [outcome.status for _, outcome in result.rows] == ["written", "written"], result.rows
    with read_only(out):
        yield out


@pytest.fixture(scope="session")
def trained_topk(tmp_path_factory) -> Iterator[tuple[Path, Path]]:
    """(activation file, SAE folder): ``saebench synth --n-tokens 6000 --seed 5``, then ``saebench train``
    of a TopK SAE (d_sae 256, k 4) on 24,000 tokens of it (four passes)."""
    folder = tmp_path_factory.mktemp("trained_topk")
    acts, sae = folder / "acts.safetensors", folder / "topk"
    assert main(["synth", "--out", str(acts), "--n-tokens", "6000", "--seed", "5"]) == 0
    argv = ["train", "--activations", acts, "--architecture", "topk", "--d-sae", TRAINED_D_SAE,
            "--k", "4", "--n-tokens", "24000", "--out", sae, "--device", "cpu"]  # fmt: skip
    assert main([str(a) for a in argv]) == 0
    with read_only(folder):
        yield acts, sae


TRAINED_D_SAE = 256
