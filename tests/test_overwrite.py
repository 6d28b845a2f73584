"""Writers never replace a user's file unasked (one line, exit 2, the file untouched); --overwrite does;
temporaries of a killed writer are removed by the next write."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from sae_bench_amortization.atomic import clean_stale_temporaries, write_file_atomic
from sae_bench_amortization.synthetic.training import TRAIN_OUTPUT


def test_synth_train_regress_and_compare_refuse_existing_targets(tmp_path, cli):
    acts = tmp_path / "acts.safetensors"
    assert cli("synth", "--out", acts, "--n-tokens", "2000").code == 0
    before = acts.read_bytes()
    again = cli("synth", "--out", acts, "--n-tokens", "3000")
    assert again.code == 2 and "--overwrite" in again.err and len(again.err.splitlines()) == 1
    assert acts.read_bytes() == before
    assert cli("synth", "--out", acts, "--n-tokens", "3000", "--overwrite").code == 0

    train = ("train", "--activations", acts, "--architecture", "topk", "--d-sae", "64", "--k", "4",
             "--n-tokens", "3000", "--out", tmp_path / "sae", "--device", "cpu")  # fmt: skip
    assert cli(*train).code == 0
    weights = (tmp_path / "sae" / "sae_weights.safetensors").read_bytes()
    refused = cli(*train)
    assert refused.code == 2 and "--out" in refused.err and "--overwrite" in refused.err
    assert (tmp_path / "sae" / "sae_weights.safetensors").read_bytes() == weights
    assert cli(*train, "--overwrite", "--seed", "1").code == 0  # its own earlier output: replaced
    assert (tmp_path / "sae" / "sae_weights.safetensors").read_bytes() != weights
    assert sorted(p.name for p in (tmp_path / "sae").iterdir()) == sorted(TRAIN_OUTPUT)

    out = tmp_path / "out"
    assert cli("run", "--eval", "dead_dense", "--sae-path", tmp_path / "sae", "--activations", acts,
               "--output-dir", out).code == 0  # fmt: skip
    user_file = tmp_path / "mine.json"
    user_file.write_text('{"mine": true}')
    baseline = cli("regress", "--results", out, "--write-baseline", user_file)
    assert baseline.code == 2 and user_file.read_text() == '{"mine": true}'
    assert cli("regress", "--results", out, "--write-baseline", user_file, "--overwrite").code == 0
    assert cli("compare", out).code == 0
    assert cli("compare", out).code == 2
    assert cli("compare", out, "--overwrite").code == 0


def test_synth_replaces_its_own_reference_saes_only(tmp_path, cli):
    from sae_bench_amortization.synthetic import SyntheticConfig, ground_truth
    from sae_bench_amortization.synthetic.reference_saes import REFERENCE_NAMES, reference_saes

    assert sorted(reference_saes(ground_truth(SyntheticConfig()))) == sorted(REFERENCE_NAMES)
    refs = tmp_path / "refs"
    assert cli("synth", "--reference-saes", refs).code == 0
    assert sorted(p.name for p in refs.iterdir()) == sorted(REFERENCE_NAMES)
    assert cli("synth", "--reference-saes", refs, "--overwrite").code == 0
    (refs / "notes.txt").write_text("mine")
    refused = cli("synth", "--reference-saes", refs, "--overwrite")
    assert refused.code == 2 and "holds files synth did not write (notes.txt)" in refused.err
    assert (refs / "notes.txt").read_text() == "mine"


def test_train_loca_resumes_but_does_not_replace_a_foreign_folder(tmp_path, cli):
    folder = tmp_path / "not_loca"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine")
    result = cli("train-loca", "--sae-path", tmp_path / "nope", "--activations", tmp_path / "a",
                 "--out", folder)  # fmt: skip
    assert result.code == 2 and "--overwrite" in result.err
    assert (folder / "notes.txt").read_text() == "mine"


def test_temporaries_of_a_killed_writer_are_removed_by_the_next_write(tmp_path):
    target = tmp_path / "result.json"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True).stdout.strip()  # fmt: skip
    stale = tmp_path / f".result.json.{dead}.abc.tmp"
    stale.write_text("half")
    alive = tmp_path / f".result.json.{os.getppid()}.abc.tmp"  # a running process's: kept
    alive.write_text("busy")
    write_file_atomic(target, lambda path: open(path, "w").write("{}"))  # noqa: SIM115
    assert target.read_text() == "{}" and not stale.exists() and alive.exists()
    assert clean_stale_temporaries(target) == []


@pytest.mark.parametrize("name", ["x.safetensors"])
def test_activation_writer_cleans_a_killed_writers_temporaries(tmp_path, name):
    import torch

    from sae_bench_amortization.activations.file import ActivationFileWriter

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True).stdout.strip()  # fmt: skip
    stale = tmp_path / f".{name}.{dead}.acts-1234"
    stale.write_bytes(b"0" * 1000)
    with ActivationFileWriter(tmp_path / name, 4) as writer:
        writer.write(torch.zeros(3, 4))
    assert not stale.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]
