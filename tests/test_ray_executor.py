"""--executor ray: the same results as the sequential executor, failures isolated per task, resumable."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from sae_lens.saes.topk_sae import TopKSAE, TopKSAEConfig

from conftest import write_activations

ray = pytest.importorskip("ray")  # the [ray] extra; CI installs it

CLI = [sys.executable, "-m", "sae_bench_amortization.cli"]


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def _same(a, b, path="") -> None:
    """Equal JSON but timings, floats to 1e-9 relative (float sums in other thread counts differ in the
    last bit)."""
    if isinstance(a, dict):
        assert a.keys() == b.keys(), path
        for key in a:
            if key not in ("seconds_per_1k_tokens", "seconds", "eval_id", "datetime_epoch_millis"):
                _same(a[key], b[key], f"{path}.{key}")
    elif isinstance(a, list):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _same(x, y, f"{path}[{i}]")
    elif isinstance(a, float) and isinstance(b, float):
        assert math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12), (path, a, b)
    else:
        assert a == b, (path, a, b)


def test_ray_gives_the_sequential_metrics_on_the_embedded_default(local_ray, tmp_path, cli):
    # 4,000 of the default's 20,000 tokens: the same code paths, a fifth of the work
    evals = ["--eval", "dead_dense", "--eval", "amortization_gap", "--seed", "7",
             "--n-tokens", "4000"]  # fmt: skip
    assert cli("run", *evals, "--output-dir", tmp_path / "seq").code == 0
    result = cli("run", *evals, "--output-dir", tmp_path / "ray", "--executor", "ray")
    assert result.code == 0, result.err
    assert result.out.count(" written ") == 2
    for name in ("dead_dense", "amortization_gap"):
        (seq,) = (tmp_path / "seq" / name).glob("*_eval_results.json")
        (par,) = (tmp_path / "ray" / name).glob("*_eval_results.json")
        assert seq.name == par.name
        _same(json.loads(seq.read_text()), json.loads(par.read_text()))


def _saes(root: Path, widths: list[int]) -> list[str]:
    torch.manual_seed(0)
    args = []
    for i, d_in in enumerate(widths):
        TopKSAE(TopKSAEConfig(d_in=d_in, d_sae=1024, k=16)).save_model(root / f"sae{i}")
        args += ["--sae-path", str(root / f"sae{i}")]
    return args


def test_bad_input_in_any_task_refuses_the_command_before_a_task_runs(local_ray, tmp_path, cli):
    """The whole command is checked on the driver first: an SAE that does not fit the activations stops it
    with one line and nothing is written (failures at run time cost only their own task: next test)."""
    acts = write_activations(tmp_path / "acts.safetensors", torch.randn(3000, 64))
    saes = _saes(tmp_path, [64, 32, 64])  # the second does not fit the activations
    result = cli("run", "--eval", "dead_dense", *saes, "--activations", acts, "--output-dir", tmp_path / "out",
                 "--executor", "ray")  # fmt: skip
    assert result.code == 2 and len(result.err.strip().splitlines()) == 1, result.err
    assert "SAE d_in is 32" in result.err
    assert not (tmp_path / "out").exists()


def test_killing_a_tasks_worker_keeps_the_other_results_and_a_rerun_completes_only_the_rest(
    tmp_path,
):
    # 100,000 tokens: each task runs for seconds, long enough to be seen and killed mid-way
    acts = write_activations(tmp_path / "acts.safetensors", torch.randn(100_000, 64))
    saes = _saes(tmp_path, [64, 64, 64, 64])
    args = [*CLI, "run", "--eval", "dead_dense", *saes, "--activations", str(acts),
            "--output-dir", str(tmp_path / "out"), "--executor", "ray"]  # fmt: skip
    env = {**os.environ, "TQDM_DISABLE": "1", "RAY_ADDRESS": ""}
    driver = subprocess.Popen(
        args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    victim, deadline = None, time.time() + 120
    while victim is None and time.time() < deadline and driver.poll() is None:
        found = subprocess.run(
            ["pgrep", "-f", "ray::_run_task"], capture_output=True, text=True
        ).stdout.split()
        victim = int(found[0]) if found else None
        time.sleep(0.05)
    assert victim is not None, "no Ray task seen running"
    os.kill(victim, signal.SIGKILL)
    out, err = driver.communicate(timeout=300)
    assert driver.returncode == 1, (out, err)
    statuses = [line.split()[2] for line in out.splitlines() if line.startswith("dead_dense ")]
    assert sorted(statuses) == ["failed:", "written", "written", "written"], out
    assert "WorkerCrashedError" in out or "died" in out, out
    written = {p.name: p.read_bytes() for p in (tmp_path / "out" / "dead_dense").glob("*.json")}
    assert len(written) == 3 and all(json.loads(data) for data in written.values())
    again = subprocess.run(args, capture_output=True, text=True, env=env)
    assert again.returncode == 0, again.stderr
    statuses = [
        line.split()[2] for line in again.stdout.splitlines() if line.startswith("dead_dense ")
    ]
    assert sorted(statuses) == ["skipped", "skipped", "skipped", "written"], again.stdout
    after = {p.name: p.read_bytes() for p in (tmp_path / "out" / "dead_dense").glob("*.json")}
    assert len(after) == 4 and all(after[name] == data for name, data in written.items())
