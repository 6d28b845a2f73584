"""``saebench compare``: a results folder → summary.csv, summary.md and the plots (the tables of
:mod:`.compare`, the figures of :mod:`.plots`); every figure is drawn before anything is written."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path

import pandas as pd

from sae_bench_amortization.atomic import ensure_output_dir, refuse_existing, write_text_atomic
from sae_bench_amortization.errors import InputError
from sae_bench_amortization.registry import EvalEntry, discover_evals, facts_by_column
from sae_bench_amortization.reports.compare import (
    iter_result_files,
    load_results,
    markdown_table,
    note_sources,
)
from sae_bench_amortization.reports.plots import (
    per_sae_and_mode,
    plot_ista_ablation,
    plot_pareto,
    plot_pathologies,
    write_png,
)
from sae_bench_amortization.targets import check_apart, check_creatable, named

SUMMARY_FILES = (
    "summary.csv",
    "summary.md",
    "pathologies_by_mode.png",
    "ista_steps_ablation.png",
    "l0_nmse_pareto.png",
)


def write_summary(
    results_dir: str | Path,
    out: str | Path | None = None,
    registry: Mapping[str, EvalEntry] | None = None,
    overwrite: bool = False,
) -> tuple[pd.DataFrame, list[Path]]:
    """``saebench compare``: summary.csv, summary.md and the plots into ``out`` (default
    ``results_dir/summary``); every figure is drawn before anything is written."""
    if out == "":
        raise InputError("--out must name a folder")
    frame = load_results(results_dir, registry, sources=True, paired=True)
    target = Path(out or Path(results_dir) / "summary")
    read = named(("RESULTS_DIR", str(path)) for path in iter_result_files(Path(results_dir)))
    check_apart({"--out": target}, read)
    check_creatable(target, "--out")
    for name in SUMMARY_FILES:  # an earlier comparison's files are replaced only when asked
        refuse_existing(target / name, "--out", overwrite)
    folder = ensure_output_dir(target)
    note = note_sources(frame)
    if note:  # comparing across sources can be intended: said, not refused
        print(f"saebench: note: {note}", file=sys.stderr)
    registry = discover_evals() if registry is None else registry
    facts = facts_by_column(registry)
    table = per_sae_and_mode(frame, registry)
    figures = {
        "pathologies_by_mode.png": plot_pathologies(table, facts),
        "ista_steps_ablation.png": plot_ista_ablation(table, facts),
        "l0_nmse_pareto.png": plot_pareto(table, facts),
    }
    write_text_atomic(folder / "summary.csv", frame.to_csv(index=False))
    write_text_atomic(folder / "summary.md", markdown_table(frame))
    written = [folder / "summary.csv", folder / "summary.md"]
    for name, figure in figures.items():
        if figure is None:
            (folder / name).unlink(missing_ok=True)  # an old plot these results no longer make
        else:
            written.append(write_png(figure, folder / name))
    return frame, written
