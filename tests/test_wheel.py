"""The built wheel, the way users install it: every module is inside, and it runs on its own."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DIST_NAME = "sae-bench-amortization"
CLI_MODULE = "sae_bench_amortization.cli"
# source folder in this repository -> where its modules are installed
SOURCE_ROOTS = {
    "sae_bench_amortization": "sae_bench_amortization",
    "adapters": "sae_bench_amortization/adapters",
    "evals": "sae_bench_amortization/evals",
}
TIMEOUT = 600


def _run(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=TIMEOUT
    )


def _source_modules() -> dict[str, str]:
    """Installed path (in the wheel) -> path in this repository, for every .py module."""
    modules = {}
    for folder, installed in SOURCE_ROOTS.items():
        for dirpath, dirnames, filenames in os.walk(REPO / folder):
            dirnames[:] = sorted(d for d in dirnames if d != "__pycache__")
            relative = Path(dirpath).relative_to(REPO / folder)
            for name in filenames:
                if name.endswith(".py"):
                    modules[(Path(installed) / relative / name).as_posix()] = (
                        Path(folder) / relative / name
                    ).as_posix()
    return modules


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    built = _run(
        "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", str(out), str(REPO),
        cwd=out,
    )  # fmt: skip
    assert built.returncode == 0, built.stdout + built.stderr
    wheels = sorted(out.glob("sae_bench_amortization-*.whl"))
    assert len(wheels) == 1, (wheels, built.stdout)
    return wheels[0]


@pytest.fixture(scope="module")
def site(wheel, tmp_path_factory) -> Path:
    """The wheel installed, not editable, into a folder of its own."""
    target = tmp_path_factory.mktemp("installed") / "site"
    done = _run(
        "-m", "pip", "install", "--no-deps", "--no-index", "--target", str(target), str(wheel),
        cwd=target.parent,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    return target


def _env_with(site: Path) -> dict[str, str]:
    """A fresh interpreter that imports the installed wheel before anything else."""
    # SAE_BENCH_AMORTIZATION_CACHE (set per session by conftest) travels along in os.environ
    return {**os.environ, "PYTHONPATH": str(site), "TQDM_DISABLE": "1"}


def test_every_module_is_in_the_wheel(wheel):
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
    sources = _source_modules()
    assert "sae_bench_amortization/inference/solver.py" in sources  # the walk found the tree
    missing = sorted(
        src if src == inst else f"{src} (as {inst})"
        for inst, src in sources.items()
        if inst not in names
    )
    assert not missing, f"{wheel.name} lacks {len(missing)} module(s): " + ", ".join(missing)
    # setup.py empties build/lib first: nothing moved or deleted here ships from an earlier build
    stale = sorted(n for n in names if n.endswith(".py") and n not in sources)
    assert not stale, f"{wheel.name} ships modules that are no longer in the tree: {stale}"
    top_level = sorted(n for n in names if n.split("/", 1)[0] in ("adapters", "evals"))
    assert not top_level, f"{wheel.name} installs top-level adapters/ or evals/: {top_level}"


def test_installed_wheel_lists_and_runs_the_main_job(site, tmp_path):
    env = _env_with(site)
    work = tmp_path / "work"  # not the repository: nothing is found from the current folder
    work.mkdir()

    located = _run(
        "-c", "import sae_bench_amortization, sys; print(sae_bench_amortization.__file__)",
        cwd=work, env=env,
    )  # fmt: skip
    assert located.returncode == 0, located.stderr
    assert Path(located.stdout.strip()).resolve().is_relative_to(site.resolve()), located.stdout

    first_dist = _run(
        "-c",
        "import importlib.metadata as m; "
        f"print(list(m.distributions(name={DIST_NAME!r}))[0]._path)",
        cwd=work,
        env=env,
    )
    assert first_dist.returncode == 0, first_dist.stderr
    assert Path(first_dist.stdout.strip()).resolve().is_relative_to(site.resolve()), (
        f"entry points would not come from the installed wheel: {first_dist.stdout}"
    )

    listing = _run("-m", CLI_MODULE, "list", cwd=work, env=env)
    assert listing.returncode == 0, listing.stderr
    names = [line.split()[0] for line in listing.stdout.splitlines() if line.strip()]
    assert {"amortization_gap", "dead_dense"} <= set(names), listing.stdout

    out = tmp_path / "out"
    run = _run(
        "-m", CLI_MODULE, "run", "--eval", "amortization_gap", "--output-dir", str(out), "--report",
        cwd=work, env=env,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr
    # the main job's page, from the installed wheel (plotly's script inlined)
    page = (out / "report.html").read_text()
    assert '<meta name="generator" content="saebench report">' in page and "Plotly" in page
    results = sorted((out / "amortization_gap").glob("*_eval_results.json"))
    assert results, f"no result file under {out}: {run.stdout}"
    for result in results:
        details = json.loads(result.read_text())["eval_result_details"]
        modes = [row["mode"] for row in details]
        assert "non_amortized" in modes and len(modes) == len(set(modes)), (result.name, modes)
