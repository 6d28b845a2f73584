"""Training dynamics: amortization_gap results of ordered checkpoints → one table and line plots."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import pandas as pd

from sae_bench_amortization.atomic import ensure_output_dir, refuse_existing, write_text_atomic
from sae_bench_amortization.errors import InputError
from sae_bench_amortization.registry import discover_evals, facts_by_column
from sae_bench_amortization.reports.plots import bounds_of, label_of, settle_flat_axis, write_png
from sae_bench_amortization.sources.sanity import read_cfg

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

# the panels, one metric each; titles and bounds come from each metric's own declaration
PLOTTED = ("nmse", "nmse_refit", "dead_rate", "dense_rate", "delta_f1", "absorption_rate")


def check_checkpoints(evals: list[str], checkpoints_given: bool) -> None:
    """``saebench dynamics`` runs amortization_gap, once, over checkpoints the user named."""
    if list(dict.fromkeys(evals)) != ["amortization_gap"]:
        raise InputError("dynamics runs --eval amortization_gap (once) over the checkpoints")
    if not checkpoints_given:
        raise InputError(
            "dynamics needs checkpoints: repeat --sae-path in order, or --sae-regex/--sae-block-regex"
        )


def targets(output_dir: Path) -> tuple[Path, Path]:
    """Where ``saebench dynamics`` writes: ``<output_dir>/dynamics/dynamics.csv`` and ``.png``."""
    folder = Path(output_dir) / "dynamics"
    return folder / "dynamics.csv", folder / "dynamics.png"


def check_targets(output_dir: Path, overwrite: bool) -> None:
    """Before any work: one line when an earlier dynamics.csv / .png would be replaced without
    ``--overwrite``."""
    for target in targets(output_dir):
        refuse_existing(target, "dynamics output", overwrite)


def check_widths(cfgs: list[tuple[str, Any]]) -> None:
    """One line when the checkpoints (name, cfg: an SAE config or a result's ``sae_cfg_dict``) differ in
    d_in or d_sae: they are not checkpoints of one training run."""
    widths: dict[tuple[int, int], list[str]] = {}
    for name, cfg in cfgs:
        get = cfg.get if isinstance(cfg, dict) else lambda key, cfg=cfg: getattr(cfg, key, None)
        d_in, d_sae = get("d_in"), get("d_sae")
        if d_in is not None and d_sae is not None:
            widths.setdefault((int(d_in), int(d_sae)), []).append(name)
    if len(widths) > 1:
        shown = "; ".join(
            f"d_in {d_in}, d_sae {d_sae}: {', '.join(names)}"
            for (d_in, d_sae), names in widths.items()
        )
        raise InputError(
            f"dynamics needs checkpoints of one SAE's training, but their widths differ ({shown}): "
            "evaluate SAEs of different widths with saebench run and compare"
        )


def checkpoint_cfgs(specs: list[Any]) -> list[tuple[str, Any]]:
    """(name, config) of each checkpoint to check before any work: a saved folder's cfg.json, else the
    SAE loaded on the CPU."""

    cfgs = []
    for spec in specs:
        path = getattr(spec, "path", None)
        folder = Path(path) if path else None
        if folder is not None and (folder / "cfg.json").is_file():
            cfgs.append((spec.sae_name, read_cfg(folder / "cfg.json")))
        else:
            cfgs.append((spec.sae_name, spec.load("cpu", "float32").cfg))
    return cfgs


def dynamics_table(output_dir: Path, sae_names: list[str]) -> pd.DataFrame:
    """One row per checkpoint × mode (checkpoint = position in ``sae_names``), with the SAE's mean gap."""
    rows, cfgs = [], []
    for index, name in enumerate(sae_names):
        path = output_dir / "amortization_gap" / f"{name}_eval_results.json"
        if not path.is_file():
            raise InputError(f"no amortization_gap result for checkpoint {name}: {path}")
        data = json.loads(path.read_text())
        cfgs.append((name, data.get("sae_cfg_dict") or {}))
        gap = data["eval_result_metrics"]["amortization"]["mean_gap"]
        for detail in data["eval_result_details"]:
            rows.append({"checkpoint": index, "sae": name, **detail, "mean_gap": gap})
    check_widths(cfgs)
    return pd.DataFrame(rows)


def _numeric(values: Any) -> pd.Series:  # a column, or .get()'s default
    """A column's values as numbers (NaN where not a number)."""
    return cast(pd.Series, pd.to_numeric(values, errors="coerce"))


def dynamics_figure(table: pd.DataFrame) -> Figure:
    """2 × 4 plots against checkpoint: NMSE, NMSE refit, dead, dense, ΔF1, absorption per mode, and the gap. Lines
    join the checkpoints; a single checkpoint is drawn as points. A legend only where something is
    drawn, and a panel whose values are all the same (all 0, say) gets a readable range."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    facts = facts_by_column(discover_evals())

    checkpoints = sorted(_numeric(table["checkpoint"]).unique())
    single = len(checkpoints) == 1
    style = {"marker": "o", "linestyle": "none" if single else "-"}
    modes = list(dict.fromkeys(table["mode"]))
    figure, axes = plt.subplots(2, 4, figsize=(18, 7.5), layout="constrained")
    for axis in axes.flat:
        if single:  # one checkpoint: its tick only, with room for the modes' points side by side
            axis.set_xticks(checkpoints)
            axis.set_xlim(checkpoints[0] - 0.5, checkpoints[0] + 0.5)
        else:
            axis.xaxis.set_major_locator(MaxNLocator(integer=True))
            axis.set_xlim(checkpoints[0] - 0.25, checkpoints[-1] + 0.25)
        axis.set_xlabel("checkpoint (training order)")
        axis.grid(alpha=0.3)
    handles = {}  # mode → a line drawn for it: one legend for the figure, colour = mode everywhere
    for axis, column in zip(axes.flat, PLOTTED, strict=False):
        title = label_of(column, facts)
        shown = []
        for j, (mode, group) in enumerate(table.groupby("mode", sort=False)):
            values = _numeric(group.get(column, pd.Series(dtype=float)))
            if values.notna().any():
                # one checkpoint: the modes' points a little apart, so equal values do not hide
                dodge = (j - (len(modes) - 1) / 2) * 0.06 if single else 0.0
                (line,) = axis.plot(
                    group["checkpoint"] + dodge, values, color=f"C{j}", label=mode, **style
                )
                handles.setdefault(mode, line)
                shown.extend(values.dropna())
        axis.set_title(f"{title} by inference mode")
        axis.set_ylabel(title)
        if not shown:
            _say(axis, "no values (not computed for these checkpoints)")
        else:
            settle_flat_axis(axis, shown, bounds_of(column, facts))
    gap_axis = axes.flat[len(PLOTTED)]
    for spare in axes.flat[len(PLOTTED) + 1 :]:
        spare.set_visible(False)
    gap = table.drop_duplicates("checkpoint")
    gaps = _numeric(gap.get("mean_gap", pd.Series(dtype=float)))
    gap_axis.set_title("mean amortization gap")
    gap_axis.set_ylabel("objective(amortized) − objective(optimal)")
    if gaps.notna().any():
        gap_axis.plot(gap["checkpoint"], gaps, color="black", **style)
        settle_flat_axis(gap_axis, gaps.dropna())
    else:
        _say(gap_axis, "no values")
    if handles:  # a legend only when something labelled was drawn
        ordered = [handles[mode] for mode in modes if mode in handles]
        figure.legend(
            handles=ordered,
            title="inference mode",
            loc="outside lower center",
            ncols=len(ordered),
            fontsize=9,
        )
    figure.suptitle("Pathologies across training checkpoints, on each checkpoint's own decoder")
    return figure


def plot_dynamics(table: pd.DataFrame, path: Path) -> None:
    """:func:`dynamics_figure` of ``table`` as a PNG at ``path``."""

    write_png(dynamics_figure(table), path, dpi=110)


def _say(axis: Axes, text: str) -> None:
    """A note in the middle of an empty panel."""
    axis.text(0.5, 0.5, text, transform=axis.transAxes, ha="center", va="center", color="0.35")


def write_dynamics(output_dir: Path, sae_names: list[str]) -> tuple[Path, Path]:
    """``<output_dir>/dynamics/dynamics.csv`` and ``dynamics.png`` from the checkpoints' results."""
    table = dynamics_table(output_dir, sae_names)
    csv_path, png_path = targets(output_dir)
    ensure_output_dir(csv_path.parent)
    write_text_atomic(csv_path, table.to_csv(index=False))
    plot_dynamics(table, png_path)
    return csv_path, png_path
