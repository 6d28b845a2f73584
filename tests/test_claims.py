"""The claims benchmark: verdict logic on hand-made per-cell tables, and the runner's tiny grid end to end."""

from __future__ import annotations

import math
import subprocess
import sys

import pandas as pd
import pytest
from scipy import stats

from sae_bench_amortization.reports.claims import (
    CELL_COLUMNS,
    claim_outcomes,
    spearman,
    t_interval,
    verdict_markdown,
    verdicts,
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
        row |= {"architecture": architecture, "d_sae": d_sae, "sparsity": sparsity, "seed": seed}
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


def test_semi_nmse_claim_holds_fails_and_refuses_unmatched_density():
    cells = pd.DataFrame(
        cell_rows("topk", 64, 4.0, 0, nmse=[0.5, 0.4, 0.3, 0.29, 0.28])
        + cell_rows("topk", 64, 8.0, 0, nmse=[0.5, 0.4, 0.55, 0.3, 0.3])  # semi:25 above: fails
        + cell_rows("topk", 64, 16.0, 0, nmse=[0.5, 0.4, 0.3, 0.2, 0.2], l0=[4, 4, 4, 4.5, 4])
    )
    outcomes = claim_outcomes(cells)
    holds = outcome(outcomes, "a", sparsity=4.0)
    assert holds["status"] == "holds" and holds["value"] == pytest.approx(0.5 - 0.4)
    fails = outcome(outcomes, "a", sparsity=8.0)
    assert fails["status"] == "fails" and fails["value"] == pytest.approx(0.5 - 0.55)
    unmatched = outcome(
        outcomes, "a", sparsity=16.0
    )  # semi:50's L0 4.5 is 12.5% off the encoder's 4
    assert unmatched["status"] == "n/a" and "density not matched" in unmatched["reason"]
    (row,) = verdicts(outcomes).query("claim == 'a'").to_dict("records")
    assert (row["holds"], row["applicable"], row["not_applicable"]) == (1, 2, 1)
    assert row["share"] == 0.5 and row["failing"] == "topk d64 k8 (1/1)"
    assert row["ci_low"] is None  # one seed: no interval


def test_falls_claims_need_every_less_amortized_mode_below_the_encoder():
    cells = pd.DataFrame(
        cell_rows(
            "topk",
            64,
            4.0,
            0,
            dead_rate=[0.2, 0.1, 0.05, 0.05, 0.0],  # falls
            dense_rate=[0.0] * 5,  # nothing to relieve
            delta_f1=[0.1, 0.05, 0.12, 0.02, 0.01],  # semi:25 above the encoder: fails
            absorption_rate=[0.3, None, 0.1, 0.1, 0.1],  # conditional rate: 0/0 in one mode
            full_absorption_rate=[0.02, 0.01, 0.01, 0.0, 0.0],  # share of concept tokens: falls
            f1=[0.4, 0.5, 0.6, 0.6, 0.55],  # rises: the truth claim holds
        )  # fmt: skip
    )
    outcomes = claim_outcomes(cells)
    assert outcome(outcomes, "b_dead", seed=0)["status"] == "holds"
    assert outcome(outcomes, "b_dead", seed=0)["value"] == pytest.approx(0.2 - 0.1)
    assert outcome(outcomes, "b_dense", seed=0)["status"] == "n/a"
    assert outcome(outcomes, "c", seed=0)["status"] == "fails"
    assert outcome(outcomes, "c", seed=0)["value"] == pytest.approx(0.1 - 0.12)
    assert outcome(outcomes, "d", seed=0)["status"] == "holds"
    assert outcome(outcomes, "d_conditional", seed=0)["status"] == "n/a"
    assert "semi:5" in outcome(outcomes, "d_conditional", seed=0)["reason"]
    truth = outcome(outcomes, "truth_f1", seed=0)
    assert truth["status"] == "holds" and truth["value"] == pytest.approx(0.5 - 0.4)


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
    assert outcome(outcomes, "e_nmse", seed=2)["reason"] == "no nmse relief at 50 steps"


def test_loca_claims_compare_with_the_g1_control_only_where_loca_ran():
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
        + cell_rows("standard", 64, 0.3, 0, nmse=[0.3] * 5)
    )
    outcomes = claim_outcomes(cells)
    assert outcome(outcomes, "f_dead", seed=0)["status"] == "holds"
    assert outcome(outcomes, "f_absorption", seed=0)["status"] == "fails"
    cost = outcome(outcomes, "f_nmse_cost", seed=0)
    assert cost["status"] == "holds" and cost["value"] == pytest.approx(0.05)
    assert set(outcomes[outcomes["claim"].str.startswith("f_")]["architecture"]) == {"topk"}


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
    assert "| (g) absorption rises with sparsity pressure in training | 1 / 2 (0) | 0.50 |" in (
        verdict_markdown(verdicts(outcomes))
    )


def test_shares_over_seeds_and_their_interval():
    rows = []
    for seed, nmse in ((0, [0.5, 0.4, 0.4, 0.4, 0.4]), (1, [0.5, 0.6, 0.4, 0.4, 0.4])):
        for k in (2.0, 4.0):
            rows += cell_rows(
                "topk", 64, k, seed, nmse=nmse if k == 2.0 else [0.5, 0.4, 0.4, 0.4, 0.4]
            )
    (row,) = verdicts(claim_outcomes(pd.DataFrame(rows))).query("claim == 'a'").to_dict("records")
    assert (row["holds"], row["applicable"]) == (3, 4)
    low, high = stats.t.interval(0.95, 1, loc=0.75, scale=stats.sem([1.0, 0.5]))
    assert row["ci_low"] == pytest.approx(max(0.0, low)) and row["ci_high"] == pytest.approx(
        min(1.0, high)
    )
    assert row["failing"] == "topk d64 k2 (1/2)"


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
    assert cells.groupby(["architecture", "d_sae", "sparsity", "seed"]).ngroups == 12
    assert set(cells["mode"]) == {*MODES, "loca", "loca_g1", "loca_k", "loca_k_g1"}
    assert cells["nmse"].notna().all() and cells["f1"].notna().all()
    recomputed = verdicts(claim_outcomes(cells))
    written = pd.read_csv(out / "verdicts.csv")
    assert written["holds"].tolist() == recomputed["holds"].tolist()
    assert written["applicable"].tolist() == recomputed["applicable"].tolist()
    assert verdict_markdown(recomputed) in done.stdout
    assert (out / "verdicts.md").read_text() == verdict_markdown(recomputed)
    for letter in ("a", "b", "c", "d", "e", "f", "g", "truth"):
        assert (out / f"claim_{letter}.png").read_bytes()[:4] == b"\x89PNG"


def test_quick_grid_refuses_to_overwrite_and_redoes_verdicts_from_cells(quick_run, tmp_path):
    out, _ = quick_run
    before = (out / "verdicts.md").read_text()
    script = str(REPO / "benchmarks" / "bench_claims.py")
    again = subprocess.run(
        [sys.executable, script, "--quick", "--out", str(out)], capture_output=True, text=True
    )
    assert again.returncode == 2 and again.stderr.count("\n") == 1 and "--overwrite" in again.stderr
    assert (out / "verdicts.md").read_text() == before
    redo = tmp_path / "redo"
    command = [sys.executable, script, "--from-cells", str(out / "cells.csv"), "--out", str(redo)]
    assert subprocess.run(command, capture_output=True, text=True).returncode == 0
    assert (redo / "verdicts.md").read_text() == before
