"""Each metric's facts are declared once, on its field: they leave the JSON schema alone, the registry's
directions / renames / λ-dependence are read from them, options take their defaults from the config
fields, and amortization_gap's CSV and terminal columns come out as its lists had them."""

from __future__ import annotations

import typing

import pytest
from pydantic import TypeAdapter
from pydantic.dataclasses import dataclass
from sae_bench.evals.base_eval_output import BaseMetrics

from sae_bench_amortization.evals.amortization_gap.eval_output import (
    AmortizationGapEvalOutput,
    AmortizationMetricCategories,
    AmortizationMetrics,
    ModeRow,
)
from sae_bench_amortization.registry import (
    HIGHER_IS_WORSE,
    LOWER_IS_WORSE,
    FactArguments,
    MetricFacts,
    discover_evals,
    facts_by_column,
    metric_facts,
)
from sae_bench_amortization.reports.tables import csv_columns, table_columns
from sae_bench_amortization.runner.outputs import (
    GroundTruthByMode,
    GroundTruthMetrics,
    metric,
    optional_metric,
    with_ground_truth,
)

# amortization_gap's CSV and terminal columns as evals/amortization_gap/main.py listed them
CSV = (
    "mode", "nmse", "nmse_refit", "explained_variance", "l0", "objective", "dead_rate", "dense_rate",
    "delta_f1", "full_absorption_rate", "absorption_rate", "seconds_per_1k_tokens", "l1_coefficient",
    "coefficient_gap", "support_gap",  # the gap's split (issue 28), after the columns the lists had
)  # fmt: skip
PAPER_CSV = ("dense_rate_0_2", "f1_at_1", "f1_at_2")
TABLE = [
    ("NMSE", "nmse", ".4f"), ("NMSE-refit", "nmse_refit", ".4f"), ("EV", "explained_variance", ".4f"),
    ("L0", "l0", ".2f"), ("objective", "objective", ".4f"), ("dead", "dead_rate", ".3f"),
    ("dense", "dense_rate", ".3f"), ("dense.2", "dense_rate_0_2", ".3f"), ("F1@1", "f1_at_1", ".3f"),
    ("ΔF1", "delta_f1", ".4f"), ("absorb", "full_absorption_rate", ".4f"),
    ("absorb|miss", "absorption_rate", ".3f"),
    ("s/1k tok", "seconds_per_1k_tokens", ".4f"), ("λ", "l1_coefficient", ".4g"),
    ("coef gap", "coefficient_gap", ".4f"), ("supp gap", "support_gap", ".4f"),
]  # fmt: skip


@dataclass
class Plain(BaseMetrics):
    rate: float = metric("Rate", "a rate")
    other: float | None = optional_metric("Other", "another")


@dataclass
class WithFacts(BaseMetrics):
    rate: float = metric("Rate", "a rate", direction=HIGHER_IS_WORSE, bounds=(0.0, 1.0), label="r")
    other: float | None = optional_metric("Other", "another", shared="o", lambda_dependent=True)


def test_facts_stay_out_of_the_json_schema():
    plain, declared = TypeAdapter(Plain).json_schema(), TypeAdapter(WithFacts).json_schema()
    assert {**declared, "title": "Plain"} == plain
    assert metric_facts(Plain) == {}
    assert metric_facts(WithFacts) == {
        "rate": MetricFacts(direction=1, bounds=(0.0, 1.0), label="r"),
        "other": MetricFacts(shared="o", lambda_dependent=True),
    }


def test_metric_keywords_are_the_facts_fields():
    fields = {f.name for f in __import__("dataclasses").fields(MetricFacts)}
    assert set(typing.get_type_hints(FactArguments)) == fields


def test_an_output_class_collects_its_categories_and_rows_facts():
    facts = metric_facts(AmortizationGapEvalOutput)
    assert facts == {**metric_facts(AmortizationMetricCategories), **metric_facts(ModeRow)}
    assert metric_facts(AmortizationMetricCategories) == metric_facts(AmortizationMetrics)
    assert facts["nmse"].direction == HIGHER_IS_WORSE and facts["nmse"].bounds == (0.0, None)
    assert facts["explained_variance"].direction == LOWER_IS_WORSE
    assert facts["delta_f1"].shared == "delta_f1_subset"


def test_entries_read_directions_renames_and_lambda_dependence_from_the_facts():
    registry = discover_evals()
    gap, dead, splitting = (registry[n] for n in ("amortization_gap", "dead_dense", "splitting"))
    assert set(gap.lambda_dependent) == {"objective", "mean_gap", "mean_relative_gap", "median_gap"}
    assert gap.metric_names == {
        "delta_f1": "delta_f1_subset",
        "absorption_rate": "absorption_rate_subset",
        "full_absorption_rate": "full_absorption_rate_subset",
    }
    assert gap.directions["explained_variance"] == LOWER_IS_WORSE
    for name in (
        "nmse",
        "nmse_refit",
        "objective",
        "delta_f1_subset",
        "mean_gap",
        "dense_rate_0_2",
    ):
        assert gap.directions[name] == HIGHER_IS_WORSE
    assert "l0" not in gap.directions and "seconds_per_1k_tokens" not in gap.directions
    assert dead.metric_names == {"mean_l0": "l0"}
    assert dead.directions == {"dead_rate": 1, "dense_rate": 1}
    assert splitting.metric_names == {"mean_delta_f1": "delta_f1"}
    assert splitting.directions["delta_f1"] == HIGHER_IS_WORSE
    assert registry["core"].directions["explained_variance"] == LOWER_IS_WORSE  # SAEBench's own
    assert registry["absorption"].directions["mean_absorption_fraction_score"] == HIGHER_IS_WORSE


def test_a_compare_column_has_the_facts_of_the_eval_that_shares_that_name():
    facts = facts_by_column(discover_evals())
    assert facts["delta_f1"].label == "ΔF1 = F1@2 − F1@1 (splitting)"  # splitting's, shared name
    assert facts["delta_f1_subset"].label == "ΔF1 (amortization_gap's concepts)"
    assert facts["l0"].bounds == (0.0, None) and facts["dead_rate"].bounds == (0.0, 1.0)


def test_options_take_their_defaults_from_the_config_fields():
    registry = discover_evals()
    for entry in registry.values():
        config = entry.default_config()
        for option in entry.options:
            expected = None if option.repeatable else getattr(config, option.dest)
            assert option.default == expected, (entry.name, option.flag)
    gap = {option.flag: option.default for option in registry["amortization_gap"].options}
    assert gap == {"--dense-threshold": 0.1, "--loca-path": None, "--protocol": "default"}


def test_amortization_gap_columns_as_its_lists_had_them():
    assert csv_columns(ModeRow, [{"mode": "amortized"}]) == CSV
    paper_rows = [{"mode": "amortized", "dense_rate_0_2": 0.0, "f1_at_1": 0.5, "f1_at_2": 0.6}]
    assert csv_columns(ModeRow, paper_rows) == CSV + PAPER_CSV
    assert csv_columns(ModeRow, [{"f1_at_2": None}]) == (*CSV, "f1_at_2")  # a key, even null
    assert table_columns(ModeRow) == TABLE


def test_amortization_gap_csv_and_table_are_written_with_those_columns():
    from sae_bench_amortization.evals.amortization_gap.main import format_table, rows_to_csv

    row = {"mode": "amortized", "nmse": 0.25, "l0": 4.0, "objective": 1.5, "dead_rate": 0.125}
    assert rows_to_csv([row]).splitlines()[0] == ",".join(CSV)
    paper = {**row, "dense_rate_0_2": 0.0, "f1_at_1": 0.5, "f1_at_2": 0.6}
    assert rows_to_csv([paper]).splitlines()[0] == ",".join(CSV + PAPER_CSV)
    assert rows_to_csv([row]).splitlines()[1].startswith("amortized,0.25,")
    header = format_table("sae", [row], 0.1).splitlines()[1].split()
    shown = [
        title
        for title, key, _ in TABLE
        if key in ("nmse", "nmse_refit", "l0", "objective", "dead_rate")
    ]
    assert header == ["mode", *shown]


def test_with_ground_truth_picks_the_written_out_subclass():
    from sae_bench_amortization.evals.dead_dense.eval_output import (
        DeadDenseMetricCategories,
        DeadDenseMetricCategoriesWithGroundTruth,
        PathologyMetrics,
    )

    values = dict(dead_rate=0.1, dense_rate=0.0, alive_fraction=0.9, mean_l0=3.0, n_tokens=10)
    categories = DeadDenseMetricCategories(pathologies=PathologyMetrics(**values))
    truth = GroundTruthMetrics(mcc=0.75)
    combined = with_ground_truth(categories, truth)
    assert type(combined) is DeadDenseMetricCategoriesWithGroundTruth
    assert combined.pathologies == categories.pathologies and combined.ground_truth == truth
    by_mode = GroundTruthByMode.of({"amortized": truth, "semi:5": GroundTruthMetrics(f1=0.5)})
    assert by_mode.modes == ["amortized", "semi:5"] and by_mode.mcc == [0.75, None]
    assert by_mode.f1 == [None, 0.5]
    with pytest.raises(TypeError, match="WithGroundTruth"):
        with_ground_truth(categories, by_mode)  # dead_dense declares no per-mode variant
