"""Concept-averaged metrics are compared across modes only on the concepts where every mode defines them
(issue: paired concept sets): the pure pairing, and the rows amortization_gap writes."""

from __future__ import annotations

import pytest

from sae_bench_amortization.metrics.concepts import paired_mean
from sae_bench_amortization.metrics.gap import concept_evidence, pair_concepts
from sae_bench_amortization.metrics.pairing import common_concept_means, is_defined


def concept_rows(values: dict[str, float | None], key: str = "absorption_rate") -> list[dict]:
    return [{"concept": name, key: value} for name, value in values.items()]


def test_paired_mean_takes_every_mode_over_the_concepts_all_of_them_define():
    rows = {
        "amortized": concept_rows({"a": 0.2, "b": 0.4, "c": None, "d": 0.9}),
        "non_amortized": concept_rows({"a": 1.0, "b": None, "c": 0.5, "d": 0.5}),
    }
    paired = paired_mean(rows, "absorption_rate", "absorption")
    # common: a and d (b and c are 0/0 in one mode each)
    assert paired.n_concepts == 2 and paired.null_reason is None
    assert paired.means == {"amortized": pytest.approx(0.55), "non_amortized": pytest.approx(0.75)}
    # unpaired, the means would have been over {a, b, d} and {a, c, d}: 0.5 against 0.667
    nothing = paired_mean(
        {"amortized": concept_rows({"a": 0.2}), "semi:5": concept_rows({"a": None, "b": 1.0})},
        "absorption_rate",
        "absorption",
    )
    assert nothing.n_concepts == 0 and nothing.means == {"amortized": None, "semi:5": None}
    assert nothing.null_reason is not None and "amortized 1, semi:5 1" in nothing.null_reason


def test_common_concept_means_is_the_one_pairing_every_report_uses():
    """None and NaN are undefined; a side's mean is over the concepts all sides define."""
    nan = float("nan")
    means, n = common_concept_means(
        {
            "baseline": {"a": 1.0, "b": 2.0, "c": nan, "d": 4.0},
            "current": {"a": 3.0, "b": None, "c": 5.0, "d": 0.0, "e": 9.0},
            "third": {"a": 0.5, "d": 0.5, "b": 7.0},
        }
    )
    # only a and d are defined on every side: (1+4)/2, (3+0)/2, (0.5+0.5)/2
    assert n == 2
    assert means == {"baseline": 2.5, "current": 1.5, "third": 0.5}
    none, zero = common_concept_means({"x": {"a": 1.0}, "y": {"b": 1.0}})
    assert zero == 0 and none == {"x": None, "y": None}
    assert common_concept_means({}) == ({}, 0)
    assert [is_defined(v) for v in (0, 0.0, nan, None, True, "1")] == [
        True, True, False, False, False, False
    ]  # fmt: skip


def test_pair_concepts_gives_every_row_the_same_count_and_names_why_a_mean_is_null():
    rows = [
        {"mode": "amortized", "absorption_rate": 0.3, "n_concepts_absorption": 2,
         "delta_f1": 0.1, "n_concepts_delta_f1": 2, "undefined": None},
        {"mode": "semi:5", "absorption_rate": 1.0, "n_concepts_absorption": 1,
         "delta_f1": 0.2, "n_concepts_delta_f1": 2, "undefined": None},
    ]  # fmt: skip
    by_mode = {
        "amortized": {
            "splitting": concept_rows({"x": 0.0, "y": 0.2}, "delta_f1"),
            "absorption": [
                {"concept": "x", "absorption_rate": 0.2, "full_absorption_rate": 0.01},
                {"concept": "y", "absorption_rate": 0.4, "full_absorption_rate": 0.02},
            ],
        },
        "semi:5": {
            "splitting": concept_rows({"x": 0.1, "y": 0.3}, "delta_f1"),
            "absorption": [
                {"concept": "x", "absorption_rate": None, "full_absorption_rate": 0.0},
                {"concept": "y", "absorption_rate": 1.0, "full_absorption_rate": 0.03},
            ],
        },
    }
    paired = pair_concepts(rows, by_mode)
    amortized, semi = paired
    assert amortized["absorption_rate"] == pytest.approx(0.4) and semi["absorption_rate"] == 1.0
    assert amortized["n_concepts_absorption"] == semi["n_concepts_absorption"] == 1
    assert amortized["full_absorption_rate"] == pytest.approx(0.015)
    assert semi["full_absorption_rate"] == pytest.approx(0.015)
    assert amortized["n_concepts_full_absorption"] == semi["n_concepts_full_absorption"] == 2
    assert amortized["delta_f1"] == pytest.approx(0.1) and semi["delta_f1"] == pytest.approx(0.2)
    assert rows[0]["absorption_rate"] == 0.3  # the input rows are left as they were
    # no common concept: null in every row, the reason naming each mode's count
    by_mode["semi:5"]["absorption"][1]["absorption_rate"] = None
    for row in pair_concepts(rows, by_mode):
        assert row["absorption_rate"] is None and row["n_concepts_absorption"] == 0
        assert "amortized 2, semi:5 0" in row["undefined"]["absorption_rate"]
    # a mode without concept rows (e.g. another protocol): the rows are left as they are
    assert pair_concepts(rows, {"amortized": None, "semi:5": by_mode["semi:5"]}) == rows


def test_concept_evidence_joins_a_concepts_splitting_and_absorption_rows():
    parts = {
        "splitting": [
            {"concept": "a", "f1_at_1": 0.5, "f1_at_2": 0.7, "delta_f1": 0.2, "top_latents": [3, 1],
             "n_positives": 60, "reason": None},
            {"concept": "b", "f1_at_1": None, "f1_at_2": None, "delta_f1": None, "top_latents": [],
             "n_positives": 4, "reason": "too rare"},
        ],
        "absorption": [
            {"concept": "a", "absorption_rate": None, "full_absorption_rate": 0.0, "n_tokens": 40,
             "main_latents": [3], "absorbing_latents": [], "n_main_silent": 0, "n_absorbed": 0,
             "reason": "never miss"},
        ],
    }  # fmt: skip
    a, b = concept_evidence(parts) or []
    assert a["concept"] == "a" and a["delta_f1"] == 0.2 and a["full_absorption_rate"] == 0.0
    assert a["splitting_reason"] is None and a["absorption_reason"] == "never miss"
    assert a["main_latents"] == [3] and a["top_latents"] == [3, 1]
    assert b == {"concept": "b", "f1_at_1": None, "f1_at_2": None, "delta_f1": None,
                 "top_latents": [], "n_positives": 4, "splitting_reason": "too rare"}  # fmt: skip
    assert concept_evidence(None) is None


def _gap_result(per_concept: dict[str, float | None]) -> dict:
    """A minimal amortization_gap result: one encoder row whose mean absorption is over its own concepts."""
    defined = [value for value in per_concept.values() if value is not None]
    concepts = [{"concept": name, "full_absorption_rate": v} for name, v in per_concept.items()]
    row = {"mode": "amortized", "full_absorption_rate": sum(defined) / len(defined),
           "n_concepts_full_absorption": len(defined), "concepts": concepts}  # fmt: skip
    return {
        "eval_type_id": "amortization_gap",
        "eval_result_metrics": {},
        "eval_result_details": [row],
    }


def test_compare_takes_concept_means_over_the_concepts_every_result_defines(tmp_path):
    """Two SAEs' results side by side (``saebench compare``): absorption over "b" and "c" only, the
    concepts both define, with that count; ``regress`` (unpaired) keeps each result's own mean."""
    import json

    from sae_bench_amortization.reports.compare import load_results

    folder = tmp_path / "amortization_gap"
    folder.mkdir()
    results = {"sae_a": {"a": 0.9, "b": 0.1, "c": 0.3}, "sae_b": {"b": 0.2, "c": 0.0, "d": 0.5}}
    for sae, per_concept in results.items():
        (folder / f"{sae}_eval_results.json").write_text(json.dumps(_gap_result(per_concept)))
    paired = load_results(tmp_path, paired=True).set_index("sae")
    column = "full_absorption_rate_subset"  # its shared name in compare's tables
    assert paired.loc["sae_a", column] == pytest.approx((0.1 + 0.3) / 2)
    assert paired.loc["sae_b", column] == pytest.approx((0.2 + 0.0) / 2)
    assert paired["n_concepts_full_absorption"].tolist() == [2, 2]
    own = load_results(tmp_path).set_index("sae")
    assert own.loc["sae_a", column] == pytest.approx((0.9 + 0.1 + 0.3) / 3)
    assert own["n_concepts_full_absorption"].tolist() == [3, 3]
    assert "concepts" not in paired.columns and "_concept_values" not in paired.columns


def test_regress_judges_a_concept_mean_on_the_concepts_baseline_and_run_both_define(tmp_path):
    """The baseline keeps the per-concept values; a run whose concept set moved ("a" lost, "d" gained) is
    judged on "b" and "c" — unchanged there, so within tolerance, though its own mean moved 0.43 → 0.23
    — with a note giving both counts."""
    import json

    from sae_bench_amortization.reports.regress import (
        read_baseline_concepts,
        regress,
        write_baseline,
    )

    before, after = (
        tmp_path / "before" / "amortization_gap",
        tmp_path / "after" / "amortization_gap",
    )
    for folder, per_concept in ((before, {"a": 0.9, "b": 0.1, "c": 0.3}),
                                (after, {"b": 0.1, "c": 0.3, "d": 0.3})):  # fmt: skip
        folder.mkdir(parents=True)
        (folder / "sae_eval_results.json").write_text(json.dumps(_gap_result(per_concept)))
    baseline = tmp_path / "baseline.json"
    write_baseline(tmp_path / "before", baseline)
    stored = read_baseline_concepts(baseline)["sae"]["amortization_gap"]["amortized"]
    assert stored["full_absorption_rate_subset"] == {"a": 0.9, "b": 0.1, "c": 0.3}
    report, failed = regress(tmp_path / "after", baseline, rtol=0.01, atol=0.0)
    assert not failed, report
    assert "judged on the 2 concepts both define (baseline 3, now 3)" in report
    worse = tmp_path / "worse" / "amortization_gap"
    worse.mkdir(parents=True)
    (worse / "sae_eval_results.json").write_text(
        json.dumps(
            _gap_result({"b": 0.5, "c": 0.3, "d": 0.0})
        )  # b rose: worse, though the mean fell
    )
    report, failed = regress(tmp_path / "worse", baseline, rtol=0.01, atol=0.0)
    assert failed and "worse" in report
