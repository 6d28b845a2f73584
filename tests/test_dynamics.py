"""saebench dynamics: amortization_gap over ordered checkpoints → CSV rows per checkpoint × mode, and plots."""

from __future__ import annotations

import pandas as pd


def test_dynamics_over_three_checkpoints(tmp_path, cli):
    acts = tmp_path / "a.safetensors"
    assert cli("synth", "--out", acts, "--n-tokens", "3000").code == 0
    paths = []
    for n in (2000, 6000, 12000):
        path = tmp_path / f"ckpt_{n}"
        assert (
            cli(
                "train",
                "--activations",
                acts,
                "--architecture",
                "topk",
                "--d-sae",
                "128",
                "--k",
                "4",
                "--n-tokens",
                n,
                "--out",
                path,
                "--device",
                "cpu",
            ).code
            == 0
        )
        paths.append(path)
    result = cli(
        "dynamics",
        "--eval",
        "amortization_gap",
        *[a for p in paths for a in ("--sae-path", p)],
        "--activations",
        acts,
        "--output-dir",
        tmp_path / "out",
        "--calibration-tokens",
        "1000",
        "--inference",
        "amortized",
        "--inference",
        "semi:5",
    )
    assert result.code == 0, result.err
    table = pd.read_csv(tmp_path / "out" / "dynamics" / "dynamics.csv")
    assert list(table["checkpoint"]) == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert list(table["sae"].unique()) == ["local_ckpt_2000", "local_ckpt_6000", "local_ckpt_12000"]
    assert list(table["mode"][:3]) == ["amortized", "semi:5", "non_amortized"]
    assert (table["mean_gap"] > 0).all()
    png = (tmp_path / "out" / "dynamics" / "dynamics.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 20_000


def test_dynamics_needs_amortization_gap_and_checkpoints(tmp_path, cli):
    result = cli("dynamics", "--eval", "dead_dense", "--sae-path", tmp_path)
    assert result.code == 2 and "amortization_gap" in result.err
    result = cli("dynamics", "--eval", "amortization_gap")
    assert result.code == 2 and "checkpoints" in result.err


def _write_gap_results(folder, names):
    """Hand-written amortization_gap results, one per checkpoint: dead_rate 0, ΔF1 not computed."""
    import json

    (folder / "amortization_gap").mkdir(parents=True, exist_ok=True)
    for index, name in enumerate(names):
        details = [
            {"mode": mode, "nmse": 0.3 - 0.05 * j - 0.01 * index, "dead_rate": 0.0,
             "dense_rate": 0.01 * j, "delta_f1": None, "absorption_rate": 0.2 - 0.02 * j}
            for j, mode in enumerate(("amortized", "semi:5", "non_amortized"))
        ]  # fmt: skip
        data = {
            "eval_type_id": "amortization_gap",
            "eval_result_metrics": {"amortization": {"mean_gap": 0.05 + 0.01 * index}},
            "eval_result_details": details,
        }
        (folder / "amortization_gap" / f"{name}_eval_results.json").write_text(json.dumps(data))


def test_dynamics_with_one_checkpoint_draws_points_and_prints_nothing(tmp_path, capfd):
    import warnings

    import matplotlib.pyplot as plt

    from sae_bench_amortization.reports.dynamics import (
        dynamics_figure,
        dynamics_table,
        write_dynamics,
    )

    _write_gap_results(tmp_path, ["only"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _, png = write_dynamics(tmp_path, ["only"])
        figure = dynamics_figure(dynamics_table(tmp_path, ["only"]))
        figure.canvas.draw()
    captured = capfd.readouterr()
    assert captured.err == "" and captured.out == ""
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    panels = {axis.get_title(): axis for axis in figure.axes}
    lines = [line for axis in figure.axes for line in axis.get_lines()]
    assert lines and all(line.get_linestyle() == "None" for line in lines)  # points, no lines
    assert all(line.get_marker() == "o" for line in lines)
    assert all(axis.get_legend() is None for axis in figure.axes)  # one legend for the figure
    (legend,) = figure.legends
    assert [t.get_text() for t in legend.get_texts()] == ["amortized", "semi:5", "non_amortized"]
    colours = {}
    for line in lines:  # a mode has one colour in every panel
        if line.get_label() in ("amortized", "semi:5", "non_amortized"):
            assert colours.setdefault(line.get_label(), line.get_color()) == line.get_color()
    # panel titles: each metric's label as its output class declares it
    from sae_bench_amortization.registry import discover_evals, facts_by_column

    facts = facts_by_column(discover_evals())
    assert not panels[f"{facts['delta_f1'].label} by inference mode"].get_lines()  # not computed
    dead = panels[f"{facts['dead_rate'].label} by inference mode"]
    assert dead.get_title() == "dead latents (share) by inference mode"
    low, high = dead.get_ylim()
    assert low <= 0 <= high and high - low >= 0.5  # not matplotlib's ±0.04 around a constant 0
    assert "all 0" in [text.get_text() for text in dead.texts]
    gap_low, gap_high = panels["mean amortization gap"].get_ylim()
    assert gap_low < 0.05 < gap_high and gap_high - gap_low > 0.02
    plt.close(figure)


def test_dynamics_with_several_checkpoints_draws_lines(tmp_path):
    import matplotlib.pyplot as plt

    from sae_bench_amortization.reports.dynamics import dynamics_figure, dynamics_table

    _write_gap_results(tmp_path, ["a", "b", "c"])
    figure = dynamics_figure(dynamics_table(tmp_path, ["a", "b", "c"]))
    lines = [line for axis in figure.axes for line in axis.get_lines()]
    assert lines and all(line.get_linestyle() == "-" for line in lines)
    plt.close(figure)


def test_dynamics_without_values_draws_no_legend_and_warns_about_nothing():
    import warnings

    import matplotlib.pyplot as plt

    from sae_bench_amortization.reports.dynamics import dynamics_figure

    table = pd.DataFrame(
        {"checkpoint": [0, 0], "sae": ["a", "a"], "mode": ["amortized", "semi:5"],
         "nmse": [None, None], "mean_gap": [None, None]}
    )  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        figure = dynamics_figure(table)
        figure.canvas.draw()
    assert not figure.legends and all(axis.get_legend() is None for axis in figure.axes)
    assert not [line for axis in figure.axes for line in axis.get_lines()]
    plt.close(figure)
