"""Eval discovery through entry points, the list command, and the package layout."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from sae_bench_amortization.registry import ENTRY_POINT_GROUP, EvalEntry, discover_evals

SAEBENCH_BUILTINS = (
    "core",
    "absorption",
    "sparse_probing",
    "scr",
    "tpp",
    "autointerp",
    "unlearning",
    "ravel",
)


def test_list_shows_dead_dense_and_saebench_builtins(cli):
    result = cli("list")
    assert result.code == 0
    names = [line.split()[0] for line in result.out.splitlines()]
    for name in ("dead_dense", *SAEBENCH_BUILTINS):
        assert name in names
    assert all(
        len(line.split(maxsplit=1)) == 2 for line in result.out.splitlines()
    )  # name + description


def test_builtins_wrap_saebench_run_functions():
    registry = discover_evals()
    assert registry["dead_dense"].needs == "activations"
    for name in SAEBENCH_BUILTINS:
        assert isinstance(registry[name], EvalEntry) and registry[name].needs == "model"


def test_another_package_can_register_an_eval(tmp_path):
    """A distribution found on sys.path with an entry point in the group shows up in `saebench list`."""
    (tmp_path / "toy_plugin.py").write_text(
        textwrap.dedent("""
        from sae_bench_amortization.registry import EvalEntry
        from sae_bench.evals.base_eval_output import BaseEvalConfig
        EVAL = EvalEntry(name="toy", description="a toy eval from another package", evaluate=print,
                         config_class=BaseEvalConfig)
    """)
    )
    info = tmp_path / "toy_plugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: toy-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[{ENTRY_POINT_GROUP}]\ntoy = toy_plugin:EVAL\n")
    listing = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; sys.path.insert(0, sys.argv[1]); "
            "from sae_bench_amortization.cli import main; sys.exit(main(['list']))",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert listing.returncode == 0, listing.stderr
    assert "toy" in listing.stdout and "a toy eval from another package" in listing.stdout


def test_adapters_and_evals_install_inside_the_package(tmp_path):
    probe = (
        "import importlib.util as u; "
        "print(u.find_spec('evals') is None, u.find_spec('adapters') is None, "
        "u.find_spec('sae_bench_amortization.evals.dead_dense') is not None, "
        "u.find_spec('sae_bench_amortization.adapters') is not None)"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, cwd=tmp_path, timeout=120
    )
    assert done.stdout.split() == ["True", "True", "True", "True"], done.stderr
