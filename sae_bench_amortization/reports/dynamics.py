"""Training dynamics: amortization_gap results of ordered checkpoints → one table and line plots."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from sae_bench_amortization.errors import InputError
from sae_bench_amortization.runner.results import ensure_output_dir, write_text_atomic

PLOTTED = (
    ("nmse", "NMSE"),
    ("dead_rate", "dead rate"),
    ("dense_rate", "dense rate"),
    ("delta_f1", "ΔF1 (splitting)"),
    ("absorption_rate", "absorption rate"),
)


def check_checkpoints(evals: list[str], checkpoints_given: bool) -> None:
    """``saebench dynamics`` runs amortization_gap, once, over checkpoints the user named."""
    if list(dict.fromkeys(evals)) != ["amortization_gap"]:
        raise InputError("dynamics runs --eval amortization_gap (once) over the checkpoints")
    if not checkpoints_given:
        raise InputError(
            "dynamics needs checkpoints: repeat --sae-path in order, or --sae-regex/--sae-block-regex"
        )


def dynamics_table(output_dir: Path, sae_names: list[str]) -> pd.DataFrame:
    """One row per checkpoint × mode (checkpoint = position in ``sae_names``), with the SAE's mean gap."""
    rows = []
    for index, name in enumerate(sae_names):
        path = output_dir / "amortization_gap" / f"{name}_eval_results.json"
        if not path.is_file():
            raise InputError(f"no amortization_gap result for checkpoint {name}: {path}")
        data = json.loads(path.read_text())
        gap = data["eval_result_metrics"]["amortization"]["mean_gap"]
        for detail in data["eval_result_details"]:
            rows.append({"checkpoint": index, "sae": name, **detail, "mean_gap": gap})
    return pd.DataFrame(rows)


def plot_dynamics(table: pd.DataFrame, path: Path) -> None:
    """2 × 3 line plots against checkpoint: NMSE, dead, dense, ΔF1, absorption per mode, and the gap."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    from sae_bench_amortization.reports.plots import write_png

    figure, axes = plt.subplots(2, 3, figsize=(14, 7.5), constrained_layout=True)
    for axis in axes.flat:
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
    for axis, (column, title) in zip(axes.flat, PLOTTED, strict=False):
        for mode, group in table.groupby("mode", sort=False):
            values = pd.to_numeric(group[column], errors="coerce")
            if values.notna().any():
                axis.plot(group["checkpoint"], values, marker="o", label=mode)
        axis.set_title(f"{title} by inference mode")
        axis.set_xlabel("checkpoint (training order)")
        axis.set_ylabel(title)
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8)
    gap = table.drop_duplicates("checkpoint")
    axes.flat[5].plot(gap["checkpoint"], gap["mean_gap"], marker="o", color="black")
    axes.flat[5].set_title("mean amortization gap")
    axes.flat[5].set_xlabel("checkpoint (training order)")
    axes.flat[5].set_ylabel("objective(amortized) − objective(optimal)")
    axes.flat[5].grid(alpha=0.3)
    figure.suptitle("Pathologies across training checkpoints, on each checkpoint's own decoder")
    write_png(figure, path, dpi=110)


def write_dynamics(output_dir: Path, sae_names: list[str]) -> tuple[Path, Path]:
    """``<output_dir>/dynamics/dynamics.csv`` and ``dynamics.png`` from the checkpoints' results."""
    table = dynamics_table(output_dir, sae_names)
    folder = ensure_output_dir(output_dir / "dynamics")
    csv_path, png_path = folder / "dynamics.csv", folder / "dynamics.png"
    write_text_atomic(csv_path, table.to_csv(index=False))
    plot_dynamics(table, png_path)
    return csv_path, png_path
