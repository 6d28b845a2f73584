"""saebench compare's report: summary.md number formatting and the figures (titles inside the figure,
SAE names on the Pareto plot, readable axes for all-zero panels), from small hand-written results."""

from __future__ import annotations

import json
import warnings

import matplotlib
import pandas as pd
import pytest

from sae_bench_amortization.reports.compare import format_number, load_results
from sae_bench_amortization.reports.plots import (
    per_sae_and_mode,
    plot_ista_ablation,
    plot_pareto,
    plot_pathologies,
)
from sae_bench_amortization.reports.summary import write_summary

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

MODES = ("amortized", "semi:2", "semi:10", "non_amortized")
SAES = ("local_first", "local_second", "local_third")


def gap_result(modes=MODES, **overrides) -> dict:
    """An amortization_gap result file's content: one detail row per mode, dead_rate 0 everywhere."""
    details = [
        {
            "mode": mode,
            "l0": 20.0 + 4 * j,
            "nmse": 0.3 - 0.05 * j,
            "dead_rate": 0.0,
            "dense_rate": 0.01 * j,
            "delta_f1": None,
            "absorption_rate": 0.2 - 0.02 * j,
            "n_tokens": 20000.0,
            **overrides,
        }
        for j, mode in enumerate(modes)
    ]
    return {
        "eval_type_id": "amortization_gap",
        "eval_config": {},
        "eval_result_metrics": {
            "amortization": {"mean_gap": 0.123456, "mean_relative_gap": 1.5e-5}
        },
        "eval_result_details": details,
    }


@pytest.fixture
def results(tmp_path):
    folder = tmp_path / "results" / "amortization_gap"
    folder.mkdir(parents=True)
    for k, sae in enumerate(SAES):
        data = gap_result()
        for detail in data["eval_result_details"]:
            detail["nmse"] += 0.02 * k
        (folder / f"{sae}_eval_results.json").write_text(json.dumps(data))
    return tmp_path / "results"


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def markdown_cells(markdown: str) -> list[dict[str, str]]:
    header, _, *rows = markdown.strip().splitlines()
    names = [c.strip() for c in header.strip("|").split("|")]
    return [
        dict(zip(names, (c.strip() for c in row.strip("|").split("|")), strict=True))
        for row in rows
    ]


def test_summary_markdown_prints_integers_plainly_and_four_significant_digits(results, tmp_path):
    written = write_summary(results, tmp_path / "summary")[1]
    markdown = (tmp_path / "summary" / "summary.md").read_text()
    assert tmp_path / "summary" / "summary.md" in written
    assert "e+" not in markdown
    rows = markdown_cells(markdown)
    assert len(rows) == len(SAES) * len(MODES)
    assert {row["n_tokens"] for row in rows} == {"20000"}
    assert {row["dead_rate"] for row in rows} == {"0"}
    encoder = [row for row in rows if row["mode"] == "amortized"]
    assert {row["mean_gap"] for row in encoder} == {"0.1235"}
    assert {row["mean_relative_gap"] for row in encoder} == {"1.5e-05"}  # |x| < 1e-4: scientific
    assert {row["mean_gap"] for row in rows if row["mode"] != "amortized"} == {""}  # null


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (20000, "20000"),
        (20000.0, "20000"),
        (2_000_000.0, "2000000"),
        (0.123456, "0.1235"),
        (123456.7, "123500"),
        (0.5, "0.5"),
        (1.5e-5, "1.5e-05"),
        (1234567.5, "1.235e+06"),
        (-0.0123456, "-0.01235"),
        (float("nan"), ""),
        (None, ""),
    ],
)
def test_format_number(value, text):
    assert format_number(value) == text


def texts_of(fig) -> list:
    """Every title, axis label, legend text and free text of ``fig`` that has something to show."""
    texts = list(fig.texts) + [t for legend in fig.legends for t in legend.get_texts()]
    for ax in fig.axes:
        texts += [ax.title, ax.xaxis.label, ax.yaxis.label, *ax.texts]
        if ax.get_legend() is not None:
            texts += ax.get_legend().get_texts()
    return [t for t in texts if t.get_visible() and t.get_text()]


def assert_inside(fig) -> None:
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    box = fig.bbox
    for text in texts_of(fig):
        extent = text.get_window_extent(renderer)
        assert box.x0 - 1 <= extent.x0 and extent.x1 <= box.x1 + 1, text.get_text()
        assert box.y0 - 1 <= extent.y0 and extent.y1 <= box.y1 + 1, text.get_text()


PLOTTED = ("nmse", "nmse_refit", "absorption_rate", "absorption_rate_subset")


@pytest.mark.parametrize("metrics", [["nmse"], ["nmse", "absorption_rate_subset"]])
def test_ablation_titles_fit_with_one_or_more_panels(results, metrics):
    table = per_sae_and_mode(load_results(results))
    table = table.drop(columns=[c for c in PLOTTED if c in table and c not in metrics])
    fig = plot_ista_ablation(table)
    assert len(fig.axes) == len(metrics)
    assert any("ISTA-steps ablation" in t.get_text() for t in fig.texts)  # the figure's title
    assert_inside(fig)


def test_pathologies_titles_fit_with_one_panel(results):
    table = per_sae_and_mode(load_results(results))[["sae", "mode", "nmse"]]
    fig = plot_pathologies(table)
    assert len(fig.axes) == 1
    assert_inside(fig)


def test_pareto_names_every_sae(results):
    fig = plot_pareto(per_sae_and_mode(load_results(results)))
    labels = {t.get_text() for t in texts_of(fig)}
    assert set(SAES) <= labels and set(MODES) <= labels
    markers = {c.get_paths()[0].vertices.tobytes() for c in fig.axes[0].collections}
    assert len(markers) == len(SAES)  # one marker shape per SAE
    assert_inside(fig)


def test_pareto_numbers_points_when_saes_outnumber_markers():
    rows = [
        {"sae": f"sae_{k}", "mode": mode, "l0": 10.0 + k + j, "nmse": 0.5 - 0.01 * k - 0.1 * j}
        for k in range(15)
        for j, mode in enumerate(MODES[:2])
    ]
    fig = plot_pareto(pd.DataFrame(rows))
    labels = {t.get_text() for t in texts_of(fig)}
    assert {f"{k + 1}: sae_{k}" for k in range(15)} <= labels
    assert len(fig.axes[0].texts) == 30  # each point numbered after its SAE


def is_all_zero_panel(ax) -> bool:
    low, high = ax.get_ylim()
    return low <= 0 <= high and high - low >= 0.5 and "all 0" in [t.get_text() for t in ax.texts]


def test_all_zero_panels_get_a_readable_range(results):
    table = per_sae_and_mode(load_results(results))
    pathologies = plot_pathologies(table)
    panels = {ax.get_title(): ax for ax in pathologies.axes}
    dead = panels["dead latents (share)"]
    assert dead.get_ylim() == (0.0, 1.0) and is_all_zero_panel(dead)
    assert not any(t.get_text() == "all 0" for t in panels["NMSE (lower is better)"].texts)
    ablation = plot_ista_ablation(table.assign(absorption_rate_subset=0.0))
    zero = [ax for ax in ablation.axes if "absorption" in ax.get_title()]
    assert len(zero) == 1 and is_all_zero_panel(zero[0])
    assert is_all_zero_panel(plot_pareto(table.assign(nmse=0.0)).axes[0])


def test_constant_nonzero_panel_is_not_a_hair_wide(results):
    table = per_sae_and_mode(load_results(results)).assign(nmse=0.25)
    ax = plot_ista_ablation(table).axes[0]
    low, high = ax.get_ylim()
    assert low < 0.25 < high and high - low > 0.1
    assert "all 0.25" in [t.get_text() for t in ax.texts]


def test_plots_warn_about_nothing(results):
    table = per_sae_and_mode(load_results(results))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for plot in (plot_pathologies, plot_ista_ablation, plot_pareto):
            plot(table).canvas.draw()
