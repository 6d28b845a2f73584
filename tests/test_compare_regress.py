"""saebench compare (table + plots) and saebench regress (direction-aware baseline checks)."""

from __future__ import annotations

import json
import os
import shutil

import matplotlib.image
import pytest

from sae_bench_amortization.reports.compare import load_results
from sae_bench_amortization.reports.regress import status_of

from conftest import planted_standard_sae


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    """Real result files: dead_dense and amortization_gap (4 modes) for two SAEs on planted tokens."""
    from sae_bench_amortization.cli import main

    root = tmp_path_factory.mktemp("results")
    planted = planted_standard_sae(root / "planted", n_tokens=600)
    acts = planted.activations
    for eval_args in (
        ["--eval", "amortization_gap", "--inference", "amortized", "--inference", "semi:2",
         "--inference", "semi:10", "--inference", "non_amortized"],
        ["--eval", "dead_dense"],
    ):  # fmt: skip
        code = main(
            ["run", *eval_args, "--sae-path", str(planted.path), "--sae-path", str(planted.path),
             "--sae-name", "first", "--sae-name", "second", "--activations", str(acts),
             "--output-dir", str(root / "out"), "--device", "cpu"]
        )  # fmt: skip
        assert code == 0
    return root / "out"


def test_one_row_per_sae_eval_mode_with_values_from_the_files(results):
    frame = load_results(results)
    assert set(frame["sae"]) == {"local_first", "local_second"}
    gap_rows = frame[(frame["eval"] == "amortization_gap") & (frame["sae"] == "local_first")]
    assert list(gap_rows["mode"]) == ["amortized", "semi:2", "semi:10", "non_amortized"]
    data = json.loads((results / "amortization_gap" / "local_first_eval_results.json").read_text())
    for detail in data["eval_result_details"]:
        row = gap_rows[gap_rows["mode"] == detail["mode"]].iloc[0]
        assert row["nmse"] == detail["nmse"] and row["dead_rate"] == detail["dead_rate"]
    gap = data["eval_result_metrics"]["amortization"]["mean_gap"]
    assert gap_rows.set_index("mode").loc["amortized", "mean_gap"] == gap
    dead = frame[(frame["eval"] == "dead_dense") & (frame["sae"] == "local_second")].iloc[0]
    assert dead["mode"] == "amortized" and dead["dead_rate"] == pytest.approx(3 / 15)


def test_compare_writes_tables_and_readable_plots(results, tmp_path, cli):
    result = cli("compare", results, "--out", tmp_path / "summary")
    assert result.code == 0, result.err
    csv = (tmp_path / "summary" / "summary.csv").read_text().splitlines()
    assert csv[0].startswith("sae,eval,mode,") and len(csv) == 1 + 2 * 4 + 2
    markdown = (tmp_path / "summary" / "summary.md").read_text()
    assert (
        markdown.startswith("| sae | eval | mode |")
        and "| local_first | amortization_gap | semi:10 |" in markdown
    )
    for name in ("pathologies_by_mode.png", "ista_steps_ablation.png", "l0_nmse_pareto.png"):
        image = matplotlib.image.imread(tmp_path / "summary" / name)
        assert image.shape[0] > 300 and image.shape[1] > 500 and image.std() > 0.05, name


def test_regress_identical_worse_better_and_bad_baselines(results, tmp_path, cli):
    baseline = tmp_path / "baseline.json"
    assert cli("regress", "--results", results, "--write-baseline", baseline).code == 0
    document = json.loads(baseline.read_text())
    assert document["results"]["local_first"]["dead_dense"]["amortized"][
        "dead_rate"
    ] == pytest.approx(0.2)

    same = cli("regress", "--results", results, "--baseline", baseline)
    assert same.code == 0 and " 0 worse" in same.out, same.out

    def edited(dead_rate: float):
        copy = tmp_path / f"results_{dead_rate}"
        shutil.rmtree(copy, ignore_errors=True)
        shutil.copytree(results, copy)
        path = copy / "dead_dense" / "local_first_eval_results.json"
        data = json.loads(path.read_text())
        data["eval_result_metrics"]["pathologies"]["dead_rate"] = dead_rate
        path.write_text(json.dumps(data))
        return copy

    worse = cli("regress", "--results", edited(0.4), "--baseline", baseline)
    assert worse.code == 1
    line = next(line for line in worse.out.splitlines() if "worse" in line and "dead_rate" in line)
    assert "local_first" in line and "dead_dense" in line and "0.2" in line and "0.4" in line
    assert cli("regress", "--results", edited(0.0), "--baseline", baseline).code == 0
    assert (
        cli("regress", "--results", edited(0.205), "--baseline", baseline).code == 0
    )  # within atol
    only_nmse = cli("regress", "--results", edited(0.4), "--baseline", baseline, "--metric", "nmse")
    assert only_nmse.code == 0

    document["results"]["missing_sae"] = document["results"]["local_first"]
    (tmp_path / "extra.json").write_text(json.dumps(document))
    (tmp_path / "broken.json").write_text(
        '{"format": "sae-bench-amortization-baseline", "version": 1, "results": {"a": 3}}'
    )
    (tmp_path / "notjson.json").write_text("{nope")
    missing = cli("regress", "--results", results, "--baseline", tmp_path / "extra.json")
    assert missing.code == 0, missing.err  # listed, not a failure unless --require-all
    rows = [line for line in missing.out.splitlines() if line.startswith("missing_sae")]
    assert rows and all(line.split()[-1] == "missing" for line in rows), missing.out
    assert f"{len(rows)} missing" in missing.out.splitlines()[-1]
    required = cli("regress", "--results", results, "--baseline", tmp_path / "extra.json",
                   "--require-all")  # fmt: skip
    assert required.code == 1 and required.out == missing.out
    for bad, message in [
        (tmp_path / "broken.json", "results['a'] must be an object of evals"),
        (tmp_path / "notjson.json", "is not readable JSON"),
        (tmp_path / "absent.json", "baseline not found"),
    ]:
        result = cli("regress", "--results", results, "--baseline", bad)
        assert result.code == 2 and len(result.err.strip().splitlines()) == 1, result.err
        assert message in result.err, result.err
    result = cli("regress", "--results", results, "--baseline", baseline, "--metric", "nope")
    assert result.code == 2 and "--metric nope is not in the baseline" in result.err


def test_direction_aware_status():
    assert status_of("dead_rate", 0.1, 0.2, 0.05, 0.01) == "worse"
    assert status_of("dead_rate", 0.2, 0.1, 0.05, 0.01) == "better"
    assert status_of("explained_variance", 0.9, 0.7, 0.05, 0.01) == "worse"
    assert status_of("nmse", 1.0, 1.04, 0.05, 0.0) == "within tolerance"  # rtol · |baseline|
    assert status_of("l0", 4.0, 6.0, 0.05, 0.01) == "changed"


def test_example_workflow_commands_parse_and_the_ci_baseline_reads():
    import shlex
    from pathlib import Path

    import yaml

    from sae_bench_amortization.cli import build_parser
    from sae_bench_amortization.reports.regress import read_baseline

    root = Path(__file__).resolve().parents[1]
    workflow = yaml.safe_load((root / "examples" / "ci" / "published-saes.yml").read_text())
    script = "\n".join(step.get("run", "") for step in workflow["jobs"]["pathologies"]["steps"])
    script = script.replace("\\\n", " ").replace('"$release"', "R").replace('"$sae_id"', "ID")
    commands = [
        line.strip() for line in script.splitlines() if line.strip().startswith("saebench ")
    ]
    assert {shlex.split(c)[1] for c in commands} == {"run", "compare", "report", "regress"}
    for command in commands:
        build_parser().parse_args(shlex.split(command)[1:])  # exits (SystemExit) on a bad flag
    baseline = read_baseline(root / ".ci" / "baseline.json")
    assert set(baseline["local_synthetic_topk"]["amortization_gap"]) == {
        "amortized", "semi:5", "semi:25", "non_amortized"
    }  # fmt: skip


def test_duplicate_and_malformed_results_are_one_line(results, tmp_path, cli):
    copy = tmp_path / "dup"
    shutil.copytree(results, copy)
    shutil.copytree(copy / "dead_dense", copy / "old" / "dead_dense")  # the same results twice
    result = cli("regress", "--results", copy, "--baseline", tmp_path / "unused.json")
    assert (
        result.code == 2
        and "two results for SAE local_first, eval dead_dense, mode amortized" in result.err
    )
    broken = tmp_path / "broken"
    shutil.copytree(results, broken)
    path = broken / "amortization_gap" / "local_first_eval_results.json"
    data = json.loads(path.read_text())
    for bad_details in (None, [{"nmse": 1.0}], [{"mode": 3}], [{"mode": "semi:x"}]):
        data["eval_result_details"] = bad_details
        path.write_text(json.dumps(data))
        for command in (("compare", broken, "--out", tmp_path / "s"), ("regress", "--results", broken,
                        "--write-baseline", tmp_path / "b.json")):  # fmt: skip
            result = cli(*command)
            assert result.code == 2 and len(result.err.strip().splitlines()) == 1, result.err
            assert str(path) in result.err
    assert not (tmp_path / "s").exists() or not list((tmp_path / "s").iterdir())
    assert not (tmp_path / "b.json").exists()


def test_compare_on_dead_dense_modes_only_and_stale_plots_removed(results, tmp_path, cli):
    only = tmp_path / "only"
    shutil.copytree(results / "dead_dense", only / "dead_dense")
    out = tmp_path / "summary"
    out.mkdir()
    (out / "l0_nmse_pareto.png").write_bytes(b"old")  # from an earlier comparison
    refused = cli(
        "compare", only, "--out", out
    )  # an earlier comparison is replaced only when asked
    assert refused.code == 2 and "--overwrite" in refused.err
    result = cli("compare", only, "--out", out, "--overwrite")
    assert result.code == 0, result.err
    assert not (out / "l0_nmse_pareto.png").exists() and (out / "pathologies_by_mode.png").exists()


def test_result_files_are_readable_like_any_file(results):
    mask = os.umask(0)
    os.umask(mask)
    for path in (results / "dead_dense").glob("*.json"):
        assert path.stat().st_mode & 0o777 == 0o666 & ~mask


def test_regress_reports_a_changed_lambda_first_and_does_not_judge_the_objective(
    results, tmp_path, cli
):
    """Objectives and gaps are only comparable at equal λ: with another λ they are 'not judged' (a note
    first says so) while the λ-free metrics are still judged; a missing mode is listed as missing."""
    baseline = tmp_path / "baseline.json"
    assert cli("regress", "--results", results, "--write-baseline", baseline).code == 0
    copy = tmp_path / "moved"
    shutil.copytree(results, copy)
    path = copy / "amortization_gap" / "local_first_eval_results.json"
    data = json.loads(path.read_text())
    data["eval_result_metrics"]["amortization"]["l1_coefficient"] *= 2
    data["eval_result_metrics"]["amortization"]["mean_gap"] *= 3  # would be "worse" at equal λ
    for row in data["eval_result_details"]:
        row["objective"] *= 3
        if row["l1_coefficient"] is not None:
            row["l1_coefficient"] *= 2
    data["eval_result_details"] = [r for r in data["eval_result_details"] if r["mode"] != "semi:10"]
    path.write_text(json.dumps(data))
    result = cli("regress", "--results", copy, "--baseline", baseline)
    lines = result.out.splitlines()
    assert result.code == 0, result.out
    assert lines[0].startswith("λ changed for local_first amortization_gap")
    assert "not judged across different λ" in lines[0]
    statuses = {
        (line.split()[2], line.split()[3]): " ".join(line.split()[6:])
        for line in lines
        if line.startswith("local_first ")
    }
    assert statuses[("amortized", "objective")] == "not judged (λ changed)"
    assert statuses[("amortized", "mean_gap")] == "not judged (λ changed)"
    assert statuses[("semi:10", "nmse")] == "missing"
    assert "worse" not in statuses.values()
    assert cli("regress", "--results", copy, "--baseline", baseline, "--require-all").code == 1


def test_compare_keeps_the_gap_evals_concept_subset_apart(results):
    frame = load_results(results)
    gap = frame[frame["eval"] == "amortization_gap"]
    assert "delta_f1" not in gap.dropna(axis=1, how="all").columns
    assert {"nmse_refit", "explained_variance"} <= set(gap.columns)
