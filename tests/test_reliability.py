"""Interrupted and concurrent runs, and property-based checks that readers of untrusted input raise nothing
but the package's own InputError."""

from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sae_lens.saes.topk_sae import TopKSAE, TopKSAEConfig
from safetensors.torch import save_file

from sae_bench_amortization.activations.file import ActivationFile
from sae_bench_amortization.errors import InputError
from sae_bench_amortization.modes import InferenceMode, parse_mode
from sae_bench_amortization.reports.regress import read_baseline

from conftest import write_activations

CLI = [sys.executable, "-m", "sae_bench_amortization.cli"]


def _env() -> dict[str, str]:
    return {**os.environ, "TQDM_DISABLE": "1"}


def _dead_dense_on_three_saes(root: Path, n_tokens: int) -> list[str]:
    """The command line of a real `saebench run --eval dead_dense` over three TopK SAEs into root/out."""
    torch.manual_seed(0)
    saes = []
    for name in ("a", "b", "c"):
        sae = TopKSAE(TopKSAEConfig(d_in=64, d_sae=1024, k=16))
        sae.save_model(root / name)
        saes += ["--sae-path", str(root / name)]
    acts = write_activations(root / "acts.safetensors", torch.randn(n_tokens, 64))
    return [*CLI, "run", "--eval", "dead_dense", *saes, "--activations", str(acts),
            "--output-dir", str(root / "out")]  # fmt: skip


def _results(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in (out / "dead_dense").glob("*_eval_results.json")}


def test_a_killed_run_leaves_no_partial_json_and_a_rerun_completes_only_the_rest(tmp_path):
    args = _dead_dense_on_three_saes(tmp_path, 150_000)
    process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_env())
    deadline = time.time() + 120
    while time.time() < deadline and not _results(tmp_path / "out"):
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    finished = _results(tmp_path / "out")
    assert 1 <= len(finished) < 3, "killed too late (or never wrote) to test resuming"
    for data in finished.values():
        json.loads(data)  # complete JSON, never half-written
    again = subprocess.run(args, capture_output=True, text=True, env=_env())
    assert again.returncode == 0, again.stderr
    assert again.stdout.count("skipping") == len(finished)
    after = _results(tmp_path / "out")
    assert len(after) == 3 and all(after[name] == data for name, data in finished.items())


def test_concurrent_runs_into_one_folder_compute_each_result_once(tmp_path):
    args = _dead_dense_on_three_saes(tmp_path, 100_000)
    runs = [
        subprocess.Popen(
            args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env()
        )
        for _ in range(2)
    ]
    outputs = [run.communicate(timeout=300) for run in runs]
    assert [run.returncode for run in runs] == [0, 0], [err for _, err in outputs]
    results = _results(tmp_path / "out")
    assert len(results) == 3 and all(json.loads(data) for data in results.values())
    written = sum(out.count(" written ") for out, _ in outputs)
    assert written == 3, outputs  # each SAE computed by exactly one of the two runs
    assert not list((tmp_path / "out" / "dead_dense").glob(".*.lock"))


# ------------------------------------------------------------------------------ properties

FUZZ = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@FUZZ
@given(st.text(max_size=30))
def test_inference_mode_parser_raises_only_input_errors(text):
    try:
        mode = parse_mode(text)
    except InputError as exc:
        assert f"'{text}'" in str(exc)  # names the bad value
        return
    assert (
        isinstance(mode, InferenceMode)
        and text in ("amortized", "non_amortized")
        or mode.kind == "semi"
    )


@FUZZ
@given(st.binary(max_size=400))
def test_activation_file_reader_on_arbitrary_bytes(data):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "x.safetensors"
        path.write_bytes(data)
        _read_fully(path)


DTYPES = [
    torch.float32,
    torch.float16,
    torch.bfloat16,
    torch.int64,
    torch.uint8,
    torch.bool,
    torch.float64,
]


@FUZZ
@given(
    names=st.lists(st.sampled_from(["activations", "concepts", "acts", "x"]), min_size=1, max_size=3, unique=True),
    shapes=st.lists(st.lists(st.integers(0, 5), min_size=0, max_size=3), min_size=3, max_size=3),
    dtypes=st.lists(st.sampled_from(DTYPES), min_size=3, max_size=3),
    metadata=st.one_of(
        st.none(),
        st.dictionaries(st.sampled_from(["concept_names", "model_name", "x"]),
                        st.one_of(st.just('["a", "b"]'), st.just("[1]"), st.just("{"), st.text(max_size=8)), max_size=2),
    ),
    values=st.sampled_from([0.0, 1.0, math.nan, math.inf]),
)  # fmt: skip
def test_activation_file_reader_on_structured_safetensors(names, shapes, dtypes, metadata, values):
    tensors = {}
    for name, shape, dtype in zip(names, shapes, dtypes, strict=False):
        tensor = torch.full(shape, values) if dtype.is_floating_point else torch.ones(shape)
        tensors[name] = tensor.to(dtype)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "x.safetensors"
        save_file(tensors, str(path), metadata=metadata)
        _read_fully(path)


def _read_fully(path: Path) -> None:
    try:
        file = ActivationFile(path)
        file.check_finite()
        for batch in file.iter_batches(3):
            assert batch.acts.ndim == 2
    except InputError:
        pass


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=10),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)


@FUZZ
@given(JSON)
def test_baseline_reader_on_arbitrary_json(document):
    _read_baseline_text(json.dumps(document))


@FUZZ
@given(
    st.dictionaries(
        st.text(max_size=6),
        st.dictionaries(
            st.text(max_size=6), st.dictionaries(st.text(max_size=6), JSON, max_size=2), max_size=2
        ),
        max_size=2,
    ),
    st.sampled_from([1, 2, "1", None]),
)
def test_baseline_reader_on_baseline_shaped_json(results, version):
    document = {"format": "sae-bench-amortization-baseline", "version": version, "results": results}
    _read_baseline_text(json.dumps(document))


@FUZZ
@given(st.binary(max_size=200))
def test_baseline_reader_on_arbitrary_bytes(data):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "b.json"
        path.write_bytes(data)
        with contextlib.suppress(InputError):
            read_baseline(path)


def _read_baseline_text(text: str) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "b.json"
        path.write_text(text)
        try:
            results = read_baseline(path)
        except InputError:
            return
        for evals in results.values():
            for modes in evals.values():
                for metrics in modes.values():
                    assert all(
                        isinstance(v, int | float) and math.isfinite(v) for v in metrics.values()
                    )
