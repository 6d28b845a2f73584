"""The paper's claims on planted truth: a grid of SAEs trained on one span of a synthetic world and evaluated
on a later span of the same world, every inference mode side by side, each claim's verdict cell by cell.

Per seed, one world (``saebench synth --seed S``: d_in 128, F = 256 true features with hierarchies and
composites): training tokens [0, N) and held-out tokens [N, N + M) (``--start-token N``). Per cell
(architecture, d_sae, sparsity, seed):

1. ``saebench train`` (:func:`train_sae_file`): TopK (d_sae below / at / above F, k 2–16) or a standard L1 SAE
   over a range of penalties, on the training span (epochs);
2. ``saebench run --eval amortization_gap --inference amortized semi:5 semi:25 semi:50 non_amortized
   --lambda-calibration per_mode`` on the held-out span: NMSE, L0, dead, dense, ΔF1, absorption, and
   SAE-Lens's ground-truth metrics (support F1 and recall to the planted features) per mode, every mode at the
   encoder's density;
3. TopK cells: ``saebench train-loca`` with the published grouping (G = 8, angular variance descending,
   budgets 6,5,4,3,3,2,2,1) as published (``loca``: budgets as given, Σ 26) and scaled to the SAE's k
   (``loca_k``: ``--budget-scaling match_k``), each with its control (``_g1``: G = 1, one budget equal to
   LocA's total), all fine-tuned alike from the SAE, evaluated on the held-out span.

Writes to --out: ``cells.csv`` (one row per cell × mode), ``outcomes.csv`` (one row per claim × unit),
``verdicts.csv`` / ``verdicts.md`` and one ``claim_<letter>.png`` per claim. ``--from-cells FILE`` redoes the
verdicts and plots from a ``cells.csv`` without training anything.

    .venv/bin/python benchmarks/bench_claims.py --out claims [--quick] [--overwrite] [--from-cells FILE]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

import sae_bench_amortization as sba
from sae_bench_amortization.atomic import refuse_existing, write_text_atomic
from sae_bench_amortization.errors import InputError
from sae_bench_amortization.evals.amortization_gap.eval_config import AmortizationGapEvalConfig
from sae_bench_amortization.evals.amortization_gap.main import compare_modes
from sae_bench_amortization.loca.training import LocATrainingConfig, train_loca_from_sae
from sae_bench_amortization.modes import InferenceSettings, parse_modes
from sae_bench_amortization.reports.claims import (
    AMORTIZATION_ORDER,
    CELL,
    CELL_COLUMNS,
    CLAIMS,
    COUNTS,
    METRICS,
    claim_outcomes,
    mode_means,
    mode_means_markdown,
    verdict_markdown,
    verdicts,
)
from sae_bench_amortization.reports.claims_plots import claim_letter, plot_claims
from sae_bench_amortization.sources.saes import spec_from_path
from sae_bench_amortization.sources.selection import SourceSettings
from sae_bench_amortization.synthetic import write_benchmark
from sae_bench_amortization.synthetic.generator import SyntheticConfig
from sae_bench_amortization.synthetic.training import train_sae_file

PAPER_BUDGETS = "6,5,4,3,3,2,2,1"
MODE_METRICS = tuple(m for m in METRICS if m not in ("f1", "recall")) + COUNTS  # amortization_gap's
OUTPUTS = (
    "cells.csv", "outcomes.csv", "verdicts.csv", "verdicts.md", "modes.md",
    *(f"claim_{letter}.png" for letter in dict.fromkeys(map(claim_letter, CLAIMS))),
)  # fmt: skip


@dataclass(frozen=True)
class Grid:
    seeds: tuple[int, ...]
    topk_d_sae: tuple[int, ...]
    topk_k: tuple[int, ...]
    standard_d_sae: tuple[int, ...]
    l1_coefficients: tuple[float, ...]
    train_tokens: int  # the training span [0, train_tokens)
    epochs: int
    eval_tokens: int  # the held-out span [train_tokens, train_tokens + eval_tokens)
    loca_tokens: int  # fine-tuning tokens of LocA and its control

    def cells(self) -> list[tuple[str, int, float, int]]:
        topk = [("topk", d, float(k)) for d in self.topk_d_sae for k in self.topk_k if k <= d]
        standard = [("standard", d, l1) for d in self.standard_d_sae for l1 in self.l1_coefficients]
        return [(*point, seed) for seed in self.seeds for point in topk + standard]


GRIDS = {
    "full": Grid(
        seeds=(0, 1, 2),
        topk_d_sae=(128, 256, 512),
        topk_k=(2, 4, 8, 16),
        standard_d_sae=(128, 256, 512),
        l1_coefficients=(0.2, 0.3, 0.45, 0.6),
        train_tokens=60_000,
        epochs=4,
        eval_tokens=20_000,
        loca_tokens=120_000,
    ),
    "quick": Grid(
        seeds=(0, 1),
        topk_d_sae=(128,),
        topk_k=(2, 4, 8),
        standard_d_sae=(128,),
        l1_coefficients=(0.3, 0.45, 0.6),
        train_tokens=8_000,
        epochs=8,
        eval_tokens=2_000,
        loca_tokens=8_000,
    ),
}


def world_files(seed: int, grid: Grid, folder: Path) -> tuple[Path, Path]:
    """``saebench synth --seed S``: the training span and the held-out span of world S."""
    train, held_out = (
        folder / f"world{seed}_train.safetensors",
        folder / f"world{seed}_eval.safetensors",
    )
    config = SyntheticConfig(seed=seed)
    write_benchmark(config, grid.train_tokens, str(train), None)
    write_benchmark(config, grid.eval_tokens, str(held_out), None, start_token=grid.train_tokens)
    return train, held_out


def cell_metrics(row: dict, truth: dict) -> dict:
    """The metrics of :data:`CELL_COLUMNS` from one amortization_gap row and its mode's ground truth."""
    return {key: row.get(key) for key in MODE_METRICS} | {
        "f1": truth.get("f1"),
        "recall": truth.get("recall"),
    }


def mode_rows(result_file: Path) -> dict[str, dict]:
    """mode → :func:`cell_metrics` from an amortization_gap result file (ground truth: parallel lists)."""
    result = json.loads(result_file.read_text())
    truth = result["eval_result_metrics"].get("ground_truth") or {}
    rows = {}
    for detail in result["eval_result_details"]:
        index = truth["modes"].index(detail["mode"]) if truth else None
        mode_truth = {key: truth[key][index] for key in ("f1", "recall")} if truth else {}
        rows[detail["mode"]] = cell_metrics(detail, mode_truth)
    return rows


def amortization_gap_file(
    sae_path: Path, name: str, held_out: Path, output: Path, objective: str = "l1"
) -> Path:
    """``saebench run --eval amortization_gap`` with every mode, λ per mode, on the held-out span under
    ``objective`` (the paper's plain L1 by default): its result file."""
    modes = parse_modes(list(AMORTIZATION_ORDER))
    inference = InferenceSettings(
        modes=modes,
        modes_given=True,
        lambda_calibration="per_mode",
        objective=objective,  # type: ignore[arg-type]  (checked by InferenceSettings)
    )
    result = sba.run(
        evals=["amortization_gap"],
        saes=[spec_from_path(sae_path, name)],
        source=SourceSettings(activations=str(held_out)),
        inference=inference,
        output_dir=output,
        device="cpu",
    )
    (outcome,) = [outcome for _, outcome in result.rows]
    if outcome.path is None:
        raise RuntimeError(f"amortization_gap on {name} under {objective}: {outcome.status}")
    return Path(outcome.path)


def compared_modes(sae_path: Path, name: str, held_out: Path, output: Path) -> dict[str, dict]:
    """mode → :func:`cell_metrics` of :func:`amortization_gap_file` (plain L1, as the paper)."""
    return mode_rows(amortization_gap_file(sae_path, name, held_out, output))


LOCA_VARIANTS = {  # row name → --budget-scaling of the published grouping; its control is "<name>_g1"
    "loca": "none",  # the published budgets as given (Σ 26)
    "loca_k": "match_k",  # the same shape scaled to the SAE's k (each group at least 1)
}


def loca_rows(
    sae_path: Path, train: Path, held_out: Path, grid: Grid, seed: int, work: Path
) -> dict[str, dict]:
    """Per :data:`LOCA_VARIANTS`: LocA (published grouping) and its G = 1 control at the same total budget,
    both fine-tuned alike from the SAE on the training span, evaluated (their own encoders) on the held-out
    span."""
    from sae_bench_amortization.activations.sources import FileActivations

    config = LocATrainingConfig(
        n_tokens=grid.loca_tokens, lr=1e-3, batch_size=1024, dead_after_tokens=20_000,
        checkpoint_every=grid.loca_tokens, seed=seed,
    )  # fmt: skip
    source = SourceSettings(activations=str(train))
    eval_source = FileActivations(str(held_out)).source
    rows = {}
    for name, scaling in LOCA_VARIANTS.items():
        loca = train_loca_from_sae(
            str(sae_path), None, None, source, work / name, n_groups=8, group_k=PAPER_BUDGETS,
            grouping_tokens=grid.train_tokens, config=config, budget_scaling=scaling,
        )  # fmt: skip
        total = str(sum(loca.cfg.group_k))
        control = train_loca_from_sae(
            str(sae_path), None, None, source, work / f"{name}_g1", n_groups=1, group_k=total,
            grouping_tokens=grid.train_tokens, config=config,
        )  # fmt: skip
        for row_name, sae in ((name, loca), (f"{name}_g1", control)):
            (row,) = compare_modes(
                sae.eval(), eval_source, parse_modes(["amortized"]), 0.0, InferenceSettings(),
                config=AmortizationGapEvalConfig(modes=["amortized"]),
            )  # fmt: skip
            rows[row_name] = cell_metrics(row, row.get("ground_truth") or {})
    return rows


def run_cell(cell: tuple, grid: Grid, worlds: dict, work: Path) -> list[dict]:
    architecture, d_sae, sparsity, seed = cell
    train, held_out = worlds[seed]
    folder = work / f"{architecture}_d{d_sae}_{sparsity:g}_s{seed}"
    options = {"k": int(sparsity)} if architecture == "topk" else {"l1_coefficient": sparsity}
    train_sae_file(
        train,
        architecture,
        d_sae,
        grid.epochs * grid.train_tokens,
        folder / "sae",
        overwrite=False,
        seed=seed,
        **options,
    )
    rows = compared_modes(folder / "sae", folder.name, held_out, folder / "results")
    if architecture == "topk":
        rows |= loca_rows(folder / "sae", train, held_out, grid, seed, folder)
    return [
        {
            "architecture": architecture,
            "d_sae": d_sae,
            "sparsity": sparsity,
            "seed": seed,
            "mode": mode,
            **metrics,
        }
        for mode, metrics in rows.items()
    ]


def measure(grid: Grid) -> pd.DataFrame:
    """Every cell of ``grid``: train, compare the modes, LocA; one row per cell × mode."""
    rows = []
    cells = grid.cells()
    with tempfile.TemporaryDirectory(prefix="bench_claims_") as scratch:
        work = Path(scratch)
        worlds = {seed: world_files(seed, grid, work) for seed in grid.seeds}
        for number, cell in enumerate(cells, 1):
            start = time.perf_counter()
            cell_rows = run_cell(cell, grid, worlds, work)
            rows += cell_rows
            print(
                f"[{number}/{len(cells)}] {cell[0]} d_sae {cell[1]} sparsity {cell[2]:g} seed {cell[3]}: "
                f"{time.perf_counter() - start:.1f} s; NMSE "
                + ", ".join(f"{row['mode']} {row['nmse']:.3f}" for row in cell_rows),
                flush=True,
            )
    return pd.DataFrame(rows, columns=pd.Index(CELL_COLUMNS))


def write_report(cells: pd.DataFrame, out: Path) -> pd.DataFrame:
    write_text_atomic(out / "cells.csv", cells.to_csv(index=False))
    outcomes = claim_outcomes(cells)
    table = verdicts(outcomes)
    write_text_atomic(out / "outcomes.csv", outcomes.to_csv(index=False))
    write_text_atomic(out / "verdicts.csv", table.to_csv(index=False))
    write_text_atomic(out / "verdicts.md", verdict_markdown(table))
    write_text_atomic(out / "modes.md", mode_means_markdown(mode_means(cells)))
    plot_claims(outcomes, out)
    return table


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for the tables and plots")
    parser.add_argument(
        "--quick", action="store_true", help="the tiny grid CI runs (about a minute on 2 cores)"
    )
    parser.add_argument("--from-cells", type=Path, help="a cells.csv: redo verdicts and plots only")
    parser.add_argument("--overwrite", action="store_true", help="replace earlier outputs in --out")
    args = parser.parse_args()
    try:
        if args.out.exists() and not args.out.is_dir():
            raise InputError(f"--out exists and is not a folder: {args.out}")
        for name in OUTPUTS:
            refuse_existing(args.out / name, "--out's " + name, args.overwrite)
        if args.from_cells is not None and not args.from_cells.is_file():
            raise InputError(f"--from-cells: no such file: {args.from_cells}")
        start = time.perf_counter()
        grid = GRIDS["quick" if args.quick else "full"]
        cells = pd.read_csv(args.from_cells) if args.from_cells else measure(grid)
        args.out.mkdir(parents=True, exist_ok=True)
        table = write_report(cells, args.out)
    except InputError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    n_cells = cells.groupby(list(CELL)).ngroups
    print(mode_means_markdown(mode_means(cells)))
    print(verdict_markdown(table))
    took = time.perf_counter() - start
    print(
        f"{n_cells} cells, {len(cells)} cell × mode rows; {math.floor(took / 60)} min {took % 60:.0f} s; wrote {args.out}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
