"""``saebench reproduce``'s orchestration. A reproduction is a chain of ``saebench`` commands (:mod:`.targets`), run in order and resumable
(:mod:`.steps`), then read back into the paper's layout (:mod:`.tables`) and written to
``OUT/<target>.md``. Nothing is written before the whole command is checked: the target and scale, the
flags the target reads, the folder (only this package's own reproduction folders are written into) and,
offline, that every model, SAE and dataset it needs is in the local Hugging Face cache."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from sae_bench_amortization.atomic import write_text_atomic
from sae_bench_amortization.errors import InputError
from sae_bench_amortization.reproduce import tables
from sae_bench_amortization.reproduce.cache_check import check_cached
from sae_bench_amortization.reproduce.paper_numbers import PAPER_ROWS
from sae_bench_amortization.reproduce.steps import MANIFEST, Manifest, Step, plan_steps, run_steps
from sae_bench_amortization.reproduce.targets import (
    SCALES,
    TARGETS,
    Settings,
    caveats,
    choices,
    settings_for,
)

TRAINING_FLAGS = ("model", "layer", "dataset", "text_file", "activation_tokens", "train_tokens",
                  "loca_tokens", "grouping_tokens", "d_sae", "k", "lr", "batch_size")  # fmt: skip


@dataclass
class Reproduction:
    """What ``reproduce`` did: the target, its settings and choices, each step's seconds, the table (the
    paper's layout), the notes on what was not comparable, and the Markdown file written."""

    target: str
    settings: Settings
    chosen: dict[str, str]
    seconds: dict[str, float]
    table: str
    notes: list[str]
    path: Path


def plan(target: str, scale: str = "paper", out: str | Path | None = None, **given: Any) -> tuple[Settings, list[Step]]:  # fmt: skip
    """The settings and steps of ``target`` at ``scale`` (flags ``given``: Settings fields; None = default),
    checked: one line (InputError) for a target, scale or flag it cannot use."""
    if target not in TARGETS:
        raise InputError(f"unknown target '{target}': choose one of {', '.join(TARGETS)}")
    if scale not in SCALES:
        raise InputError(f"unknown --scale '{scale}': choose paper or smoke")
    spec = TARGETS[target]
    flags = {k: v for k, v in given.items() if v is not None}
    if not spec.trains and (
        wrong := [k for k in TRAINING_FLAGS if k in flags and k not in ("dataset", "text_file")]
    ):
        raise InputError(f"--{wrong[0].replace('_', '-')} applies to the targets that train their SAEs "
                         f"({', '.join(n for n, t in TARGETS.items() if t.trains)}); {target} evaluates published SAEs")  # fmt: skip
    if spec.trains and "activations" in flags:
        raise InputError(f"--activations applies to the targets that evaluate published SAEs; {target} "
                         "writes its own activation files from --model")  # fmt: skip
    if "dataset" in flags and "text_file" in flags:
        raise InputError("give --dataset or --text-file, not both")
    folder = Path(out) if out is not None else Path("reproduction") / scale
    settings = settings_for(scale, folder, **flags)
    if settings.layer < 0:
        raise InputError(f"--layer must be >= 0, got {settings.layer}")
    return settings, spec.steps(settings)


def check_folder(folder: Path, reads: Sequence[str | None]) -> Manifest:
    """The reproduction folder is new, empty, or one this package made (its manifest is there), and holds
    none of the files the command reads."""
    from sae_bench_amortization.targets import check_apart

    check_apart({"--out": folder}, {f"input {i}": path for i, path in enumerate(reads) if path})
    if folder.exists() and not folder.is_dir():
        raise InputError(f"--out {folder} is a file, not a folder")
    if folder.is_dir() and any(folder.iterdir()) and not (folder / MANIFEST).is_file():
        raise InputError(f"--out {folder} holds files not written by saebench reproduce (no {MANIFEST}): "
                         "choose another --out")  # fmt: skip
    return Manifest.read(folder)


def reproduce(
    target: str,
    scale: str = "paper",
    out: str | Path | None = None,
    dry_run: bool = False,
    say: Callable[[str], None] = print,
    **given: Any,
) -> Reproduction | list[tuple[Step, str]]:
    """Run (or resume) ``target`` at ``scale`` into ``out`` (default ``reproduction/<scale>``); with
    ``dry_run`` return the planned steps and what would happen to each, writing nothing."""
    settings, steps = plan(target, scale, out, **given)
    manifest = check_folder(settings.out, [settings.activations, settings.text_file])
    planned = plan_steps(steps, manifest, strict=not dry_run)
    if dry_run:
        return planned
    check_cached(TARGETS[target], settings)
    chosen = choices(TARGETS[target], settings)
    for key, value in chosen.items():
        say(f"{key}: {value}")
    settings.out.mkdir(parents=True, exist_ok=True)
    seconds = run_steps(planned, manifest, _execute, say)
    table, notes = result_table(target, settings)
    notes = [*notes, *caveats(TARGETS[target], settings)]
    text = _markdown(target, settings, chosen, steps, seconds, table, notes)
    path = settings.out / f"{target}.md"
    write_text_atomic(path, text)
    manifest.targets[target] = {"settings": json.loads(json.dumps(asdict(settings), default=str)),
                                "chosen": chosen, "seconds": {k: round(v, 1) for k, v in seconds.items()}}  # fmt: skip
    manifest.write()
    return Reproduction(target, settings, chosen, seconds, table, notes, path)


def _execute(argv: Sequence[str]) -> None:
    """One ``saebench`` command line, in this process; its bad input stays one line (InputError)."""
    from sae_bench_amortization import cli
    from sae_bench_amortization.registry import discover_evals

    registry = discover_evals()
    args = cli.build_parser(registry).parse_args(list(argv))
    done = cli.COMMANDS[args.command](args, registry)
    text, code = done if isinstance(done, tuple) else (done, 0)
    if text:
        print(text)
    if code:
        raise RuntimeError(f"'saebench {args.command}' exited {code} (its output above says why); "
                           "run the same reproduce command again to resume")  # fmt: skip


def result_table(target: str, settings: Settings) -> tuple[str, list[str]]:
    """The target's results in the paper's layout (Markdown), and the notes on what was not comparable."""
    from sae_bench_amortization.reports.compare import load_results, markdown_table

    results = settings.out / "results" / target
    if target == "dynamics":
        import pandas as pd

        shown, ours = tables.dynamics_rows(pd.read_csv(results / "dynamics" / "dynamics.csv"))
        compared, notes = tables.dynamics_compare(ours)
        return markdown_table(compared) + "\nby checkpoint:\n\n" + markdown_table(shown), notes
    frame = load_results(results)
    frame = tables.rows_where(frame, frame["eval"] == "amortization_gap")
    if target == "gated-pattern":
        note = ("the paper reports this comparison as a pattern (Gated against TopK / JumpReLU), without "
                "numbers: nothing to put beside ours")  # fmt: skip
        return markdown_table(tables.architecture_means(frame)), [note]
    saes = sorted(set(frame["sae"]))
    compared, notes = tables.compare_rows(tables.modes_of(frame, saes[0]), PAPER_ROWS[target])
    return markdown_table(compared), notes


def _markdown(target, settings, chosen, steps, seconds, table, notes) -> str:
    lines = [f"# saebench reproduce {target} (--scale {settings.scale})", "", TARGETS[target].title, "",
             "## Settings (where the paper is silent: its authors' code, or this package's choice)", ""]  # fmt: skip
    lines += [f"- {key}: {value}" for key, value in chosen.items()]
    lines += ["", "## Steps", ""]
    lines += [f"- `{step.command()}` ({seconds.get(step.name, 0):.1f} s)" for step in steps]
    lines += ["", "## Result (the paper's number, ours, ours − paper)", "", table, ""]
    if notes:
        lines += ["## Not comparable (and why)", "", *[f"- {note}" for note in notes], ""]
    return "\n".join(lines)
