"""The claims benchmark: verdict logic on hand-made per-cell tables, and the runner's tiny grid end to end."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from sae_bench_amortization.reports.claims import (
    CELL_COLUMNS,
    CONCEPT_COLUMNS,
    claim_outcomes,
    spearman,
    t_interval,
    verdict_markdown,
    verdicts,
    world_summary,
    world_summary_markdown,
)
from sae_bench_amortization.reports.effects import (
    Z_DETECT,
    cluster_resamples,
    effect_size,
    wilson_interval,
)

from conftest import REPO

MODES = ("amortized", "semi:5", "semi:25", "semi:50", "non_amortized")


def cell_rows(architecture, d_sae, sparsity, seed, **per_metric) -> list[dict]:
    """One cell's rows: ``per_metric`` maps a metric to its values in :data:`MODES` order (then loca,
    loca_g1 when given 7 values); L0 defaults to 4 everywhere (densities matched)."""
    n_modes = max(len(values) for values in per_metric.values())
    modes = (*MODES, "loca", "loca_g1")[:n_modes]
    rows = []
    for i, mode in enumerate(modes):
        row = dict.fromkeys(CELL_COLUMNS)
        row |= {"variant": "l1", "world": "default", "architecture": architecture, "d_sae": d_sae}
        row |= {"sparsity": sparsity, "seed": seed}
        row |= {"mode": mode, "l0": 4.0}
        for metric, values in per_metric.items():
            row[metric] = values[i] if i < len(values) else None
        rows.append(row)
    return rows


def outcome(outcomes: pd.DataFrame, claim: str, **unit) -> pd.Series:
    mine = outcomes[outcomes["claim"] == claim]
    for key, value in unit.items():
        mine = mine[mine[key] == value]
    (row,) = mine.to_dict("records")
    return pd.Series(row)


def test_semi_nmse_claims_compare_each_semi_mode_with_the_encoder_at_matched_density():
    cells = pd.DataFrame(
        cell_rows("topk", 64, 4.0, 0, nmse=[0.5, 0.4, 0.3, 0.29, 0.28])
        + cell_rows("topk", 64, 8.0, 0, nmse=[0.5, 0.4, 0.55, 0.3, 0.3])  # semi:25 above: fails
        + cell_rows("topk", 64, 16.0, 0, nmse=[0.5, 0.4, 0.3, 0.2, 0.2], l0=[4, 4, 4, 4.5, 4])
    )
    outcomes = claim_outcomes(cells)
    holds = outcome(outcomes, "a_semi5", sparsity=4.0)
    assert holds["status"] == "holds" and holds["value"] == pytest.approx(0.5 - 0.4)
    fails = outcome(outcomes, "a_semi25", sparsity=8.0)
    assert fails["status"] == "fails" and fails["value"] == pytest.approx(0.5 - 0.55)
    assert outcome(outcomes, "a_semi5", sparsity=8.0)["status"] == "holds"  # each T on its own
    # semi:50's L0 4.5 is 12.5% off the encoder's 4: n/a there, the other modes still compared
    unmatched = outcome(outcomes, "a_semi50", sparsity=16.0)
    assert unmatched["status"] == "n/a" and "density not matched" in unmatched["reason"]
    assert outcome(outcomes, "a_semi25", sparsity=16.0)["status"] == "holds"
    table = verdicts(outcomes)
    (row,) = table.query("claim == 'a_semi50'").to_dict("records")
    assert (row["holds"], row["applicable"], row["not_applicable"]) == (2, 2, 1)
    assert row["not_applicable_why"] == "density not matched 1" and row["primary"]
    (row,) = table.query("claim == 'a_semi25'").to_dict("records")
    assert row["share"] == pytest.approx(2 / 3) and row["failing"] == "topk d64 k8 (1/1)"
    assert row["share_low"] is None and row["median"] == pytest.approx(0.2)  # one seed: no interval
    assert not table.query("claim == 'a_non'")["primary"].item()  # non_amortized: secondary


def test_paired_claims_hold_fail_and_call_ties_and_nulls_not_applicable():
    cells = pd.DataFrame(
        cell_rows(
            "topk",
            64,
            4.0,
            0,
            dead_rate=[0.2, 0.1, 0.05, 0.05, 0.0],  # falls
            dense_rate=[0.0] * 5,  # 0 everywhere: ties
            delta_f1=[0.1, 0.05, 0.12, 0.02, 0.01],  # semi:25 above the encoder: fails
            absorption_rate=[0.3, None, 0.1, 0.1, 0.1],  # conditional rate: 0/0 in one mode
            full_absorption_rate=[0.02, 0.01, 0.02, 0.0, 0.0],  # semi:25 equal: a tie
            f1=[0.4, 0.5, 0.6, 0.6, 0.55],  # rises: the truth claim holds
        )  # fmt: skip
    )
    outcomes = claim_outcomes(cells)
    assert outcome(outcomes, "b_dead_semi5", seed=0)["status"] == "holds"
    assert outcome(outcomes, "b_dead_semi5", seed=0)["value"] == pytest.approx(0.2 - 0.1)
    assert outcome(outcomes, "b_dead_non", seed=0)["value"] == pytest.approx(0.2)
    dense = outcome(outcomes, "b_dense_semi5", seed=0)
    assert dense["status"] == "n/a" and dense["reason"].startswith("tie:")
    assert outcome(outcomes, "c_semi5", seed=0)["status"] == "holds"
    assert outcome(outcomes, "c_semi25", seed=0)["status"] == "fails"
    assert outcome(outcomes, "c_semi25", seed=0)["value"] == pytest.approx(0.1 - 0.12)
    assert outcome(outcomes, "d_semi5", seed=0)["status"] == "holds"
    assert outcome(outcomes, "d_semi25", seed=0)["reason"].startswith("tie:")
    conditional = outcome(outcomes, "d_conditional_semi5", seed=0)
    assert (
        conditional["status"] == "n/a"
        and conditional["reason"] == "null: absorption_rate of semi:5"
    )
    assert outcome(outcomes, "d_conditional_semi25", seed=0)["value"] == pytest.approx(0.2)
    truth = outcome(outcomes, "truth_f1_semi5", seed=0)
    assert truth["status"] == "holds" and truth["value"] == pytest.approx(0.5 - 0.4)
    (row,) = verdicts(outcomes).query("claim == 'b_dense_semi5'").to_dict("records")
    assert (row["holds"], row["applicable"], row["not_applicable_why"]) == (0, 0, "tie 1")


def test_with_per_concept_evidence_each_comparison_is_over_the_concepts_both_modes_define():
    """The cell's means (each mode over its own concepts) would compare 0.5 with 0.1; over the concepts
    both define, LocA and the encoder absorb alike on "b" and LocA less on "a"."""
    cells = pd.DataFrame(cell_rows("topk", 64, 4.0, 0, full_absorption_rate=[0.5] * 5 + [0.1, 0.1]))
    unit = {"variant": "l1", "world": "default", "architecture": "topk", "d_sae": 64}
    unit |= {"sparsity": 4.0, "seed": 0}
    evidence = {
        "amortized": {"a": 0.6, "b": 0.2, "c": 0.7},
        "loca": {"a": 0.2, "b": 0.2, "d": 0.0},  # "c" undefined for LocA, "d" for the encoder
        "loca_g1": {"a": None, "b": 0.1},
    }
    rows = [
        {**unit, "mode": mode, "concept": concept, "full_absorption_rate": value}
        for mode, values in evidence.items()
        for concept, value in values.items()
    ]
    concepts = pd.DataFrame(rows, columns=pd.Index(CONCEPT_COLUMNS))
    outcomes = claim_outcomes(cells, concepts=concepts)
    versus_encoder = outcome(outcomes, "f_absorption")
    assert versus_encoder["value"] == pytest.approx((0.6 + 0.2) / 2 - (0.2 + 0.2) / 2)
    assert versus_encoder["n_concepts"] == 2
    control = outcome(outcomes, "f_absorption_g1")  # over "b" alone: 0.1 vs 0.2
    assert control["value"] == pytest.approx(0.1 - 0.2) and control["n_concepts"] == 1
    # no evidence for semi:5: the cell's own (already paired) means
    assert outcome(outcomes, "d_semi5")["reason"].startswith("tie:")
    assert outcome(claim_outcomes(cells), "f_absorption")["value"] == pytest.approx(0.4)


def test_most_relief_by_25_steps():
    cells = pd.DataFrame(
        cell_rows("topk", 64, 4.0, 0, nmse=[1.0, 0.9, 0.4, 0.2, 0.2])  # 0.6 of 0.8: holds
        + cell_rows("topk", 64, 4.0, 1, nmse=[1.0, 0.95, 0.9, 0.2, 0.2])  # 0.1 of 0.8: fails
        + cell_rows("topk", 64, 4.0, 2, nmse=[1.0, 1.0, 1.0, 1.0, 1.0])  # no relief: n/a
    )
    outcomes = claim_outcomes(cells)
    assert outcome(outcomes, "e_nmse", seed=0)["value"] == pytest.approx(0.75)
    assert outcome(outcomes, "e_nmse", seed=0)["status"] == "holds"
    assert outcome(outcomes, "e_nmse", seed=1)["value"] == pytest.approx(0.125)
    assert outcome(outcomes, "e_nmse", seed=1)["status"] == "fails"
    assert outcome(outcomes, "e_nmse", seed=2)["reason"] == "no relief: nmse not lower at 50 steps"


def test_loca_claims_compare_with_the_encoder_first_then_the_g1_control_where_loca_ran():
    cells = pd.DataFrame(
        cell_rows(
            "topk",
            64,
            4.0,
            0,
            nmse=[0.3] * 5 + [0.25, 0.2],
            dead_rate=[0.1] * 5 + [0.0, 0.05],
            full_absorption_rate=[0.2] * 5 + [0.3, 0.1],
        )  # fmt: skip
        + cell_rows(
            "topk", 64, 8.0, 0, dead_rate=[0.1] * 5 + [0.0, 0.05], l0=[8.0] * 5 + [26.0, 26.0]
        )  # LocA's budgets (Σ 26) against k = 8: not the encoder's density
        + cell_rows("standard", 64, 0.3, 0, nmse=[0.3] * 5)
    )
    outcomes = claim_outcomes(cells)
    assert outcome(outcomes, "f_dead", sparsity=4.0)["value"] == pytest.approx(0.1)
    assert outcome(outcomes, "f_absorption", sparsity=4.0)["status"] == "fails"
    cost = outcome(outcomes, "f_nmse_cost", sparsity=4.0)  # LocA − encoder: it pays nothing here
    assert cost["status"] == "fails" and cost["value"] == pytest.approx(-0.05)
    control = outcome(outcomes, "f_nmse_cost_g1", sparsity=4.0)  # LocA − its G=1 control
    assert control["status"] == "holds" and control["value"] == pytest.approx(0.05)
    assert outcome(outcomes, "f_dead_g1", sparsity=4.0)["value"] == pytest.approx(0.05)
    unmatched = outcome(outcomes, "f_dead", sparsity=8.0)
    assert unmatched["status"] == "n/a" and "density not matched" in unmatched["reason"]
    assert outcome(outcomes, "f_dead_g1", sparsity=8.0)["status"] == "holds"  # both at 26
    assert set(outcomes[outcomes["claim"].str.startswith("f_")]["architecture"]) == {"topk"}
    assert not outcomes["claim"].str.startswith("f_k").any()  # no loca_k rows: not a unit


def test_sparsity_pressure_claim_runs_per_series_with_the_pressure_sign_of_each_architecture():
    rows = []
    for k, absorption in (
        (2, 0.5),
        (4, 0.3),
        (8, 0.1),
    ):  # TopK: smaller k = more pressure, more absorption
        rows += cell_rows(
            "topk", 64, float(k), 0, full_absorption_rate=[absorption] * 5, delta_f1=[0.1] * 5
        )
    for l1, absorption in (
        (0.1, 0.5),
        (0.2, 0.3),
        (0.4, 0.1),
    ):  # L1: more pressure, less absorption
        rows += cell_rows(
            "standard", 64, l1, 0, full_absorption_rate=[absorption] * 5, delta_f1=[0.1] * 5
        )
    outcomes = claim_outcomes(pd.DataFrame(rows))
    topk = outcome(outcomes, "g_absorption", architecture="topk")
    assert topk["status"] == "holds" and topk["value"] == pytest.approx(1.0)
    assert math.isnan(topk["sparsity"])
    standard = outcome(outcomes, "g_absorption", architecture="standard")
    assert standard["status"] == "fails" and standard["value"] == pytest.approx(-1.0)
    assert outcome(outcomes, "g_delta_f1", architecture="topk")["status"] == "n/a"  # constant ΔF1
    (row,) = verdicts(outcomes).query("claim == 'g_absorption'").to_dict("records")
    assert row["failing"] == "standard d64 (all l1) (1/1)"
    line = next(
        line
        for line in verdict_markdown(verdicts(outcomes)).splitlines()
        if line.startswith("| (g) absorption rises")
    )
    # median ρ 0 of 1 and −1; one seed: no CI; no concept-averaged comparison: no concept count
    assert "| 1 / 2 (0) | 0.50 | 0 | - | 1 | - |" in line


def test_verdicts_take_effect_sizes_over_seed_clusters():
    rows = []
    for seed, nmse in ((0, [0.5, 0.4, 0.4, 0.4, 0.4]), (1, [0.5, 0.6, 0.4, 0.4, 0.4])):
        for k in (2.0, 4.0):
            rows += cell_rows(
                "topk", 64, k, seed, nmse=nmse if k == 2.0 else [0.5, 0.45, 0.4, 0.4, 0.4]
            )
    (row,) = (
        verdicts(claim_outcomes(pd.DataFrame(rows))).query("claim == 'a_semi5'").to_dict("records")
    )
    assert (row["holds"], row["applicable"], row["n_clusters"]) == (3, 4, 2)
    assert row["median"] == pytest.approx(0.05)  # margins 0.1, 0.05, −0.1, 0.05
    assert row["median_low"] <= row["median"] <= row["median_high"]
    assert row["share_low"] < 0.75 < row["share_high"] and row["detectable"] > 0
    assert row["failing"] == "topk d64 k2 (1/2)"


def test_cluster_bootstrap_against_its_closed_form_and_wilson_against_scipy():
    # two clusters of constant values a, b: resampled medians are a, (a+b)/2, b with probability
    # 1/4, 1/2, 1/4, so their standard deviation is (b − a) / (2√2)
    effect = effect_size([1.0] * 5 + [3.0] * 5, ["x"] * 5 + ["y"] * 5)
    assert (effect.median_low, effect.median_high) == (1.0, 3.0)
    assert effect.detectable == pytest.approx(Z_DETECT * 2 / (2 * math.sqrt(2)), rel=0.05)
    assert effect.share == 1.0 and effect.share_high == 1.0
    assert effect.share_low == pytest.approx(wilson_interval(1.0, 2)[0])  # 2 clusters, not 10 units
    for k, n in ((3, 4), (0, 5), (7, 7), (12, 30)):
        expected = stats.binomtest(k, n).proportion_ci(method="wilson")
        assert wilson_interval(k / n, n) == (
            pytest.approx(expected.low),
            pytest.approx(expected.high),
        )
    # units of a cluster perfectly alike: the effective sample is the clusters (3), not the units (30)
    margins = [1.0] * 10 + [-1.0] * 10 + [1.0] * 10
    clusters = ["a"] * 10 + ["b"] * 10 + ["c"] * 10
    alike = effect_size(margins, clusters)
    assert alike.share_low == pytest.approx(wilson_interval(2 / 3, 3)[0], abs=0.03)
    assert effect_size([], []).n_units == 0 and effect_size([0.5], ["a"]).median_low is None
    # the vectorized medians and means are those of the pooled resamples (same draws)
    values = np.random.default_rng(3).normal(size=50)
    labels = [i % 7 for i in range(50)]
    for fast, slow in ((np.median, lambda x: float(np.median(x))), (np.mean, lambda x: x.mean())):
        assert cluster_resamples(values, labels, fast, 300) == pytest.approx(
            cluster_resamples(values, labels, slow, 300)
        )


def test_t_interval_and_spearman_against_scipy():
    shares = [0.5, 0.75, 0.9]
    low, high = stats.t.interval(0.95, 2, loc=sum(shares) / 3, scale=stats.sem(shares))
    assert t_interval(shares) == (pytest.approx(max(0, low)), pytest.approx(min(1, high)))
    assert t_interval([0.5]) == (None, None)
    x, y = [1.0, 2.0, 3.0, 4.0, 5.0], [0.3, 0.1, 0.1, 0.7, 0.9]
    assert spearman(x, y) == pytest.approx(stats.spearmanr(x, y).statistic)
    assert spearman(x, [1.0] * 5) is None


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("claims") / "out"
    command = [
        sys.executable,
        str(REPO / "benchmarks" / "bench_claims.py"),
        "--quick",
        "--out",
        str(out),
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=900)
    return out, done


def test_quick_grid_runs_and_its_verdicts_follow_from_the_cells_it_prints(quick_run):
    out, done = quick_run
    assert done.returncode == 0, done.stderr[-2000:]
    cells = pd.read_csv(out / "cells.csv")
    assert list(cells.columns) == list(CELL_COLUMNS)
    assert cells.groupby(["world", "architecture", "d_sae", "sparsity", "seed"]).ngroups == 6
    assert set(cells["variant"]) == {"l1", "paper", "own"}
    assert set(cells["mode"]) == {*MODES, "loca", "loca_g1", "loca_k", "loca_k_g1"}
    assert cells["nmse"].notna().all() and cells["f1"].notna().all()
    concepts = pd.read_csv(out / "concepts.csv.gz")
    assert list(concepts.columns) == list(CONCEPT_COLUMNS)
    # the evidence: every cell × variant × mode under concept definitions has its probed concepts, with
    # their roles (--protocol paper measures one pseudo-label, ‖x‖ above its median: no concepts)
    keys = ["variant", "world", "architecture", "d_sae", "sparsity", "seed", "mode"]
    assert concepts.groupby(keys).ngroups == (cells["variant"] != "paper").sum()
    assert set(concepts["variant"]) == {"l1", "own"}
    assert {"parent", "child", "plain"} <= set(concepts["role"])
    recomputed = verdicts(claim_outcomes(cells, concepts=concepts))
    written = pd.read_csv(out / "verdicts.csv")
    assert written["holds"].tolist() == recomputed["holds"].tolist()
    assert written["applicable"].tolist() == recomputed["applicable"].tolist()
    assert written["median"].tolist() == pytest.approx(recomputed["median"].tolist(), nan_ok=True)
    assert verdict_markdown(recomputed) in done.stdout
    assert (out / "verdicts.md").read_text() == verdict_markdown(recomputed)
    # one world here: its own verdicts are the pooled ones
    assert (out / "verdicts_by_world.md").read_text().startswith("## default: ")
    assert verdict_markdown(recomputed) in (out / "verdicts_by_world.md").read_text()
    for letter in ("a", "b", "c", "d", "e", "f", "g", "truth"):
        assert (out / f"claim_{letter}.png").read_bytes()[:4] == b"\x89PNG"


def bench(monkeypatch, capsys, *argv) -> tuple[int, str, str]:
    """benchmarks/bench_claims.py's main() in this process (no second import of the stack):
    (exit code, stdout, stderr)."""
    monkeypatch.syspath_prepend(str(REPO / "benchmarks"))
    import bench_claims

    monkeypatch.setattr(sys, "argv", ["bench_claims.py", *map(str, argv)])
    code = bench_claims.main()
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_quick_grid_refuses_to_overwrite_and_redoes_verdicts_from_cells(
    quick_run, tmp_path, monkeypatch, capsys
):
    out, _ = quick_run
    before = (out / "verdicts.md").read_text()
    code, _, err = bench(monkeypatch, capsys, "--quick", "--out", out)
    assert code == 2 and err.count("\n") == 1 and "--overwrite" in err
    assert (out / "verdicts.md").read_text() == before
    redo = tmp_path / "redo"
    assert bench(monkeypatch, capsys, "--from-cells", out / "cells.csv", "--out", redo)[0] == 0
    assert (redo / "verdicts.md").read_text() == before  # rebuilt from cells.csv + concepts.csv.gz
    # an interrupted run resumes from the cells it stored: nothing left to measure, the same verdicts
    code, printed, err = bench(
        monkeypatch, capsys, "--quick", "--out", out, "--resume", "--overwrite"
    )
    assert code == 0, err[-2000:]
    assert "6 cells, 6 already measured" in printed
    assert (out / "verdicts.md").read_text() == before
    # a stored cell made with other settings is refused, before anything is measured: by its own
    # signature, or (a cell stored without one) by the grid.json its store was started with
    other = tmp_path / "other"
    (other / "cells").mkdir(parents=True)
    stored = next(p for p in sorted((out / "cells").glob("*.json")) if p.name != "grid.json")
    cell = json.loads(stored.read_text())
    assert cell["signature"]["cell"][0] == "default"
    (other / "cells" / "grid.json").write_text((out / "cells" / "grid.json").read_text())
    cell["signature"]["eval_tokens"] += 1
    (other / "cells" / stored.name).write_text(json.dumps(cell))
    code, _, err = bench(monkeypatch, capsys, "--quick", "--out", other, "--resume")
    assert code == 2 and err.count("\n") == 1 and "another grid" in err and stored.name in err
    del cell["signature"]
    (other / "cells" / stored.name).write_text(json.dumps(cell))
    (other / "cells" / "grid.json").write_text('{"seeds": [9]}')
    code, _, err = bench(monkeypatch, capsys, "--quick", "--out", other, "--resume")
    assert code == 2 and err.count("\n") == 1 and "another grid" in err
    assert {p.name for p in (other / "cells").iterdir()} == {"grid.json", stored.name}


def test_world_summary_puts_the_planted_ceiling_beside_what_the_encoder_reaches():
    """Ceilings from hand-made labels: parent 0 fires on 4 tokens, a child (2 or 3) on 3 of them → 0.75;
    the summary averages the ceilings of the concepts the absorption share was measured on."""
    import torch

    from sae_bench_amortization.metrics.planted import absorption_ceilings, concept_role

    names = ["feature_0_parent_of_2_3", "feature_1", "feature_2_child_of_0", "feature_3_child_of_0",
             "feature_4_composite_0", "composite_0_context_1"]  # fmt: skip
    labels = torch.zeros(6, len(names), dtype=torch.bool)
    labels[:4, 0] = True
    labels[0, 2] = labels[1, 3] = labels[2, 2] = True  # a child on 3 of the parent's 4 tokens
    labels[5, 1] = True
    ceilings = absorption_ceilings(names, [labels[:3], labels[3:]])  # streamed in two batches
    assert ceilings[names[0]] == 0.75 and ceilings["feature_1"] == 0.0
    assert [concept_role(n) for n in names] == [
        "parent", "plain", "child", "child", "composite", "context"
    ]  # fmt: skip
    cells = pd.DataFrame(
        cell_rows("topk", 64, 4.0, 0, full_absorption_rate=[0.3] * 5)
        + cell_rows("topk", 64, 8.0, 0, full_absorption_rate=[0.1] * 5)
    )
    unit = {"variant": "l1", "world": "default", "architecture": "topk", "d_sae": 64, "seed": 0}
    rows = [
        {**unit, "sparsity": sparsity, "mode": "amortized", "concept": name, "role": concept_role(name),
         "full_absorption_rate": value, "absorption_ceiling": ceilings.get(name)}
        for sparsity in (4.0, 8.0)
        for name, value in zip(names, [0.5, 0.0, None, 0.1, 0.2, None], strict=True)
    ]  # fmt: skip
    (row,) = world_summary(cells, pd.DataFrame(rows)).to_dict("records")
    assert row["probed"] == 6 and row["planted_share"] == pytest.approx(2 / 6)
    assert row["absorbable_share"] == pytest.approx(1 / 6)
    # measured on the parent (0.75), feature_1, the child and the composite (0 each): 0.75 / 4
    assert row["ceiling"] == pytest.approx(0.75 / 4)
    assert (row["encoder_mean"], row["encoder_max"]) == (pytest.approx(0.2), 0.3)
    assert "0.188, 0.188 | 0.2000, 0.3000 |" in world_summary_markdown(pd.DataFrame([row]))
