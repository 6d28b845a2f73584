"""The claims grid's L1 SAEs under each sparse-coding objective: does exact coding "create" dead latents and
lose the planted features because plain L1 ignores the decoder-row norms these SAEs were trained with?

Per seed (``--seeds``, default 0), the ``default`` world and the spans and L1 cells of the claims grid
these numbers were first measured on (:data:`GRIDS`: d_sae 128 / 256 / 512 × L1 0.2 / 0.3 / 0.45 / 0.6;
``--quick``: a tiny one), every standard (L1) cell trained once with ``saebench train`` (:func:`train_sae_file`), then
``saebench run --eval amortization_gap --lambda-calibration per_mode --objective X`` on the held-out span
for each ``--objective`` (default ``l1 l1_decoder_norm``): every mode at the encoder's density, its dead
rate, NMSE, L0, λ and SAE-Lens's support F1 / recall to the planted features.

Writes to --out: ``cells.csv`` (one row per cell × objective × mode: the evidence) and ``objectives.md``
(per objective and mode: the mean over cells, and the paired difference to the first objective with a
t-interval over cells); prints the markdown.

    .venv/bin/python benchmarks/bench_objectives.py --out objectives [--quick] [--seeds 0] [--overwrite]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
from bench_claims import Grid, WorldFiles, amortization_gap_file, mode_rows, world_files
from scipy import stats

from sae_bench_amortization.atomic import refuse_existing, write_text_atomic
from sae_bench_amortization.errors import InputError
from sae_bench_amortization.reports.claims import AMORTIZATION_ORDER
from sae_bench_amortization.synthetic.training import train_sae_file

OUTPUTS = ("cells.csv", "objectives.md")
# the claims grid's earlier L1 cells (bench_claims.py's grid now differs): the spans and SAEs measured here
GRIDS = {
    "full": Grid(
        worlds=("default",), seeds=(0, 1, 2), topk_d_sae=(), topk_k=(),
        standard_d_sae=(128, 256, 512), l1_coefficients=(0.2, 0.3, 0.45, 0.6),
        train_tokens=60_000, epochs=4, eval_tokens=20_000, loca_tokens=0,
    ),
    "quick": Grid(
        worlds=("default",), seeds=(0, 1), topk_d_sae=(), topk_k=(), standard_d_sae=(128,),
        l1_coefficients=(0.3, 0.45, 0.6), train_tokens=8_000, epochs=8, eval_tokens=2_000,
        loca_tokens=0,
    ),
}  # fmt: skip
METRICS = ("dead_rate", "f1", "recall", "nmse", "l0", "lambda")
SHOWN = ("dead_rate", "f1", "recall", "nmse", "l0")


def evaluate(
    sae_path: Path, name: str, files: WorldFiles, objective: str, output: Path
) -> list[dict]:
    """One ``saebench run --eval amortization_gap`` (every mode, λ per mode) under ``objective``: a row per
    mode with :data:`METRICS`."""
    path = amortization_gap_file(sae_path, name, files, output, objective, "default")
    lambdas = {
        detail["mode"]: detail.get("l1_coefficient")
        for detail in json.loads(path.read_text())["eval_result_details"]
    }
    return [
        {
            "mode": mode,
            **{m: metrics.get(m) for m in METRICS if m != "lambda"},
            "lambda": lambdas[mode],
        }
        for mode, metrics in mode_rows(path, files.ceilings)[0].items()
    ]


def measure(grid: Grid, seeds: tuple[int, ...], objectives: tuple[str, ...]) -> pd.DataFrame:
    rows = []
    cells = [(d, l1, s) for s in seeds for d in grid.standard_d_sae for l1 in grid.l1_coefficients]
    with tempfile.TemporaryDirectory(prefix="bench_objectives_") as scratch:
        work = Path(scratch)
        worlds = {seed: world_files("default", seed, grid, work) for seed in seeds}
        for number, (d_sae, l1, seed) in enumerate(cells, 1):
            start = time.perf_counter()
            folder = work / f"standard_d{d_sae}_{l1:g}_s{seed}"
            train_sae_file(
                worlds[seed].train, "standard", d_sae, grid.epochs * grid.train_tokens, folder / "sae",
                overwrite=False, seed=seed, l1_coefficient=l1,
            )  # fmt: skip
            for objective in objectives:
                for row in evaluate(
                    folder / "sae", folder.name, worlds[seed], objective, folder / objective
                ):
                    rows.append(
                        {
                            "d_sae": d_sae,
                            "sparsity": l1,
                            "seed": seed,
                            "objective": objective,
                            **row,
                        }
                    )
            print(
                f"[{number}/{len(cells)}] standard d_sae {d_sae} L1 {l1:g} seed {seed}: "
                f"{time.perf_counter() - start:.1f} s",
                flush=True,
            )
    return pd.DataFrame(rows)


def summary_markdown(cells: pd.DataFrame) -> str:
    """Per objective and mode: the mean of :data:`SHOWN` over the cells where it is defined (n beside it);
    then per later objective its paired difference to the first, mean and 95% t-interval over cells."""
    objectives = list(dict.fromkeys(cells["objective"]))
    modes = [m for m in AMORTIZATION_ORDER if m in set(cells["mode"])]
    lines = [
        "| objective | mode | n cells | " + " | ".join(SHOWN) + " |",
        "|---|---|---|" + "---|" * len(SHOWN),
    ]
    for objective in objectives:
        for mode in modes:
            part = cells[(cells["objective"] == objective) & (cells["mode"] == mode)]
            values = " | ".join(f"{part[m].mean():.3f}" for m in SHOWN)
            lines.append(f"| `{objective}` | {mode} | {len(part)} | {values} |")
    key = ["d_sae", "sparsity", "seed", "mode"]
    base = cells[cells["objective"] == objectives[0]].set_index(key)
    for objective in objectives[1:]:
        other = cells[cells["objective"] == objective].set_index(key)
        lines += [
            "",
            f"`{objective}` − `{objectives[0]}`, paired over cells (mean [95% t-interval], n):",
            "",
            "| mode | " + " | ".join(SHOWN) + " |",
            "|---|" + "---|" * len(SHOWN),
        ]
        for mode in modes:
            cell_text = []
            for metric in SHOWN:
                both = pd.concat(
                    [other.xs(mode, level="mode")[metric], base.xs(mode, level="mode")[metric]],
                    axis=1,
                    join="inner",
                ).dropna()
                difference = both.iloc[:, 0] - both.iloc[:, 1]
                cell_text.append(interval_text(difference))
            lines.append(f"| {mode} | " + " | ".join(cell_text) + " |")
    return "\n".join(lines)


def interval_text(difference: pd.Series) -> str:
    n = len(difference)
    if n == 0:
        return "– (n 0)"
    mean = float(difference.mean())
    if n < 2:
        return f"{mean:+.3f} (n 1)"
    half = float(stats.t.ppf(0.975, n - 1) * difference.std(ddof=1) / math.sqrt(n))
    return f"{mean:+.3f} [{mean - half:+.3f}, {mean + half:+.3f}] (n {n})"


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument(
        "--out", type=Path, required=True, help="folder for cells.csv and objectives.md"
    )
    parser.add_argument("--quick", action="store_true", help="a tiny grid (d_sae 128, 2 seeds)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="worlds (default: 0)")
    parser.add_argument(
        "--objective", nargs="+", default=["l1", "l1_decoder_norm"],
        choices=["l1", "l1_decoder_norm"], help="objectives compared, the first the reference",
    )  # fmt: skip
    parser.add_argument("--overwrite", action="store_true", help="replace earlier outputs in --out")
    args = parser.parse_args()
    try:
        if args.out.exists() and not args.out.is_dir():
            raise InputError(f"--out exists and is not a folder: {args.out}")
        for name in OUTPUTS:
            refuse_existing(args.out / name, "--out's " + name, args.overwrite)
    except InputError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    start = time.perf_counter()
    grid = GRIDS["quick" if args.quick else "full"]
    cells = measure(grid, tuple(args.seeds), tuple(dict.fromkeys(args.objective)))
    args.out.mkdir(parents=True, exist_ok=True)
    text = summary_markdown(cells)
    write_text_atomic(args.out / "cells.csv", cells.to_csv(index=False))
    write_text_atomic(args.out / "objectives.md", text + "\n")
    print(text)
    took = time.perf_counter() - start
    print(f"{math.floor(took / 60)} min {took % 60:.0f} s; wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
