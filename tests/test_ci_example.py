"""``examples/ci/published-saes.yml`` is run, not only written: its shell steps, taken from the YAML as they
are, run offline against the test Hugging Face cache (``tests/hf_cache.py``) with the three things a CPU
machine without the hub changes: the SAE list (releases in the cache), ``--device cpu`` and fewer tokens.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from test_air_gapped import (  # noqa: F401
    DL_RELEASE,
    DL_SAE_ID,
    hf_cache,  # noqa: F401  (the session fixture)
    offline,
)

pytestmark = pytest.mark.slow

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "ci" / "published-saes.yml"
EVALUATE_STEP = "Evaluate every SAE (one model in memory at a time)"
REGRESS_STEP = "Compare and regress against the committed baseline"
FIRST_RUN = "saebench regress --results eval_results --write-baseline ci/sae_baseline.json"
ON_THIS_MACHINE = {"--n-tokens 200000": "--n-tokens 1000", "--device cuda": "--device cpu"}
# One 4,096-wide trainer of the cached sweep, at a width whose exact sparse coding (non_amortized, 1,000
# tokens) takes seconds on 2 CPU cores (the 32,768-wide native release takes over ten minutes there and has
# its own tests), then an empty line, which the example's loop skips. A second SAE would run the same code
# again (80 s on 2 cores).
CACHED_SAES = f"{DL_RELEASE} {DL_SAE_ID}\n\n"
EVALS = ("amortization_gap", "dead_dense", "splitting", "absorption_rate")


def workflow() -> dict:
    return yaml.safe_load(EXAMPLE.read_text())


def step_script(name: str) -> str:
    (step,) = [s for s in workflow()["jobs"]["pathologies"]["steps"] if s.get("name") == name]
    return step["run"]


def on_this_machine(script: str) -> str:
    for gpu_box, here in ON_THIS_MACHINE.items():
        assert gpu_box in script, f"the example no longer says {gpu_box!r}: update this test"
        script = script.replace(gpu_box, here)
    return script


def bash(script: str, cwd: Path, saes: str = CACHED_SAES) -> subprocess.CompletedProcess:
    """``script`` under bash -e (as GitHub Actions runs ``run:``), ``saebench`` from this interpreter."""
    bin_dir = str(Path(sys.executable).parent)
    env = {**os.environ, "SAES": saes, "TQDM_DISABLE": "1"}
    env["PATH"] = bin_dir + os.pathsep + env.get("PATH", "")
    assert shutil.which("saebench", path=env["PATH"]) == str(Path(bin_dir) / "saebench")
    return subprocess.run(
        ["bash", "-e", "-c", script], cwd=cwd, env=env, capture_output=True, text=True, timeout=1800
    )


def test_the_examples_saes_are_in_sae_lens_registry():
    """The SAEs the example guards are real release/id pairs of the installed SAE-Lens."""
    from sae_lens.loading.pretrained_saes_directory import get_pretrained_saes_directory

    directory = get_pretrained_saes_directory()
    pairs = [line.split() for line in workflow()["jobs"]["pathologies"]["env"]["SAES"].splitlines()]
    assert pairs
    for release, sae_id in pairs:
        assert sae_id in directory[release].saes_map, (release, sae_id)


def test_the_ci_example_runs_offline_on_cached_releases(offline, tmp_path):  # noqa: F811
    """Evaluate (the example's loop over the SAE list, four evals each), write the first baseline as the header says, then
    compare and regress: exit 0 with nothing worse; every result carries SAEBench's names."""
    assert FIRST_RUN in EXAMPLE.read_text()
    evaluate = bash(on_this_machine(step_script(EVALUATE_STEP)), tmp_path)
    assert evaluate.returncode == 0, evaluate.stderr[-4000:]
    for release, sae_id in (line.split() for line in CACHED_SAES.splitlines() if line):
        name = f"{release}_{sae_id}".replace("/", "_")
        for eval_name in EVALS:
            path = tmp_path / "eval_results" / eval_name / f"{name}_eval_results.json"
            result = json.loads(path.read_text())
            assert (result["sae_lens_release_id"], result["sae_lens_id"]) == (release, sae_id)
            expected_tokens = None if eval_name == "absorption_rate" else 1000  # SAEBench's prompts
            assert result["eval_config"]["n_tokens"] == expected_tokens
    absorption = json.loads(
        (tmp_path / "eval_results" / "absorption_rate"
         / f"{DL_RELEASE}_{DL_SAE_ID}_eval_results.json").read_text()
    )  # fmt: skip
    # SAEBench's first-letter machinery (the default on a TransformerLens resid_post source) ran.
    assert absorption["eval_config"]["definition"].startswith("saebench_first_letter")
    assert absorption["eval_result_metrics"]["absorption"]["n_concepts"] >= 20
    assert "spelling prompts" in absorption["eval_config"]["activation_source"]

    (tmp_path / "ci").mkdir()
    first = bash(FIRST_RUN, tmp_path)
    assert first.returncode == 0, first.stderr[-4000:]
    assert (tmp_path / "ci" / "sae_baseline.json").is_file()
    regress = bash(step_script(REGRESS_STEP), tmp_path)
    assert regress.returncode == 0, regress.stdout[-3000:] + regress.stderr[-3000:]
    assert " 0 worse" in regress.stdout, regress.stdout[-3000:]
    assert (tmp_path / "eval_results" / "summary").is_dir()
    page = (tmp_path / "eval_results" / "report.html").read_text()
    assert "Against the baseline" in page and 'id="regress"' in page
