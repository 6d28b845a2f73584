"""``saebench``: a thin shell over the library — parse, look up the registry, call the library, print.
Exit codes: 0 success; 2 bad input (one line on stderr, no traceback); 1 internal error."""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from sae_bench_amortization.errors import InputError
from sae_bench_amortization.inference import OBJECTIVE_CHOICES
from sae_bench_amortization.registry import EvalEntry, discover_evals, eval_options

if TYPE_CHECKING:  # annotations only: the library loads when a command needs it
    from types import ModuleType

    from _typeshed import DataclassInstance

    from sae_bench_amortization.api import RunResult

D = TypeVar("D", bound="DataclassInstance")
Done = str | tuple[str, int]  # what a command prints, or that and the exit code
Registry = dict[str, EvalEntry]


class _Parser(argparse.ArgumentParser):
    """argparse whose usage errors are one-line InputErrors (exit 2) instead of usage dumps."""

    def error(self, message: str):  # type: ignore[override]
        raise InputError(f"{message} (see '{self.prog} --help')")


def _positive_int(text: str) -> int:
    if not text.strip().isdigit() or int(text) <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got '{text}'")
    return int(text)


POS, FLOAT, INT = {"type": _positive_int}, {"type": float}, {"type": int}
MANY, FLAG = {"action": "append", "default": []}, {"action": "store_true"}
DTYPES = {"default": "float32", "choices": ["float32", "float16", "bfloat16"]}


def _options(parser: argparse._ActionsContainer, title: str | None, *specs: tuple) -> None:
    """Add ("--flag[=METAVAR]", help, argparse keyword dicts..., default if not a dict) to a new group
    ``title``, else to ``parser`` (a parser or a group) itself."""
    group = parser.add_argument_group(title) if title else parser
    for flag, text, *extra in specs:
        flag, _, metavar = flag.partition("=")
        kwargs = {k: v for e in extra if isinstance(e, dict) for k, v in e.items()}
        if extra and not isinstance(extra[-1], dict):
            kwargs["default"] = extra[-1]
        group.add_argument(flag, help=text, **({"metavar": metavar} if metavar else {}), **kwargs)


def _source_args(parser, hook_help: str) -> None:
    _options(
        parser, "activation source (one of; models read --text-file or --dataset)",
        ("--activations=FILE", "activation file (safetensors: activations [N, d_in])"),
        ("--model=NAME", "TransformerLens model name (needs the network)"), ("--hook=HOOK", hook_help),
        ("--hf-model=PATH_OR_NAME", "transformers model folder or name; all-MiniLM-L6-v2 is packaged"),
        ("--hf-module=MODULE", "module whose output is read, e.g. encoder.layer.3"),
        ("--n-tokens=N", "tokens to read (model default 100000; file default all)", POS), ("--skip-tokens=N", "skip the source's first N tokens: evaluate a held-out span (0)", INT, 0),
        ("--dataset=HF_NAME", "HF dataset with a 'text' column (needs the network)"),
        ("--text-file=PATH", "local UTF-8 text; blank lines separate documents"),
        ("--context-size=C", "tokens per document (128)", POS, 128),
    )  # fmt: skip


def _run_args(run: argparse.ArgumentParser, registry: Registry) -> None:
    """The options of ``run`` (``dynamics`` takes the same); each mode kind and each registered eval adds
    its own."""
    modes = _lib("modes")
    kinds = modes.KINDS.values()
    requestable = "; ".join(f"{k.syntax}: {k.help}" for k in kinds if k.requestable)
    own_lambda = "/".join(k.syntax for k in kinds if k.calibrate is not None)
    stepped = "/".join(k.syntax for k in kinds if k.requestable and k.step_axis)
    _options(
        run, "SAE selection (repeatable, mixable; none: the embedded offline default)",
        ("--eval=NAME", "eval name (repeatable)", {"dest": "evals", "action": "append", "required": True}),
        ("--sae-release=R", "SAE-Lens release (with --sae-id)", MANY), ("--sae-id=ID", "SAE id", MANY),
        ("--sae-regex=R", "regex over releases (with --sae-block-regex)", MANY),
        ("--sae-block-regex=B", "regex over SAE ids", MANY),
        ("--sae-path=PATH", "saved SAE-Lens folder, or dictionary_learning ae.pt", MANY),
        ("--sae-name=NAME", "name for the --sae-path of the same position", MANY),
    )  # fmt: skip
    _source_args(run, "hook name (default: the SAE's metadata.hook_name)")
    common = run.add_argument_group("common, inference modes (on each SAE's own decoder), executor")
    _options(
        common, None,
        ("--output-dir=DIR", "results root (eval_results)", "eval_results"),
        ("--device", "cuda when available, else cpu"), ("--dtype", "SAE dtype", DTYPES),
        ("--batch-size=B", "tokens per chunk (4096)", POS, 4096), ("--seed", "(42)", INT, 42),
        ("--force-rerun", "recompute results that already exist", {"action": "store_true"}),
        ("--report", "then write OUTPUT_DIR/report.html (saebench report; replaces its own earlier page)",
         FLAG),
        ("--inference=MODE", f"{requestable}; repeatable (default amortized)", {"action": "append"}),
        ("--l1-coefficient=X", "λ of ½‖x − decode(z)‖² + λ‖z‖₁ (default: calibrated per SAE)", FLOAT),
        ("--objective", "the problem semi:T and non_amortized solve: l1 (the paper's), l1_decoder_norm "
         "(λ Σ‖d_j‖ z_j), k_sparse (at most k actives, no λ), auto (default; the SAE's own: TopK → "
         "k_sparse; standard, gated, JumpReLU → l1_decoder_norm; others l1; l1 under --protocol paper)",
         {"choices": list(OBJECTIVE_CHOICES)}),
    )  # fmt: skip
    for kind in kinds:  # each kind's own settings
        for option in kind.options:
            option.add_to(common, modes.option_default(kind, option))
    _options(
        common, None,
        ("--calibration-tokens=N", "tokens used to calibrate λ (4096)", POS, 4096), ("--allow-many-steps",
         f"run {stepped} above T = {modes.MAX_STEPS} (the paper's relief comes by 5-50 steps)", FLAG),
        ("--lambda-calibration", f"shared (one λ per SAE) or per_mode (each {own_lambda}'s own)",
         {"choices": list(modes.LAMBDA_CALIBRATIONS)}),
        ("--executor", "sequential, or ray (a Ray task per SAE x eval)", {"choices": ["sequential", "ray"]},
         "sequential"),
        ("--ray-address=ADDR", "Ray cluster, e.g. ray://head:10001 or auto (default: RAY_ADDRESS)"),
        ("--gpus-per-task=G", "GPUs per Ray task (0)", FLOAT, 0.0),
        ("--cpus-per-task=C", "CPUs per Ray task (1)", FLOAT, 1.0),
    )  # fmt: skip
    group = run.add_argument_group("eval options (declared by the evals)")
    for option, evals in eval_options(registry).values():
        option.add_to(group, evals)


def build_parser(registry: Registry | None = None) -> argparse.ArgumentParser:
    if registry is None:
        registry = discover_evals()
    parser = _Parser(prog="saebench", description=(__doc__ or "saebench").splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    add = commands.add_parser
    add("list", help="list every registered eval")
    _run_args(add("run", help="run evals on SAEs, write their results"), registry)
    _run_args(add("dynamics", help="amortization_gap over ordered checkpoints"), registry)
    acts = add("activations", help="write an activation file from a model")
    _options(acts, None, ("--out=FILE", "activation file to write", {"required": True}), ("--device", "cuda when available"),
             ("--dtype", "stored dtype", DTYPES), ("--no-concepts", "omit the first-letter concept labels", FLAG))  # fmt: skip
    _source_args(acts, "hook name (required with --model)")
    _options(
        add("synth", help="write the synthetic benchmark / its reference SAEs"), None,
        ("--out=FILE", "activation file to write (truth sidecar beside it)"),
        ("--reference-saes=DIR", "write the reference SAEs (SAE-Lens folders) here"), ("--synthetic-model=PATH", "SAE-Lens SyntheticModelConfig (.json/.yaml) or saved SyntheticModel folder: its features, firing and hierarchy replace --d-in/--n-features/--p-max/--n-hierarchies"),
        ("--n-tokens", "(50000)", POS, 50_000), ("--d-in", "(128)", POS, 128),
        ("--n-features", "(256)", POS, 256), ("--n-hierarchies", "(4)", INT, 4), ("--n-composites", "(2)", INT, 2),
        ("--seed", "(0)", INT, 0), ("--start-token=N", "write tokens [N, N + n-tokens) of the world: held-out spans (0)", INT, 0), ("--noise", "(0.02)", FLOAT, 0.02), ("--p-max", "firing probability of the most frequent feature (0.04)", FLOAT, 0.04),
    )  # fmt: skip
    _options(
        add("train", help="train a TopK, BatchTopK or standard SAE-Lens SAE on an activation file"), None,
        ("--activations=FILE", "activation file", {"required": True}),
        ("--architecture", "SAE-Lens architecture (batchtopk saves as JumpReLU)", {"required": True, "choices": ["topk", "batchtopk", "standard"]}),
        ("--d-sae=M", "latents", POS, {"required": True}), ("--k", "actives per token (required for topk)", POS),
        ("--l1-coefficient=X", "L1 penalty of standard (5.0)", FLOAT, 5.0), ("--lr", "Adam learning rate (1e-3)", FLOAT, 1e-3),
        ("--n-tokens=N", "training tokens (re-reads the file)", POS, {"required": True}),
        ("--out=DIR", "SAE-Lens folder to write, with training_log.csv", {"required": True}),
        ("--batch-size", "tokens per step (1024)", POS, 1024), ("--seed", "(0)", INT, 0), ("--device", "(cuda when available, else cpu)"),
    )  # fmt: skip
    compare = add("compare", help="result files → summary.csv / .md and plots")
    compare.add_argument("results_dir", metavar="RESULTS_DIR", help="an --output-dir of 'run'")
    _options(compare, None, ("--out=DIR", "where to write (RESULTS_DIR/summary)"))
    report = add("report", help="result files → one self-contained HTML page")
    report.add_argument("results_dir", metavar="RESULTS_DIR", help="an --output-dir of 'run'")
    _options(report, None, ("--out=FILE", f"the page to write (RESULTS_DIR/{'report.html'})"),
             ("--baseline=FILE", "a regress baseline: its table on the page"))  # fmt: skip
    regress = add("regress", help="check results against a baseline (exit 1: worse)")
    _options(
        regress, None, ("--results=DIR", "an --output-dir of 'run'", {"required": True}),
        ("--rtol", "relative tolerance (0.05)", FLOAT, 0.05), ("--atol", "absolute tolerance (0.01)", FLOAT, 0.01),
        ("--metric=KEY", "check only these metrics (repeatable)", {"action": "append"}), ("--require-all",
         "fail (exit 1) when a baseline metric, mode or SAE is missing", FLAG),
    )  # fmt: skip
    _options(regress.add_mutually_exclusive_group(required=True), None, ("--baseline=FILE", "baseline "
             "JSON to compare with"), ("--write-baseline=FILE", "write the results as a baseline"))  # fmt: skip
    loca = add("train-loca", help="LocA-SAE from a pretrained SAE, fine-tuned")
    _source_args(loca, "hook name (default: the SAE's metadata.hook_name)")
    _options(
        loca, "pretrained SAE (--sae-path, or --sae-release and --sae-id), LocA-SAE",
        ("--sae-path=PATH", "SAE-Lens folder or ae.pt"), ("--sae-release=R", "SAE-Lens release"),
        ("--sae-id=ID", "SAE id"), ("--groups=G", "groups (8)", POS, 8), ("--lr", "Adam lr (1e-4)", FLOAT, 1e-4),
        ("--group-k=K1,K2,...", "TopK budget per group, from group 0 on", "6,5,4,3,3,2,2,1"),
        ("--group-order", "group 0 = highest AVar (desc; the paper's)", {"choices": ["avar_desc", "avar_asc"]}, "avar_desc"),
        ("--budget-scaling", "budgets as given (none) or scaled to the k", {"choices": ["none", "match_k"]}, "none"),
        ("--grouping-tokens=N", "tokens measuring angular variance (100000)", POS, 100_000),
        ("--batch-size", "(1024)", POS, 1024), ("--seed", "(0)", INT, 0), ("--device", "cuda when available"),
        ("--checkpoint-every=N", "tokens between checkpoints (100000)", POS, 100_000),
        ("--aux-loss-coefficient=X", "SAE-Lens TopK auxiliary loss (1; 0: off)", FLOAT, 1.0),
        ("--dead-after-tokens=N", "silent this long = dead, for the aux loss (100000)", POS, 100_000),
        ("--out=DIR", "SAE-Lens folder to write", {"required": True}),
    )  # fmt: skip
    names = _lib("reproduce")
    repro = add(
        "reproduce", help="one of the paper's results end to end, the paper's numbers beside ours"
    )
    repro.add_argument("target", metavar="TARGET", help=f"one of: {', '.join(names.TARGET_NAMES)}")
    _options(
        repro, None,
        ("--scale", "paper (the paper's sizes; a GPU box) or smoke (the same chain, tiny sizes)", "paper"),
        ("--out=DIR", "reproduction folder: steps resume from its reproduce.json (reproduction/SCALE)"),
        ("--dry-run", "print the steps (saebench commands) and what would happen to each; write nothing", FLAG),
        ("--device", "cuda when available, else cpu"),
        ("--activations=FILE", "published-SAE targets: evaluate on this activation file, not the SAE's model"),
    )  # fmt: skip
    _options(
        repro, "where the paper is silent (default: its authors' code's value; recorded in the output)",
        ("--model=NAME", "TransformerLens model of the trained targets (pythia-160m-deduped)"),
        ("--layer=L", "residual stream after block L: blocks.L.hook_resid_post (7)", INT),
        ("--dataset=HF_NAME", "text (monology/pile-uncopyrighted: the authors' and the SAEBench SAEs' training text)"),
        ("--text-file=PATH", "local UTF-8 text instead of --dataset"),
        ("--activation-tokens=N", "training activations to store (10000000)", POS),
        ("--train-tokens=N", "SAE training tokens (102400000)", POS),
        ("--loca-tokens=N", "LocA fine-tuning tokens (102400000)", POS),
        ("--eval-tokens=N", "evaluation tokens, held out for trained SAEs (50000)", POS),
        ("--d-sae=M", "latents of the trained SAEs (16384)", POS), ("--k", "TopK / BatchTopK k (20)", POS),
    )  # fmt: skip
    for name in (
        "activations",
        "synth",
        "train",
        "train-loca",
        "compare",
        "report",
        "regress",
        "dynamics",
    ):  # writers
        _options(commands.choices[name], None, ("--overwrite", "replace an existing target", {"action": "store_true"}))  # fmt: skip
    return parser


def _lib(module: str) -> ModuleType:
    """A library module, imported when a command needs it (``saebench list`` stays fast)."""
    return importlib.import_module(f"sae_bench_amortization.{module}")


def _fields(args: argparse.Namespace, cls: type[D], **values: object) -> D:
    """``cls`` (a dataclass) from the parsed options named like its fields."""
    names = {f.name for f in dataclasses.fields(cls)} - set(values)
    return cls(**{name: getattr(args, name) for name in names if hasattr(args, name)}, **values)


def _source(args: argparse.Namespace) -> object:
    text = _lib("activations.text").TextSettings(args.dataset, args.text_file, args.context_size)
    return _fields(args, _lib("sources.selection").SourceSettings, text=text)


def _device(args: argparse.Namespace) -> str:  # --device, else cuda when available
    return _lib("api").check_device(args.device) if args.device else _lib("api").default_device()


def cmd_list(args: argparse.Namespace, registry: Registry) -> Done:
    width = max(len(name) for name in registry)
    return "\n".join(f"{name:<{width}}  {entry.description}" for name, entry in registry.items())


def cmd_run(args: argparse.Namespace, registry: Registry) -> RunResult:
    modes, ray = _lib("modes"), _lib("runner.executors").RayOptions
    ray_options = ray.for_executor(
        args.executor, args.ray_address, args.gpus_per_task, args.cpus_per_task, args.device
    )
    declared = eval_options(registry).values()
    options = {option.dest: getattr(args, option.dest) for option, _ in declared}
    inference = modes.inference_settings(
        vars(args), modes=modes.parse_modes(args.inference), modes_given=bool(args.inference),
        objective=modes.run_objective(args.objective, options.get("protocol")),
    )  # fmt: skip
    page = _lib("reports.html_page") if args.report else None
    if page is not None:  # checked before anything runs
        page.check_own_page(Path(args.output_dir) / page.REPORT_NAME)
    result = _lib("api").run(args.evals, selection=_fields(args, _lib("sources.selection").SAESelection),
                             source=_source(args), inference=inference, output_dir=args.output_dir,
                             device=args.device, dtype=args.dtype, batch_size=args.batch_size, seed=args.seed,
                             force_rerun=args.force_rerun, eval_options=options, executor=args.executor,
                             ray=ray_options)  # fmt: skip
    print(_lib("reports.tables").format_summary(result.rows))
    if page is not None and any(outcome.path is not None for _, outcome in result.rows):
        done = page.write_report(args.output_dir, overwrite=True, registry=registry)
        print(f"wrote {done.path} ({done.size / 1e6:.1f} MB in {done.seconds:.1f} s)")
    if result.bad_input:  # the other tasks completed; bad input still exits 2 with one line
        more = f" (and {len(result.bad_input) - 1} more tasks)" if len(result.bad_input) > 1 else ""
        raise InputError(result.bad_input[0] + more)
    return result


def cmd_dynamics(args: argparse.Namespace, registry: Registry) -> Done:
    dynamics = _lib("reports.dynamics")
    dynamics.check_checkpoints(args.evals, args.sae_path or args.sae_release or args.sae_regex)
    dynamics.check_targets(Path(args.output_dir), args.overwrite)
    specs = _fields(args, _lib("sources.selection").SAESelection).specs()
    dynamics.check_widths(dynamics.checkpoint_cfgs(specs))
    names = list(dict.fromkeys(outcome.sae_name for _, outcome in cmd_run(args, registry).rows))
    written = dynamics.write_dynamics(Path(args.output_dir), names)
    return "wrote {} and {}".format(*written)


def cmd_activations(args: argparse.Namespace, registry: Registry) -> Done:
    export = _lib("sources.selection").export_activations
    n_tokens, d_in = export(_source(args), Path(args.out), args.dtype, _device(args), overwrite=args.overwrite, concepts=not args.no_concepts)  # fmt: skip
    return f"wrote {n_tokens} tokens x {d_in} to {args.out}"


def cmd_synth(args: argparse.Namespace, registry: Registry) -> Done:
    config = _fields(args, _lib("synthetic").SyntheticConfig)
    return _lib("synthetic").write_benchmark(
        config, args.n_tokens, args.out, args.reference_saes, overwrite=args.overwrite,
        synthetic_model=args.synthetic_model, start_token=args.start_token)  # fmt: skip


def cmd_train(args: argparse.Namespace, registry: Registry) -> Done:
    options = {name: getattr(args, name) for name in ("k", "l1_coefficient", "batch_size", "lr")}
    done = _lib("synthetic.training").train_sae_file(
        args.activations, args.architecture, args.d_sae, args.n_tokens, Path(args.out),
        overwrite=args.overwrite, seed=args.seed, device=_device(args), **options,
    )  # fmt: skip
    return f"wrote {args.architecture} SAE ({args.n_tokens} tokens) to {args.out}: {done.summary()}"


def cmd_train_loca(args: argparse.Namespace, registry: Registry) -> Done:
    training = _lib("loca.training")
    config = _fields(args, training.LocATrainingConfig, n_tokens=args.n_tokens or 1_000_000)
    cfg = training.train_loca_from_sae(
        args.sae_path, args.sae_release, args.sae_id, _source(args), Path(args.out), n_groups=args.groups,
        group_k=args.group_k, grouping_tokens=args.grouping_tokens, config=config, device=_device(args),
        group_order=args.group_order, budget_scaling=args.budget_scaling, overwrite=args.overwrite).cfg  # fmt: skip
    return f"wrote LocA-SAE (d_sae {cfg.d_sae}, budgets {cfg.group_k}) to {args.out}"


def cmd_reproduce(args: argparse.Namespace, registry: Registry) -> Done:
    given = {name: getattr(args, name) for name in ("model", "layer", "dataset", "text_file", "activation_tokens",
             "train_tokens", "loca_tokens", "eval_tokens", "d_sae", "k", "activations", "device")}  # fmt: skip
    if args.device and not args.dry_run:
        _device(args)  # checked before anything runs (a dry run only prints: any machine)
    done = _lib("reproduce.run").reproduce(
        args.target, args.scale, args.out, dry_run=args.dry_run, **given
    )
    if args.dry_run:
        return "\n".join(f"[{step.name}] {action}: {step.command()}" for step, action in done)
    notes = "".join(f"\n- {note}" for note in done.notes)
    timing = ", ".join(f"{name} {seconds:.1f} s" for name, seconds in done.seconds.items())
    return f"{done.table}\n{'not comparable:' + notes if notes else ''}\nsteps: {timing}\nwrote {done.path}"


def cmd_compare(args: argparse.Namespace, registry: Registry) -> Done:
    frame, written = _lib("reports.summary").write_summary(args.results_dir, args.out, registry, args.overwrite)  # fmt: skip
    return f"{len(frame)} rows ({frame['sae'].nunique()} SAEs, {frame['eval'].nunique()} evals); wrote {', '.join(map(str, written))}"  # fmt: skip


def cmd_report(args: argparse.Namespace, registry: Registry) -> Done:
    done = _lib("reports.html_page").write_report(args.results_dir, args.out, args.baseline, args.overwrite, registry)  # fmt: skip
    skipped = f", {len(done.scan.skipped)} skipped" if done.scan.skipped else ""
    return f"wrote {done.path} ({len(done.scan.files)} result files{skipped}; {done.size / 1e6:.1f} MB in {done.seconds:.1f} s)"  # fmt: skip


def cmd_regress(args: argparse.Namespace, registry: Registry) -> Done:
    regress = _lib("reports.regress")
    if args.write_baseline is not None:
        return regress.write_baseline(args.results, args.write_baseline, registry, args.overwrite)
    report, failed = regress.regress(
        args.results, args.baseline, rtol=args.rtol, atol=args.atol, metrics=args.metric, registry=registry,
        require_all=args.require_all)  # fmt: skip
    return report, 1 if failed else 0


COMMANDS: dict[str, Callable[[argparse.Namespace, Registry], Done]] = {
    "list": cmd_list,
    "run": lambda args, registry: ("", 1 if cmd_run(args, registry).failed else 0),
    "dynamics": cmd_dynamics,
    "activations": cmd_activations,
    "synth": cmd_synth,
    "train": cmd_train,
    "train-loca": cmd_train_loca,
    "reproduce": cmd_reproduce,
    "compare": cmd_compare,
    "report": cmd_report,
    "regress": cmd_regress,
}


def main(argv: Sequence[str] | None = None) -> int:
    _lib("runner.memory").bound_the_heap()
    try:
        registry = discover_evals()
        args = build_parser(registry).parse_args(argv)
        done = COMMANDS[args.command](args, registry)  # what to print, and the exit code
        text, code = done if isinstance(done, tuple) else (done, 0)
        if text:
            print(text)
        return code
    except InputError as exc:
        message = str(exc).replace("\r", "\\r").replace("\n", "\\n")  # one line, whatever it held
        print(f"saebench: error: {message}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `saebench list | head`: the reader left; nothing to report
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - silence the flush at exit
        return 0
    except KeyboardInterrupt:
        print("saebench: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - last line of defence: one line, exit 1
        if os.environ.get("SAEBENCH_DEBUG"):
            raise
        why = f"{type(exc).__name__}: {exc}"
        print(
            f"saebench: internal error: {why} (set SAEBENCH_DEBUG=1 for the traceback)",
            file=sys.stderr,
        )
        return 1


if __name__ == "__main__":
    sys.exit(main())
