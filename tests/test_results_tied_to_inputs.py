"""Nothing stale, nothing garbage: a result carries the fingerprint of its inputs; a rerun skips it only when
they are the same (printing its stored metrics) and otherwise stops before any work naming what changed;
the whole command is checked before the first write; what cannot be measured is null with a reason;
records say what was read."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

from conftest import assert_one_line_error, planted_standard_sae, snapshot, write_activations


def _gap(planted, out, *extra, acts=None):
    return ("run", "--eval", "amortization_gap", "--sae-path", planted.path, "--activations",
            acts or planted.activations, "--output-dir", out, "--device", "cpu", *extra)  # fmt: skip


def test_a_rerun_skips_only_an_up_to_date_result_and_names_what_changed(planted, tmp_path, cli):
    out = tmp_path / "out"
    assert cli(*_gap(planted, out, "--inference", "semi:5")).code == 0
    path = out / "amortization_gap" / "local_planted_sae_eval_results.json"
    stored = json.loads(path.read_text())
    fingerprint = stored["fingerprint"]
    assert fingerprint["eval"] == "amortization_gap"
    assert fingerprint["config"]["modes"] == ["semi:5"]
    assert len(fingerprint["sae"]["weights_sha256"]) == 64
    assert fingerprint["activations"]["n_tokens"] == 1000
    before = snapshot(out)

    again = cli(
        *_gap(planted, out, "--inference", "semi:5", "--batch-size", "128")
    )  # scheduling only
    assert again.code == 0 and "up to date" in again.out
    gap = stored["eval_result_metrics"]["amortization"]["mean_gap"]
    assert f"mean_gap {gap:.4g}" in again.out  # the stored metrics, not a bare "exists"
    assert snapshot(out) == before

    other_acts = write_activations(tmp_path / "other.safetensors", torch.randn(1000, 20))
    changed = {
        "steps": (_gap(planted, out, "--inference", "semi:50"), "semi:50"),
        "lambda": (_gap(planted, out, "--inference", "semi:5", "--l1-coefficient", "0.1"),
                   "inference.l1_coefficient"),
        "activations": (_gap(planted, out, "--inference", "semi:5", acts=other_acts),
                        "activation_file_sha256"),
        "option": (_gap(planted, out, "--inference", "semi:5", "--dense-threshold", "0.2"),
                   "config.dense_threshold"),
    }  # fmt: skip
    for name, (args, fragment) in changed.items():
        result = cli(*args)
        assert_one_line_error(result, "made with other inputs", fragment, "--force-rerun")
        assert snapshot(out) == before, name

    weights = load_file(str(planted.path / "sae_weights.safetensors"))
    weights["W_dec"] = weights["W_dec"] * 1.5
    save_file(weights, str(planted.path / "sae_weights.safetensors"))
    assert_one_line_error(cli(*_gap(planted, out, "--inference", "semi:5")), "sae.weights_sha256")
    assert snapshot(out) == before

    forced = cli(*_gap(planted, out, "--inference", "semi:5", "--force-rerun"))
    assert forced.code == 0
    new = json.loads(path.read_text())["fingerprint"]
    assert new["sae"]["weights_sha256"] != fingerprint["sae"]["weights_sha256"]
    assert cli(*_gap(planted, out, "--inference", "semi:5")).code == 0  # up to date again

    unknown = json.loads(path.read_text())
    del unknown["fingerprint"]
    path.write_text(json.dumps(unknown))
    assert_one_line_error(
        cli(*_gap(planted, out, "--inference", "semi:5")), "records no fingerprint"
    )


def test_the_whole_command_is_checked_before_the_first_write(planted, tmp_path, cli):
    """The issue's case: dead_dense first, then evals that need concept labels the file lacks."""
    out = tmp_path / "fresh" / "out"
    result = cli("run", "--eval", "dead_dense", "--eval", "splitting", "--eval", "absorption_rate",
                 "--eval", "amortization_gap", "--sae-path", planted.path, "--activations",
                 planted.activations, "--output-dir", out)  # fmt: skip
    assert_one_line_error(result, "splitting needs concept labels")
    assert not (tmp_path / "fresh").exists()  # no empty folders either

    bad = tmp_path / "bad_sae"
    shutil.copytree(planted.path, bad)
    weights = load_file(str(bad / "sae_weights.safetensors"))
    weights["W_dec"][3, :2] = float("nan")
    save_file(weights, str(bad / "sae_weights.safetensors"))
    result = cli("run", "--eval", "dead_dense", "--sae-path", planted.path, "--sae-path", bad,
                 "--activations", planted.activations, "--output-dir", out)  # fmt: skip
    assert_one_line_error(result, "SAE local_bad_sae: W_dec holds 2 NaN")
    assert not (tmp_path / "fresh").exists()  # the good first SAE was not evaluated either


def test_a_concept_that_never_occurs_is_null_with_its_reason(tmp_path, cli):
    planted = planted_standard_sae(tmp_path)
    acts = 2.0 * torch.eye(20)[torch.arange(1000) % 20]
    concepts = torch.zeros(1000, 2, dtype=torch.bool)
    concepts[:, 0] = torch.arange(1000) % 20 == 3  # latent 3 reads coordinate 3: it never misses
    file = write_activations(tmp_path / "labelled.safetensors", acts, concepts, ["three", "never"])
    out = tmp_path / "out"
    for eval_name in ("splitting", "absorption_rate"):
        assert cli("run", "--eval", eval_name, "--sae-path", planted.path, "--activations", file,
                   "--output-dir", out).code == 0  # fmt: skip
    splitting = json.loads(next((out / "splitting").glob("*.json")).read_text())
    rows = {row["concept"]: row for row in splitting["eval_result_details"]}
    assert (
        rows["never"]["delta_f1"] is None and rows["never"]["reason"] == "the concept never occurs"
    )
    assert rows["three"]["delta_f1"] is not None and rows["three"]["reason"] is None
    metrics = splitting["eval_result_metrics"]["splitting"]
    assert metrics["mean_delta_f1"] == rows["three"]["delta_f1"] and metrics["n_concepts"] == 1

    absorption = json.loads(next((out / "absorption_rate").glob("*.json")).read_text())
    rows = {row["concept"]: row for row in absorption["eval_result_details"]}
    assert rows["never"]["absorption_rate"] is None
    assert rows["three"]["main_latents"] == [3]
    assert rows["three"]["absorption_rate"] is None  # 0/0: latent 3 fires on every positive
    assert "never miss" in rows["three"]["reason"]
    assert rows["three"]["full_absorption_rate"] == 0.0 and rows["three"]["n_tokens"] == 50
    metrics = absorption["eval_result_metrics"]["absorption"]
    assert metrics["absorption_rate"] is None and metrics["n_concepts"] == 0
    assert "never miss" in metrics["null_reason"] and "never occurs" in metrics["null_reason"]


def test_zero_variance_activations_give_a_null_nmse_with_its_reason(planted, tmp_path, cli):
    zeros = write_activations(tmp_path / "zeros.safetensors", torch.zeros(500, 20))
    out = tmp_path / "out"
    result = cli("run", "--eval", "amortization_gap", "--sae-path", planted.path, "--activations", zeros,
                 "--output-dir", out, "--inference", "semi:2", "--l1-coefficient", "0.1")  # fmt: skip
    assert result.code == 0, result.err
    assert "null nmse (every mode): the activations have no variance" in result.out
    data = json.loads(next((out / "amortization_gap").glob("*.json")).read_text())
    for row in data["eval_result_details"]:
        assert row["nmse"] is None and "no variance" in row["undefined"]["nmse"]
    csv = next((out / "amortization_gap").glob("*.csv")).read_text().splitlines()
    assert all(line.split(",")[1] == "" for line in csv[1:])  # empty, never a huge number


def test_n_tokens_records_what_was_read(planted, tmp_path, cli):
    out = tmp_path / "out"
    result = cli("run", "--eval", "dead_dense", "--eval", "amortization_gap", "--sae-path", planted.path,
                 "--activations", planted.activations, "--n-tokens", "50000", "--output-dir", out)  # fmt: skip
    assert result.code == 0
    assert "--n-tokens 50000 asks for more than" in result.err and "its 1000 tokens" in result.err
    for eval_name in ("dead_dense", "amortization_gap"):
        data = json.loads(next((out / eval_name).glob("*.json")).read_text())
        assert data["eval_config"]["n_tokens"] == 1000, eval_name


def test_many_solver_steps_need_the_flag(planted, tmp_path, cli):
    out = tmp_path / "out"
    refused = cli("run", "--eval", "dead_dense", "--sae-path", planted.path, "--activations",
                  planted.activations, "--inference", "semi:5000", "--output-dir", out)  # fmt: skip
    assert_one_line_error(refused, "semi:5000 runs 5000 solver steps", "--allow-many-steps")
    assert not out.exists()
    few = write_activations(
        tmp_path / "few.safetensors", 2.0 * torch.eye(20)[torch.arange(40) % 20]
    )
    allowed = cli("run", "--eval", "dead_dense", "--sae-path", planted.path, "--activations", few,
                  "--inference", "semi:1001", "--allow-many-steps", "--output-dir", out)  # fmt: skip
    assert allowed.code == 0, allowed.err
    data = json.loads(next((out / "dead_dense").glob("*.json")).read_text())
    assert data["eval_config"]["inference_mode"] == "semi:1001"


def test_a_counting_source_counts_the_longest_pass_and_yields_everything():
    from sae_bench_amortization.activations.sources import CountingSource, TensorActivations

    acts = torch.randn(1000, 4)
    counting = CountingSource(TensorActivations(acts), progress="semi:2000")
    assert torch.equal(torch.cat([b.acts for b in counting.iter_batches(300)]), acts)
    first = next(iter(counting.iter_batches(100)))
    assert first.acts.shape[0] == 100 and counting.tokens_read == 1000


@pytest.mark.parametrize("huge", [1e20, -123456789.123])
def test_printed_tables_never_merge_columns(huge):
    from sae_bench_amortization.evals.amortization_gap.main import format_table

    rows = [
        {"mode": "amortized", "nmse": huge, "l0": huge, "objective": huge, "dead_rate": 0.5},
        {"mode": "semi:100000", "nmse": 0.1, "l0": 3.0, "objective": huge, "dead_rate": None},
    ]
    lines = format_table("sae", rows, 0.1).splitlines()
    # mode, NMSE, NMSE-refit, L0, objective, dead (then the legend)
    assert [len(line.split()) for line in lines[1:4]] == [6, 6, 6]
    assert lines[4] == "columns:"
