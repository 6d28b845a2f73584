"""The paper's claims on planted truth: a grid of SAEs trained on one span of a synthetic world and evaluated
on a later span of the same world, every inference mode side by side, each claim's verdict cell by cell.

Per world family (:data:`WORLDS`: the default world, a world where planted hierarchies are most of what is
probed, and a Chanin-style parent/child world) and seed, one world (``saebench synth --seed S`` with the
family's flags): training tokens [0, N) and held-out tokens [N, N + M) (``--start-token N``). Per cell
(world, architecture, d_sae, sparsity, seed):

1. ``saebench train`` (:func:`train_sae_file`): TopK or a standard L1 SAE (the architectures of the world,
   ``World.architectures``) on the training span (epochs);
2. ``saebench run --eval amortization_gap --inference amortized semi:5 semi:25 semi:50 non_amortized
   --lambda-calibration per_mode`` on the held-out span, per :data:`VARIANTS`: the paper's plain L1 with
   the default definitions, the same under ``--protocol paper``, and the SAE's own problem
   (``--objective auto``: k_sparse for TopK, l1_decoder_norm for L1 SAEs);
3. TopK cells: ``saebench train-loca`` with the published grouping (G = 8, angular variance descending,
   budgets 6,5,4,3,3,2,2,1) as published (``loca``) and scaled to the SAE's k (``loca_k``), each with its
   G = 1 control (``_g1``), all fine-tuned alike from the SAE, evaluated on the held-out span.

Each finished cell is stored in ``--out``/cells/ with the settings it was made with (``--resume`` continues
an interrupted run from the cells made with the same settings, and refuses any other).
Writes to --out: ``cells.csv`` (one row per cell × variant × mode), ``concepts.csv.gz`` (the per-concept
evidence: one row per cell × variant × mode × probed concept), ``outcomes.csv`` (one row per claim × unit),
``verdicts.csv`` / ``verdicts.md`` (and ``verdicts_by_world.md``, each world apart), ``worlds.md`` (each
world's planted ceilings beside what the encoders reach), ``modes.md`` and one ``claim_<letter>.png`` per claim. ``--from-cells FILE`` redoes everything but
the training from a ``cells.csv`` (and the ``concepts.csv.gz`` beside it, when there is one).

    .venv/bin/python benchmarks/bench_claims.py --out claims [--quick] [--resume] [--overwrite]
    .venv/bin/python benchmarks/bench_claims.py --from-cells docs/claims/cells.csv --out redo
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

import sae_bench_amortization as sba
from sae_bench_amortization.activations.sources import FileActivations
from sae_bench_amortization.atomic import refuse_existing, write_file_atomic, write_text_atomic
from sae_bench_amortization.errors import InputError
from sae_bench_amortization.evals.amortization_gap.eval_config import AmortizationGapEvalConfig
from sae_bench_amortization.evals.amortization_gap.main import compare_modes
from sae_bench_amortization.loca.training import LocATrainingConfig, train_loca_from_sae
from sae_bench_amortization.metrics.planted import absorption_ceilings, concept_role
from sae_bench_amortization.modes import InferenceSettings, parse_modes
from sae_bench_amortization.reports.claims import (
    AMORTIZATION_ORDER,
    CELL,
    CELL_COLUMNS,
    CLAIMS,
    CONCEPT_COLUMNS,
    COUNTS,
    METRICS,
    claim_outcomes,
    mode_means,
    mode_means_markdown,
    verdict_markdown,
    verdicts,
    with_world,
    world_summary,
    world_summary_markdown,
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
    "cells.csv", "concepts.csv.gz", "outcomes.csv", "verdicts.csv", "verdicts.md", "worlds.md",
    "modes.md", *(f"claim_{letter}.png" for letter in dict.fromkeys(map(claim_letter, CLAIMS))),
)  # fmt: skip
STORE = "cells"  # --out's folder of finished cells (one JSON each), what --resume continues from


@dataclass(frozen=True)
class World:
    """A world family: ``saebench synth``'s flags besides the seed, and how many concepts
    amortization_gap probes there (planted roles first)."""

    description: str
    flags: dict = field(default_factory=dict)
    max_concepts: int = 32
    # the SAE architectures trained in this world
    architectures: tuple[str, ...] = ("topk", "standard")


WORLDS = {
    "default": World("saebench synth's default: 4 parents × 2 children (child share 0.1), 2 composites"),
    "hierarchies": World(
        "32 parents × 2 children (child share 0.3), 8 composites; the 24 most frequent planted concepts "
        "probed (parents first)",
        {"n_hierarchies": 32, "branching": 2, "child_share": 0.3, "n_composites": 8},
        max_concepts=24,
    ),
    "letters": World(
        "Chanin-style first-letter world: 10 frequent parents (p_max 0.3) × 20 mutually exclusive "
        "children (each on 8% of the parent's tokens, like the words that start with one letter); the "
        "10 parents probed",
        {"n_hierarchies": 10, "branching": 20, "child_share": 0.08, "mutually_exclusive": 1.0,
         "n_composites": 0, "p_max": 0.3},
        max_concepts=10,
        # TopK only: at the grid's L1 coefficients a standard SAE here is dense (coefficient 0.2: L0 53 of
        # 256, every latent on more than 10% of tokens), and exact sparse coding at that density takes
        # 7.7 s per 1,000 tokens on 2 cores, over 20 minutes per cell
        architectures=("topk",),
    ),
}  # fmt: skip


@dataclass(frozen=True)
class Variant:
    """How a cell's modes are compared: the problem they solve and the definitions measured."""

    objective: dict[str, str]  # architecture → --objective
    protocol: str  # --protocol


PLAIN_L1 = {"topk": "l1", "standard": "l1"}
VARIANTS = {
    # the paper's plain L1, the package's default definitions
    "l1": Variant(PLAIN_L1, "default"),
    # the paper's plain L1 and the authors' definitions
    "paper": Variant(PLAIN_L1, "paper"),
    # the SAE's own problem (what --objective auto picks): exactly k actives for TopK, the
    # decoder-norm-weighted L1 SAE-Lens trains standard SAEs with
    "own": Variant({"topk": "k_sparse", "standard": "l1_decoder_norm"}, "default"),
}


@dataclass(frozen=True)
class Grid:
    worlds: tuple[str, ...]
    seeds: tuple[int, ...]
    topk_d_sae: tuple[int, ...]
    topk_k: tuple[int, ...]
    standard_d_sae: tuple[int, ...]
    l1_coefficients: tuple[float, ...]
    train_tokens: int  # the training span [0, train_tokens)
    epochs: int
    eval_tokens: int  # the held-out span [train_tokens, train_tokens + eval_tokens)
    loca_tokens: int  # fine-tuning tokens of LocA and its control
    variants: tuple[str, ...] = tuple(VARIANTS)
    calibration_tokens: int | None = None  # tokens λ is calibrated on (None: saebench's default)

    def cells(self) -> list[tuple[str, str, int, float, int]]:
        topk = [("topk", d, float(k)) for d in self.topk_d_sae for k in self.topk_k if k <= d]
        standard = [("standard", d, l1) for d in self.standard_d_sae for l1 in self.l1_coefficients]
        return [
            (world, *point, seed)
            for world in self.worlds
            for seed in self.seeds
            for point in topk + standard
            if point[0] in WORLDS[world].architectures
        ]


GRIDS = {
    "full": Grid(
        worlds=("hierarchies", "letters"),
        seeds=(0, 1, 2, 3, 4),
        topk_d_sae=(256,),
        topk_k=(2, 4, 8),
        standard_d_sae=(256,),
        l1_coefficients=(0.2, 0.4, 0.6),
        train_tokens=30_000,
        epochs=4,
        eval_tokens=8_000,
        loca_tokens=40_000,
    ),
    "quick": Grid(
        worlds=("default",),
        seeds=(0, 1),
        topk_d_sae=(128,),
        topk_k=(2, 8),
        standard_d_sae=(128,),
        l1_coefficients=(0.45,),
        train_tokens=8_000,
        epochs=8,
        eval_tokens=2_000,
        loca_tokens=4_000,
        calibration_tokens=1_000,
    ),
}


def cell_name(cell: tuple) -> str:
    world, architecture, d_sae, sparsity, seed = cell
    return f"{world}_{architecture}_d{d_sae}_{sparsity:g}_s{seed}"


@dataclass
class WorldFiles:
    train: Path
    held_out: Path
    max_concepts: int
    ceilings: dict[str, float]  # concept → its planted absorption ceiling on the held-out span


def world_files(world: str, seed: int, grid: Grid, folder: Path) -> WorldFiles:
    """``saebench synth --seed S`` with the world's flags: the training span, the held-out span, and each
    held-out concept's planted absorption ceiling."""
    train = folder / f"{world}{seed}_train.safetensors"
    held_out = folder / f"{world}{seed}_eval.safetensors"
    config = SyntheticConfig(seed=seed, **WORLDS[world].flags)
    write_benchmark(config, grid.train_tokens, str(train), None)
    write_benchmark(config, grid.eval_tokens, str(held_out), None, start_token=grid.train_tokens)
    source = FileActivations(str(held_out)).source
    labels = (batch.concepts for batch in source.iter_batches(4096) if batch.concepts is not None)
    ceilings = absorption_ceilings(list(source.concept_names or []), labels)
    return WorldFiles(train, held_out, WORLDS[world].max_concepts, ceilings)


def cell_metrics(row: dict, truth: dict) -> dict:
    """The metrics of :data:`CELL_COLUMNS` from one amortization_gap row and its mode's ground truth."""
    return {key: row.get(key) for key in MODE_METRICS} | {
        "f1": truth.get("f1"),
        "recall": truth.get("recall"),
    }


def evidence_rows(mode: str, row: dict, ceilings: dict[str, float]) -> list[dict]:
    """A mode row's per-concept evidence (``row["concepts"]``) as rows of :data:`CONCEPT_COLUMNS` (less the
    cell's columns), with each concept's role and planted absorption ceiling; latent lists space-joined."""
    out = []
    for concept in row.get("concepts") or []:
        name = concept["concept"]
        entry = {key: concept.get(key) for key in CONCEPT_COLUMNS if key in concept}
        for key in ("main_latents", "absorbing_latents", "top_latents"):
            entry[key] = " ".join(map(str, concept.get(key) or []))
        out.append(
            entry
            | {"mode": mode, "role": concept_role(name), "absorption_ceiling": ceilings.get(name)}
        )
    return out


def mode_rows(result_file: Path, ceilings: dict[str, float]) -> tuple[dict[str, dict], list[dict]]:
    """(mode → :func:`cell_metrics`, per-concept evidence rows) from an amortization_gap result file."""
    result = json.loads(result_file.read_text())
    truth = result["eval_result_metrics"].get("ground_truth") or {}
    rows, evidence = {}, []
    for detail in result["eval_result_details"]:
        index = truth["modes"].index(detail["mode"]) if truth else None
        mode_truth = {key: truth[key][index] for key in ("f1", "recall")} if truth else {}
        rows[detail["mode"]] = cell_metrics(detail, mode_truth)
        evidence += evidence_rows(detail["mode"], detail, ceilings)
    return rows, evidence


def amortization_gap_file(
    sae_path: Path,
    name: str,
    files: WorldFiles,
    output: Path,
    objective: str,
    protocol: str,
    calibration_tokens: int | None = None,
) -> Path:
    """``saebench run --eval amortization_gap`` with every mode on the held-out span under ``objective``
    and ``protocol``'s definitions (λ per mode for the L1 objectives; k_sparse has none): its result."""
    inference = InferenceSettings(
        modes=parse_modes(list(AMORTIZATION_ORDER)),
        modes_given=True,
        lambda_calibration=None if objective == "k_sparse" else "per_mode",
        objective=objective,  # type: ignore[arg-type]  (checked by InferenceSettings)
        **({"calibration_tokens": calibration_tokens} if calibration_tokens else {}),
    )
    config = AmortizationGapEvalConfig(
        protocol=protocol, max_concepts=files.max_concepts, modes=list(AMORTIZATION_ORDER)
    )
    result = sba.run(
        evals=["amortization_gap"],
        saes=[spec_from_path(sae_path, name)],
        source=SourceSettings(activations=str(files.held_out)),
        inference=inference,
        output_dir=output,
        device="cpu",
        configs={"amortization_gap": config},
    )
    (outcome,) = [outcome for _, outcome in result.rows]
    if outcome.path is None:
        raise RuntimeError(
            f"amortization_gap on {name} ({objective}, {protocol}): {outcome.status}"
        )
    return Path(outcome.path)


LOCA_VARIANTS = {  # row name → --budget-scaling of the published grouping; its control is "<name>_g1"
    "loca": "none",  # the published budgets as given (Σ 26)
    "loca_k": "match_k",  # the same shape scaled to the SAE's k (each group at least 1)
}


def loca_saes(sae_path: Path, files: WorldFiles, grid: Grid, seed: int, work: Path) -> dict:
    """Per :data:`LOCA_VARIANTS`: LocA (published grouping) and its G = 1 control at the same total budget,
    both fine-tuned alike from the SAE on the training span."""
    config = LocATrainingConfig(
        n_tokens=grid.loca_tokens, lr=1e-3, batch_size=1024, dead_after_tokens=20_000,
        checkpoint_every=grid.loca_tokens, seed=seed,
    )  # fmt: skip
    source = SourceSettings(activations=str(files.train))
    saes = {}
    for name, scaling in LOCA_VARIANTS.items():
        loca = train_loca_from_sae(
            str(sae_path), None, None, source, work / name, n_groups=8, group_k=PAPER_BUDGETS,
            grouping_tokens=grid.train_tokens, config=config, budget_scaling=scaling,
        )  # fmt: skip
        control = train_loca_from_sae(
            str(sae_path), None, None, source, work / f"{name}_g1", n_groups=1,
            group_k=str(sum(loca.cfg.group_k)), grouping_tokens=grid.train_tokens, config=config,
        )  # fmt: skip
        saes[name], saes[f"{name}_g1"] = loca.eval(), control.eval()
    return saes


def loca_rows(saes: dict, files: WorldFiles, protocol: str) -> tuple[dict[str, dict], list[dict]]:
    """Each LocA-SAE's own encoder on the held-out span under ``protocol``'s definitions."""
    source = FileActivations(str(files.held_out)).source
    rows, evidence = {}, []
    for name, sae in saes.items():
        config = AmortizationGapEvalConfig(
            modes=["amortized"], protocol=protocol, max_concepts=files.max_concepts
        )
        (row,) = compare_modes(
            sae, source, parse_modes(["amortized"]), 0.0, InferenceSettings(), config=config
        )
        rows[name] = cell_metrics(row, row.get("ground_truth") or {})
        evidence += evidence_rows(name, row, files.ceilings)
    return rows, evidence


def run_cell(cell: tuple, grid: Grid, files: WorldFiles, work: Path) -> dict:
    """Train the cell's SAE, compare its modes under every variant, LocA for TopK: {"rows", "concepts",
    "seconds"}."""
    start = time.perf_counter()
    world, architecture, d_sae, sparsity, seed = cell
    folder = work / cell_name(cell)
    options = {"k": int(sparsity)} if architecture == "topk" else {"l1_coefficient": sparsity}
    train_sae_file(
        files.train, architecture, d_sae, grid.epochs * grid.train_tokens, folder / "sae",
        overwrite=False, seed=seed, **options,
    )  # fmt: skip
    saes = loca_saes(folder / "sae", files, grid, seed, folder) if architecture == "topk" else {}
    unit = dict(zip(CELL[1:], (world, architecture, d_sae, sparsity, seed), strict=True))
    rows, concepts = [], []
    # LocA's encoders do not depend on the objective: measured once per protocol
    loca_by_protocol: dict[str, tuple[dict, list]] = {}
    for variant in grid.variants:
        settings = VARIANTS[variant]
        result = amortization_gap_file(
            folder / "sae", cell_name(cell), files, folder / f"results_{variant}",
            settings.objective[architecture], settings.protocol, grid.calibration_tokens,
        )  # fmt: skip
        modes, evidence = mode_rows(result, files.ceilings)
        if saes:
            if settings.protocol not in loca_by_protocol:
                loca_by_protocol[settings.protocol] = loca_rows(saes, files, settings.protocol)
            loca, loca_evidence = loca_by_protocol[settings.protocol]
            modes, evidence = modes | loca, evidence + loca_evidence
        rows += [{"variant": variant, **unit, "mode": m, **metrics} for m, metrics in modes.items()]
        concepts += [{"variant": variant, **unit, **row} for row in evidence]
    return {"rows": rows, "concepts": concepts, "seconds": time.perf_counter() - start}


def stored_cells(store: Path, grid: Grid, resume: bool) -> dict[str, dict]:
    """The cells of ``grid`` a --resume'd run already has (name → {"rows", "concepts", ...}). A stored cell
    is reused only when it was made with the same settings (its own ``signature``; for a cell stored
    without one, the settings of the store's ``grid.json``); any other is refused. Stored cells outside
    ``grid`` are left alone."""
    first_grid = store / "grid.json"
    if not resume:
        return {}
    if not first_grid.is_file():
        raise InputError(f"--resume: no earlier run in {store} (no grid.json)")
    started_with = json.loads(first_grid.read_text())
    done = {}
    for cell in grid.cells():
        path = store / f"{cell_name(cell)}.json"
        if not path.is_file():
            continue
        stored = json.loads(path.read_text())
        made_with = stored.get("signature") or cell_signature(started_with, cell)
        if not same_settings(made_with, cell_signature(grid_signature(grid), cell)):
            raise InputError(
                f"--resume: {path} holds cells of another grid (other settings): drop --resume"
            )
        done[cell_name(cell)] = stored
    return done


def same_settings(stored: dict | None, current: dict | None) -> bool:
    """Two cell signatures agree; a setting one of them lacks (added to :class:`Grid` since) counts as its
    default, None."""
    if stored is None or current is None:
        return False
    return all(stored.get(key) == current.get(key) for key in stored.keys() | current.keys())


def grid_signature(grid: Grid) -> dict:
    """What makes a stored cell valid: the grid, its worlds' flags, and the variants' settings (as JSON)."""
    return json.loads(
        json.dumps(
            dataclasses.asdict(grid)
            | {
                "worlds_flags": {world: dataclasses.asdict(WORLDS[world]) for world in grid.worlds},
                "variants_settings": {
                    name: dataclasses.asdict(VARIANTS[name]) for name in grid.variants
                },
            }
        )
    )


def cell_signature(signature: dict, cell: tuple) -> dict | None:
    """The settings one cell was made with, taken from a grid's signature (:func:`grid_signature`): its
    world's flags and probed concepts, the grid's settings other than the lists it enumerates cells from
    (those the signature holds: :func:`same_settings` reads a missing one as None) and the variants'
    settings; None when ``signature`` does not describe the cell."""
    world = cell[0]
    enumerated = {"worlds", "seeds", "topk_d_sae", "topk_k", "standard_d_sae", "l1_coefficients"}
    settings = [f.name for f in dataclasses.fields(Grid) if f.name not in enumerated | {"variants"}]
    try:
        world_flags = signature["worlds_flags"][world]
        return {
            "cell": list(cell),
            "world": {"flags": world_flags["flags"], "max_concepts": world_flags["max_concepts"]},
            **{key: signature[key] for key in settings if key in signature},
            "variants_settings": signature["variants_settings"],
        }
    except (KeyError, TypeError):
        return None


def measure(grid: Grid, store: Path, resume: bool) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Every cell of ``grid`` not already in ``store``: train, compare the modes, LocA; each finished cell
    written to ``store``. (cells: one row per cell × variant × mode; concepts: the evidence.)"""
    done = stored_cells(store, grid, resume)
    store.mkdir(parents=True, exist_ok=True)
    if not (store / "grid.json").is_file():
        # the grid the store was started with: the settings of cells stored without their own signature
        write_text_atomic(store / "grid.json", json.dumps(grid_signature(grid), indent=1))
    cells = grid.cells()
    print(
        f"{len(cells)} cells, {sum(cell_name(c) in done for c in cells)} already measured",
        flush=True,
    )
    with tempfile.TemporaryDirectory(prefix="bench_claims_") as scratch:
        work = Path(scratch)
        worlds: dict[tuple[str, int], WorldFiles] = {}
        for number, cell in enumerate(cells, 1):
            if cell_name(cell) in done:
                continue
            world, seed = cell[0], cell[-1]
            if (world, seed) not in worlds:
                worlds[(world, seed)] = world_files(world, seed, grid, work)
            measured = run_cell(cell, grid, worlds[(world, seed)], work)
            measured["signature"] = cell_signature(grid_signature(grid), cell)
            write_text_atomic(store / f"{cell_name(cell)}.json", json.dumps(measured))
            done[cell_name(cell)] = measured
            nmse = ", ".join(
                f"{row['mode']} {row['nmse']:.3f}"
                for row in measured["rows"]
                if row["variant"] == grid.variants[0]
            )
            took = measured["seconds"]
            print(
                f"[{number}/{len(cells)}] {cell_name(cell)}: {took:.1f} s; NMSE {nmse}", flush=True
            )
    total = sum(done[cell_name(cell)].get("seconds", math.nan) for cell in cells)
    print(f"the cells took {total / 60:.1f} min in all (summed over the runs that measured them)")
    rows = [row for cell in cells for row in done[cell_name(cell)]["rows"]]
    concepts = [row for cell in cells for row in done[cell_name(cell)]["concepts"]]
    return (
        pd.DataFrame(rows, columns=pd.Index(CELL_COLUMNS)),
        pd.DataFrame(concepts, columns=pd.Index(CONCEPT_COLUMNS)),
    )


def write_report(cells: pd.DataFrame, concepts: pd.DataFrame | None, out: Path) -> pd.DataFrame:
    write_text_atomic(out / "cells.csv", cells.to_csv(index=False))
    if concepts is not None:
        write_file_atomic(
            out / "concepts.csv.gz",
            lambda path: concepts.to_csv(
                path, index=False, compression={"method": "gzip", "mtime": 0}
            ),
        )
    outcomes = claim_outcomes(cells, concepts=concepts)
    table = verdicts(outcomes)
    write_text_atomic(out / "outcomes.csv", outcomes.to_csv(index=False))
    write_text_atomic(out / "verdicts.csv", table.to_csv(index=False))
    write_text_atomic(out / "verdicts.md", verdict_markdown(table))
    write_text_atomic(out / "verdicts_by_world.md", verdicts_by_world_markdown(outcomes, table))
    write_text_atomic(out / "worlds.md", world_summary_markdown(world_summary(cells, concepts)))
    write_text_atomic(out / "modes.md", mode_means_markdown(mode_means(cells)))
    plot_claims(outcomes, out)
    return table


def verdicts_by_world_markdown(outcomes: pd.DataFrame, pooled: pd.DataFrame) -> str:
    """The verdicts of each world apart (its seeds the clusters): a claim may hold where the planted
    structure lets it show and not elsewhere."""
    parts = []
    worlds = list(dict.fromkeys(outcomes["world"]))
    for world in worlds:
        described = WORLDS[world].description if world in WORLDS else "a world of an older grid"
        # one world: its verdicts are the pooled ones
        table = pooled if len(worlds) == 1 else verdicts(outcomes.loc[outcomes["world"] == world])
        parts.append(f"## {world}: {described}\n\n{verdict_markdown(table)}")
    return "\n".join(parts)


def read_cells(path: Path) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """A cells.csv and, when it lies beside it, its concepts.csv.gz."""
    cells = with_world(pd.read_csv(path))
    beside = path.parent / "concepts.csv.gz"
    return cells, (with_world(pd.read_csv(beside), CONCEPT_COLUMNS) if beside.is_file() else None)


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for the tables and plots")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="the tiny grid CI runs (6 cells, about 1.5 min on 2 cores)",
    )
    parser.add_argument(
        "--from-cells", type=Path, help="a cells.csv (concepts.csv.gz beside it): redo the verdicts"
    )
    parser.add_argument(
        "--resume", action="store_true", help="keep the cells --out/cells/ already has"
    )
    parser.add_argument("--overwrite", action="store_true", help="replace earlier outputs in --out")
    args = parser.parse_args()
    try:
        if args.out.exists() and not args.out.is_dir():
            raise InputError(f"--out exists and is not a folder: {args.out}")
        for name in OUTPUTS:
            refuse_existing(args.out / name, "--out's " + name, args.overwrite)
        store = args.out / STORE
        if args.from_cells is not None:
            if not args.from_cells.is_file():
                raise InputError(f"--from-cells: no such file: {args.from_cells}")
            if args.resume:
                raise InputError("--from-cells trains nothing: drop --resume")
        elif not args.resume and store.is_dir() and any(store.iterdir()) and not args.overwrite:
            raise InputError(
                f"--out's measured cells {store} exist: pass --resume to continue that run, or "
                "--overwrite to start again"
            )
        start = time.perf_counter()
        grid = GRIDS["quick" if args.quick else "full"]
        if args.from_cells:
            cells, concepts = read_cells(args.from_cells)
        else:
            if not args.resume and store.is_dir():
                for stale in store.glob("*.json"):  # --overwrite: a fresh run
                    stale.unlink()
            cells, concepts = measure(grid, store, args.resume)
        args.out.mkdir(parents=True, exist_ok=True)
        table = write_report(cells, concepts, args.out)
    except InputError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    n_cells = cells.groupby(list(CELL[1:])).ngroups
    print(world_summary_markdown(world_summary(cells, concepts)))
    print(mode_means_markdown(mode_means(cells)))
    print(verdict_markdown(table))
    took = time.perf_counter() - start
    print(
        f"{n_cells} cells, {len(cells)} cell × variant × mode rows; {math.floor(took / 60)} min "
        f"{took % 60:.0f} s; wrote {args.out}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
