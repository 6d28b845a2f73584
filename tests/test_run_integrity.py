"""Issue 26: a lock never hides another computation, the order of modes does not matter, every input that
shapes a result is in its fingerprint (the truth sidecar), a --loca-path pairs with its own base SAE,
compare says when results come from several activation sources, dynamics refuses what it would replace and
checkpoints of different widths."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
from sae_lens.saes.standard_sae import StandardSAE, StandardSAEConfig
from safetensors import safe_open
from safetensors.torch import save_file

from sae_bench_amortization.digest import file_digest, tensors_digest
from sae_bench_amortization.errors import InputError
from sae_bench_amortization.runner.results import ResultLock

from conftest import assert_one_line_error, planted_standard_sae, snapshot, write_activations

RESULT = "local_planted_sae_eval_results.json"


# ------------------------------------------------------------------------------ locks


def test_the_lock_holder_records_its_fingerprint_and_a_dead_holders_record_goes(tmp_path):
    result = tmp_path / "x_eval_results.json"
    first, second = ResultLock(result), ResultLock(result)
    assert first.acquire({"inputs": "a"})
    assert not second.acquire({"inputs": "b"})
    assert second.holder() == {"inputs": "a"}
    first.release()
    assert not first.path.exists() and second.holder(attempts=1) is None
    first.path.write_text('{"inputs": "killed holder"}')  # left by a killed run: not locked
    assert second.acquire({"inputs": "b"})
    assert json.loads(second.path.read_text()) == {"inputs": "b"}
    second.release()


def _gap_args(sae: Path, acts: Path, out: Path, *extra) -> list[str]:
    return ["run", "--eval", "amortization_gap", "--sae-path", str(sae), "--activations", str(acts),
            "--output-dir", str(out), "--device", "cpu", "--inference", "amortized", *extra]  # fmt: skip


def _start(args: list[str], err: Path) -> subprocess.Popen:
    """``saebench`` in another process, its stderr into ``err``."""
    return subprocess.Popen(
        [sys.executable, "-m", "sae_bench_amortization.cli", *args],
        stdout=subprocess.PIPE,
        stderr=err.open("w"),
        text=True,
        env={**os.environ, "TQDM_DISABLE": "1"},
    )


def _release_when_waited_on(lock: ResultLock, err: Path, then=None) -> threading.Thread:
    """Releases ``lock`` once the other process says it waits (after ``then()``: the holder's write)."""

    def run() -> None:
        deadline = time.monotonic() + 300
        while "waiting for it to finish" not in err.read_text() and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(0.5)
        if then is not None:
            then()
        lock.release()

    thread = threading.Thread(target=run)
    thread.start()
    return thread


@pytest.fixture
def two_sources(tmp_path, cli):
    """The planted SAE, its activations A and other activations B, and A's result (made elsewhere)."""
    planted = planted_standard_sae(tmp_path, n_tokens=400)
    other = write_activations(tmp_path / "other.safetensors", torch.randn(400, 20))
    made = tmp_path / "made_elsewhere"
    assert cli(*_gap_args(planted.path, planted.activations, made)).code == 0
    written = (made / "amortization_gap" / RESULT).read_bytes()
    return planted, other, written


def test_a_run_from_other_inputs_waits_for_the_lock_then_refuses_or_recomputes(
    two_sources, tmp_path
):
    planted, other, written = two_sources
    fingerprint_a = json.loads(written)["fingerprint"]
    out = tmp_path / "out"
    path = out / "amortization_gap" / RESULT
    path.parent.mkdir(parents=True)

    lock = ResultLock(path)  # "the first run": computing A's result
    assert lock.acquire(fingerprint_a)
    err = tmp_path / "err_refused.txt"
    second = _start(_gap_args(planted.path, other, out), err)
    holder = _release_when_waited_on(lock, err, then=lambda: path.write_bytes(written))
    stdout, _ = second.communicate(timeout=300)
    holder.join()
    lines = err.read_text().strip().splitlines()
    assert second.returncode == 2, (stdout, lines)
    assert "another run is computing it from other inputs" in lines[0]  # the note, then the error
    (error,) = [line for line in lines if line.startswith("saebench: error:")]
    assert "made with other inputs" in error and "activation_file_sha256" in error, error
    assert error == lines[-1] and "Traceback" not in err.read_text()
    assert path.read_bytes() == written  # the first run's result, untouched

    assert lock.acquire(fingerprint_a)
    err = tmp_path / "err_forced.txt"
    forced = _start(_gap_args(planted.path, other, out, "--force-rerun"), err)
    holder = _release_when_waited_on(lock, err)
    stdout, _ = forced.communicate(timeout=300)
    holder.join()
    assert forced.returncode == 0, err.read_text()
    stored = json.loads(path.read_text())["fingerprint"]["activations"]
    assert stored["activation_file_sha256"] == file_digest(other)  # computed after the holder
    assert not lock.path.exists()


def test_a_run_from_the_same_inputs_skips_a_locked_result(two_sources, tmp_path):
    planted, _, written = two_sources
    out = tmp_path / "out"
    path = out / "amortization_gap" / RESULT
    path.parent.mkdir(parents=True)
    with ResultLock(path) as lock:
        assert lock.acquire(json.loads(written)["fingerprint"])
        done = subprocess.run(
            [sys.executable, "-m", "sae_bench_amortization.cli",
             *_gap_args(planted.path, planted.activations, out)],
            capture_output=True, text=True, timeout=300, env={**os.environ, "TQDM_DISABLE": "1"},
        )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "skipping local_planted_sae: another run is computing it" in done.stdout
    assert "waiting" not in done.stderr and not path.exists()  # nothing computed twice


# ------------------------------------------------------------------------------ fingerprints


def test_the_order_of_the_modes_does_not_change_the_fingerprint(tmp_path, cli):
    planted = planted_standard_sae(tmp_path, n_tokens=400)
    out = tmp_path / "out"
    args = ["run", "--eval", "amortization_gap", "--sae-path", planted.path, "--activations",
            planted.activations, "--output-dir", out, "--device", "cpu"]  # fmt: skip
    assert cli(*args, "--inference", "semi:5", "--inference", "amortized").code == 0
    path = out / "amortization_gap" / RESULT
    assert json.loads(path.read_text())["fingerprint"]["config"]["modes"] == ["amortized", "semi:5"]
    before = snapshot(out)
    again = cli(*args, "--inference", "amortized", "--inference", "semi:5")
    assert again.code == 0 and "up to date" in again.out, again.err
    assert snapshot(out) == before

    stored = json.loads(path.read_text())  # a result stored with its modes in the order given
    stored["fingerprint"]["config"]["modes"] = ["semi:5", "amortized"]
    path.write_text(json.dumps(stored))
    assert "up to date" in cli(*args, "--inference", "amortized", "--inference", "semi:5").out
    assert_one_line_error(
        cli(*args, "--inference", "semi:25", "--inference", "amortized"), "config.modes"
    )


def test_the_truth_sidecar_is_in_the_fingerprint(tmp_path, cli):
    acts = tmp_path / "synth.safetensors"
    made = cli("synth", "--out", acts, "--n-tokens", "1500", "--d-in", "16", "--n-features", "32")
    assert made.code == 0, made.err
    sae = StandardSAE(StandardSAEConfig(d_in=16, d_sae=32))
    sae.save_model(tmp_path / "sae")
    out = tmp_path / "out"
    args = ["run", "--eval", "dead_dense", "--sae-path", tmp_path / "sae", "--activations", acts,
            "--output-dir", out, "--device", "cpu"]  # fmt: skip
    assert cli(*args).code == 0
    (path,) = (out / "dead_dense").glob("*_eval_results.json")
    stored = json.loads(path.read_text())
    sidecar = Path(f"{acts}.truth.safetensors")
    assert stored["fingerprint"]["activations"]["truth_sha256"] == file_digest(sidecar)
    assert "ground_truth" in stored["eval_result_metrics"]  # the metrics read from it
    before = snapshot(out)

    with safe_open(str(sidecar), framework="pt") as handle:  # another truth, same activation file
        metadata = handle.metadata()
        tensors = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118
    tensors["dictionary"] = tensors["dictionary"].flip(0).contiguous()
    save_file(tensors, str(sidecar), metadata)
    assert_one_line_error(
        cli(*args), "made with other inputs", "activations.truth_sha256", "--force-rerun"
    )
    assert snapshot(out) == before

    planted = planted_standard_sae(tmp_path / "no_truth", n_tokens=200)  # no sidecar: nothing added
    assert cli("run", "--eval", "dead_dense", "--sae-path", planted.path, "--activations",
               planted.activations, "--output-dir", tmp_path / "out2").code == 0  # fmt: skip
    plain = json.loads((tmp_path / "out2" / "dead_dense" / RESULT).read_text())
    assert set(plain["fingerprint"]["activations"]) == {"activation_file_sha256", "n_tokens"}


# ------------------------------------------------------------------------------ LocA pairing


def _topk(path: Path, d_sae: int, seed: int) -> Path:
    from sae_lens.saes.topk_sae import TopKSAE, TopKSAEConfig

    torch.manual_seed(seed)
    sae = TopKSAE(TopKSAEConfig(d_in=16, d_sae=d_sae, k=4))
    with torch.no_grad():
        sae.W_dec.copy_(torch.nn.functional.normalize(torch.randn(d_sae, 16), dim=1))
        sae.W_enc.copy_(sae.W_dec.T)
    sae.save_model(path)
    return path


def test_a_loca_path_must_be_made_from_this_sae(tmp_path, cli):
    from sae_bench_amortization.adapters.loca import LocASAE
    from sae_bench_amortization.sources.saes import spec_from_path

    x = torch.randn(1024, 16)
    acts = write_activations(tmp_path / "a.safetensors", x)
    base = _topk(tmp_path / "base", 64, seed=0)
    other = _topk(tmp_path / "other", 64, seed=1)
    narrow = _topk(tmp_path / "narrow", 48, seed=2)
    loaded = spec_from_path(base).load("cpu", "float32")
    LocASAE.from_sae(loaded, x, n_groups=4, group_k=[2, 2, 1, 1]).save_model(tmp_path / "loca")
    cfg_path = tmp_path / "loca" / "cfg.json"
    cfg = json.loads(cfg_path.read_text())
    digest = tensors_digest(loaded.state_dict())
    cfg["base_sae"] = {"weights_sha256": digest, "d_sae": 64, "d_in": 16, "path": str(base)}
    cfg_path.write_text(json.dumps(cfg))

    def gap(sae: Path, *extra):
        return cli("run", "--eval", "amortization_gap", "--sae-path", sae, "--loca-path",
                   tmp_path / "loca", "--activations", acts, "--output-dir", tmp_path / "out",
                   "--device", "cpu", "--inference", "amortized", "--n-tokens", "256", *extra)  # fmt: skip

    refused = gap(other)
    assert_one_line_error(refused, "was trained from another SAE", f"base sha256 {digest[:12]}")
    assert not (tmp_path / "out").exists()  # refused before any work
    paired = gap(base)
    assert paired.code == 0, paired.err
    (result,) = (tmp_path / "out" / "amortization_gap").glob("*_eval_results.json")
    assert "loca" in [row["mode"] for row in json.loads(result.read_text())["eval_result_details"]]

    cfg["base_sae"]["d_sae"] = 32  # another dtype: the hash is not comparable, the widths are
    cfg_path.write_text(json.dumps(cfg))
    assert_one_line_error(gap(other, "--dtype", "bfloat16"), "base d_sae 32, this SAE d_sae 64")
    del cfg["base_sae"]  # a LocA-SAE made before the record: its own width must match
    cfg_path.write_text(json.dumps(cfg))
    assert_one_line_error(
        gap(narrow), "was trained from another SAE", "base d_sae 64, this SAE d_sae 48"
    )


# ------------------------------------------------------------------------------ compare, dynamics


def test_compare_names_several_activation_sources_and_shows_them(tmp_path, cli):
    planted = planted_standard_sae(tmp_path, n_tokens=300)
    other = write_activations(tmp_path / "other.safetensors", torch.rand(300, 20))
    out = tmp_path / "out"
    for name, acts in (("first", planted.activations), ("second", other)):
        assert cli("run", "--eval", "dead_dense", "--sae-path", planted.path, "--sae-name", name,
                   "--activations", acts, "--output-dir", out).code == 0  # fmt: skip
    result = cli("compare", out, "--out", tmp_path / "summary")
    assert result.code == 0, result.err
    (note,) = result.err.strip().splitlines()
    short_a, short_b = file_digest(planted.activations)[:12], file_digest(other)[:12]
    assert "2 activation sources" in note
    assert (
        f"{short_a}: local_first/dead_dense" in note
        and f"{short_b}: local_second/dead_dense" in note
    )
    table = pd.read_csv(tmp_path / "summary" / "summary.csv", dtype={"activation_source": str})
    assert list(table.columns[:4]) == ["sae", "eval", "mode", "activation_source"]
    assert dict(zip(table["sae"], table["activation_source"], strict=True)) == {
        "local_first": short_a,
        "local_second": short_b,
    }

    (out / "dead_dense" / "local_second_eval_results.json").unlink()
    one = cli("compare", out, "--out", tmp_path / "summary1")
    assert one.code == 0 and one.err == "", one.err  # one source: nothing to say


def test_dynamics_refuses_to_replace_its_outputs_without_overwrite(tmp_path):
    from sae_bench_amortization.reports.dynamics import check_targets

    check_targets(tmp_path, overwrite=False)  # nothing there yet
    (tmp_path / "dynamics").mkdir()
    (tmp_path / "dynamics" / "dynamics.png").write_bytes(b"earlier")
    with pytest.raises(InputError, match=r"dynamics\.png exists: pass --overwrite"):
        check_targets(tmp_path, overwrite=False)
    check_targets(tmp_path, overwrite=True)
    assert (tmp_path / "dynamics" / "dynamics.png").read_bytes() == b"earlier"


def test_dynamics_refuses_checkpoints_of_different_widths(tmp_path, cli):
    from sae_bench_amortization.reports.dynamics import check_widths, checkpoint_cfgs
    from sae_bench_amortization.sources.saes import spec_from_path

    planted = planted_standard_sae(tmp_path, n_tokens=300)  # d_in 20, d_sae 15
    wide = tmp_path / "wide"
    StandardSAE(StandardSAEConfig(d_in=20, d_sae=30)).save_model(wide)
    specs = [spec_from_path(planted.path), spec_from_path(wide)]
    with pytest.raises(
        InputError, match=r"d_in 20, d_sae 15: local_planted_sae; d_in 20, d_sae 30"
    ):
        check_widths(checkpoint_cfgs(specs))
    check_widths(checkpoint_cfgs([specs[0], spec_from_path(planted.path)]))  # one width: fine

    result = cli("dynamics", "--eval", "amortization_gap", "--sae-path", planted.path, "--sae-path",
                 wide, "--activations", planted.activations, "--output-dir", tmp_path / "out",
                 "--device", "cpu", "--inference", "amortized")  # fmt: skip
    assert_one_line_error(result, "widths differ", "d_sae 15", "d_sae 30")
    assert not (tmp_path / "out" / "dynamics").exists()
