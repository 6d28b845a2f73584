"""``saebench``: a thin shell over the library — parse, look up the registry, run, print a short table.

Exit codes: 0 success; 2 bad input (one line on stderr, no traceback); 1 internal error.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from sae_bench_amortization.errors import InputError


class _Parser(argparse.ArgumentParser):
    """argparse whose usage errors are one-line InputErrors (exit 2) instead of usage dumps."""

    def error(self, message: str):  # type: ignore[override]
        raise InputError(f"{message} (see '{self.prog} --help')")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got '{text}'") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def _default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _add_text_args(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("text read by a model (--model / --hf-model)")
    group.add_argument(
        "--dataset", metavar="HF_NAME", help="HF dataset with a 'text' column (needs the network)"
    )
    group.add_argument(
        "--text-file", metavar="PATH", help="local UTF-8 text; blank lines separate documents"
    )
    group.add_argument(
        "--context-size",
        type=_positive_int,
        default=128,
        metavar="C",
        help="tokens per document (128)",
    )


def _add_model_args(parser: argparse.ArgumentParser, hook_help: str) -> None:
    group = parser.add_argument_group("activation source (one of)")
    group.add_argument(
        "--activations", metavar="FILE", help="activation file (safetensors: activations [N, d_in])"
    )
    group.add_argument(
        "--model", metavar="NAME", help="TransformerLens model name (needs the network)"
    )
    group.add_argument("--hook", metavar="HOOK", help=hook_help)
    group.add_argument(
        "--hf-model",
        metavar="PATH_OR_NAME",
        help="transformers model folder or name; 'all-MiniLM-L6-v2' is the packaged offline model",
    )
    group.add_argument(
        "--hf-module",
        metavar="MODULE_PATH",
        help="module whose output is read, e.g. encoder.layer.3",
    )
    group.add_argument(
        "--n-tokens",
        type=_positive_int,
        metavar="N",
        help="tokens to read (model default 100000; file default all)",
    )


def _add_run_args(run: argparse.ArgumentParser) -> None:
    """The options of ``run`` (``dynamics`` takes the same: its SAEs are the checkpoints, in order)."""
    run.add_argument(
        "--eval",
        dest="evals",
        action="append",
        required=True,
        metavar="NAME",
        help="eval name (repeatable)",
    )
    saes = run.add_argument_group(
        "SAE selection (repeatable, mixable; none: the embedded offline default)"
    )
    saes.add_argument(
        "--sae-release",
        action="append",
        default=[],
        metavar="R",
        help="SAE-Lens release (pair with --sae-id)",
    )
    saes.add_argument(
        "--sae-id", action="append", default=[], metavar="ID", help="SAE id in the release"
    )
    saes.add_argument(
        "--sae-regex",
        action="append",
        default=[],
        metavar="R",
        help="regex over SAE-Lens release names (pair with --sae-block-regex)",
    )
    saes.add_argument(
        "--sae-block-regex", action="append", default=[], metavar="B", help="regex over SAE ids"
    )
    saes.add_argument(
        "--sae-path",
        action="append",
        default=[],
        metavar="PATH",
        help="saved SAE-Lens folder, or dictionary_learning ae.pt with config.json beside it",
    )
    saes.add_argument(
        "--sae-name",
        action="append",
        default=[],
        metavar="NAME",
        help="name for the --sae-path of the same position (default: folder or file stem)",
    )
    _add_model_args(run, "hook name (default: the SAE's metadata.hook_name)")
    _add_text_args(run)
    common = run.add_argument_group("common")
    common.add_argument(
        "--output-dir", default="eval_results", metavar="DIR", help="results root (eval_results)"
    )
    common.add_argument("--device", default=None, help="cuda when available, else cpu")
    common.add_argument("--dtype", default="float32", choices=["float32", "float16", "bfloat16"])
    common.add_argument(
        "--batch-size",
        type=_positive_int,
        default=4096,
        metavar="B",
        help="tokens per chunk (4096)",
    )
    common.add_argument("--seed", type=int, default=42)
    common.add_argument(
        "--force-rerun", action="store_true", help="recompute results that already exist"
    )
    modes = run.add_argument_group("inference modes (on each SAE's own decoder)")
    modes.add_argument(
        "--inference",
        action="append",
        metavar="MODE",
        help="amortized (the encoder; default), semi:T (T FISTA steps from the encoder's codes), "
        "non_amortized (sparse coding to tolerance); repeatable: one result file per mode",
    )
    modes.add_argument(
        "--l1-coefficient",
        type=float,
        metavar="X",
        help="λ of ½‖x − decode(z)‖² + λ‖z‖₁ (default: calibrated per SAE so non-amortized L0 = amortized L0)",
    )
    modes.add_argument(
        "--solver", choices=["fista", "ista"], default="fista", help="steps of semi:T (fista)"
    )
    modes.add_argument(
        "--calibration-tokens",
        type=_positive_int,
        default=4096,
        metavar="N",
        help="tokens used to calibrate λ (4096)",
    )
    modes.add_argument(
        "--loca-path",
        action="append",
        default=[],
        metavar="PATH",
        help="amortization_gap: a LocA-SAE folder run as mode 'loca' beside the SAE (repeatable: one per "
        "SAE, in order); an SAE that is itself a LocA-SAE gets its encoder's row named 'loca'",
    )
    sweep = run.add_argument_group("executor (where the SAE x eval tasks run)")
    sweep.add_argument(
        "--executor",
        choices=["sequential", "ray"],
        default="sequential",
        help="sequential (this process; default) or ray (one Ray task per SAE x eval; the [ray] extra)",
    )
    sweep.add_argument(
        "--ray-address",
        metavar="ADDR",
        help="Ray cluster to join, e.g. ray://head:10001 or auto (default: RAY_ADDRESS, else a local Ray)",
    )
    sweep.add_argument(
        "--gpus-per-task", type=float, default=0.0, metavar="G", help="GPUs per Ray task (0)"
    )
    sweep.add_argument(
        "--cpus-per-task", type=float, default=1.0, metavar="C", help="CPUs per Ray task (1)"
    )
    common.add_argument(
        "--absorption-definition",
        choices=["auto", "concepts", "saebench_first_letter"],
        default="auto",
        help="absorption_rate: concept labels of the activations, or SAEBench's first-letter machinery on a "
        "TransformerLens model at blocks.L.hook_resid_post (auto: SAEBench's there, concepts elsewhere)",
    )
    common.add_argument(
        "--dense-threshold",
        type=float,
        default=0.1,
        metavar="F",
        help="dead_dense: a latent firing on more than this share of tokens is dense (0.1)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="saebench", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    commands.add_parser("list", help="list every registered eval")

    _add_run_args(
        commands.add_parser("run", help="run evals on SAEs and write SAEBench result files")
    )
    _add_run_args(
        commands.add_parser(
            "dynamics",
            help="amortization_gap over an ordered list of checkpoints: one CSV row per checkpoint x mode, and plots",
        )
    )

    acts = commands.add_parser(
        "activations", help="write an activation file from a model reading text"
    )
    acts.add_argument(
        "--out", required=True, metavar="FILE", help="activation file to write (safetensors)"
    )
    _add_model_args(acts, "hook name (required with --model)")
    _add_text_args(acts)
    acts.add_argument("--device", default=None)
    acts.add_argument(
        "--dtype",
        default="float32",
        choices=["float32", "float16", "bfloat16"],
        help="stored dtype",
    )

    synth = commands.add_parser(
        "synth", help="write the synthetic ground-truth benchmark and/or its reference SAEs"
    )
    synth.add_argument(
        "--out", metavar="FILE", help="activation file to write (truth sidecar beside it)"
    )
    synth.add_argument(
        "--reference-saes", metavar="DIR", help="write the reference SAEs (SAE-Lens folders) here"
    )
    synth.add_argument("--n-tokens", type=_positive_int, default=50_000, metavar="N")
    synth.add_argument("--d-in", type=_positive_int, default=128, metavar="D")
    synth.add_argument("--n-features", type=_positive_int, default=256, metavar="F")
    synth.add_argument("--n-hierarchies", type=int, default=4, metavar="H")
    synth.add_argument("--n-composites", type=int, default=2, metavar="C")
    synth.add_argument(
        "--p-max", type=float, default=0.04, help="firing probability of the most frequent feature"
    )
    synth.add_argument("--noise", type=float, default=0.02)
    synth.add_argument("--seed", type=int, default=0)

    train = commands.add_parser(
        "train", help="train a TopK or standard SAE-Lens SAE on an activation file"
    )
    train.add_argument("--activations", required=True, metavar="FILE")
    train.add_argument("--architecture", required=True, choices=["topk", "standard"])
    train.add_argument("--d-sae", required=True, type=_positive_int, metavar="M")
    train.add_argument(
        "--k", type=_positive_int, metavar="K", help="active latents per token (topk)"
    )
    train.add_argument(
        "--l1-coefficient", type=float, default=5.0, metavar="X", help="L1 penalty (standard)"
    )
    train.add_argument(
        "--n-tokens",
        required=True,
        type=_positive_int,
        metavar="N",
        help="training tokens (re-reads the file as needed)",
    )
    train.add_argument("--out", required=True, metavar="DIR", help="SAE-Lens folder to write")
    train.add_argument("--lr", type=float, default=1e-3)
    train.add_argument("--batch-size", type=_positive_int, default=1024)
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--device", default=None)

    compare = commands.add_parser(
        "compare",
        help="read every result file under a folder into summary.csv / summary.md and PNG plots",
    )
    compare.add_argument(
        "results_dir", metavar="RESULTS_DIR", help="an --output-dir of 'saebench run'"
    )
    compare.add_argument(
        "--out", metavar="DIR", help="where to write (default: RESULTS_DIR/summary)"
    )

    regress = commands.add_parser(
        "regress",
        help="compare results with a baseline: exit 1 when a metric got worse beyond tolerance",
    )
    regress.add_argument(
        "--results", required=True, metavar="DIR", help="an --output-dir of 'saebench run'"
    )
    target = regress.add_mutually_exclusive_group(required=True)
    target.add_argument("--baseline", metavar="FILE", help="baseline JSON to compare with")
    target.add_argument(
        "--write-baseline", metavar="FILE", help="write the results as a baseline JSON"
    )
    regress.add_argument("--rtol", type=float, default=0.05, help="relative tolerance (0.05)")
    regress.add_argument("--atol", type=float, default=0.01, help="absolute tolerance (0.01)")
    regress.add_argument(
        "--metric",
        action="append",
        metavar="KEY",
        help="check only these metrics (repeatable; default: every metric with a worse direction)",
    )

    loca = commands.add_parser(
        "train-loca",
        help="build a LocA-SAE from a pretrained SAE (angular-variance groups) and fine-tune it",
    )
    base = loca.add_argument_group("pretrained SAE (one of)")
    base.add_argument(
        "--sae-path", metavar="PATH", help="saved SAE-Lens folder or dictionary_learning ae.pt"
    )
    base.add_argument("--sae-release", metavar="R", help="SAE-Lens release (with --sae-id)")
    base.add_argument("--sae-id", metavar="ID", help="SAE id in the release")
    _add_model_args(loca, "hook name (default: the SAE's metadata.hook_name)")
    _add_text_args(loca)
    options = loca.add_argument_group("LocA-SAE")
    options.add_argument("--groups", type=_positive_int, default=8, metavar="G", help="groups (8)")
    options.add_argument(
        "--group-k",
        default="6,5,4,3,3,2,2,1",
        metavar="K1,K2,...",
        help="TopK budget per group, most monosemantic first (6,5,4,3,3,2,2,1); scaled to the global "
        "SAE's k keeping proportions when the sums differ",
    )
    options.add_argument(
        "--grouping-tokens",
        type=_positive_int,
        default=100_000,
        metavar="N",
        help="tokens used to measure angular variance (100000, or fewer if the source has fewer)",
    )
    options.add_argument("--lr", type=float, default=1e-4, help="Adam learning rate (1e-4)")
    options.add_argument("--batch-size", type=_positive_int, default=1024)
    options.add_argument(
        "--checkpoint-every",
        type=_positive_int,
        default=100_000,
        metavar="N",
        help="tokens between checkpoints (100000); a rerun resumes from the last one",
    )
    options.add_argument(
        "--aux-loss-coefficient",
        type=float,
        default=1.0,
        metavar="X",
        help="SAE-Lens TopK auxiliary loss on dead latents (1, SAE-Lens's default; 0 turns it off)",
    )
    options.add_argument(
        "--dead-after-tokens",
        type=_positive_int,
        default=100_000,
        metavar="N",
        help="a latent silent this many tokens is dead for the auxiliary loss (100000)",
    )
    options.add_argument("--seed", type=int, default=0)
    options.add_argument("--device", default=None)
    options.add_argument("--out", required=True, metavar="DIR", help="SAE-Lens folder to write")
    return parser


# ----------------------------------------------------------------------------------------- sources


def _text_factory(args: argparse.Namespace, default: str):
    from sae_bench_amortization.activations import text

    if args.text_file and args.dataset:
        raise InputError("give either --text-file or --dataset, not both")
    if args.text_file:
        path = args.text_file
        if not Path(path).is_file():
            raise InputError(f"text file not found: {path}")
        return lambda: text.iter_text_file(path)
    name = args.dataset or default
    if name == "fortunes":
        return lambda: text.iter_fortunes(seed=0)
    return lambda: text.iter_hf_dataset(name)


def _source_flags(args: argparse.Namespace) -> list[str]:
    return [
        flag
        for flag, value in (
            ("--activations", args.activations),
            ("--model", args.model),
            ("--hf-model", args.hf_model),
        )
        if value
    ]


def build_activation_factory(args: argparse.Namespace, device: str):
    """The activation source named on the command line, or None when none was named."""
    import torch

    from sae_bench_amortization.activations.sources import (
        FileActivations,
        HFActivationFactory,
        TransformerLensActivationFactory,
    )

    flags = _source_flags(args)
    if len(flags) > 1:
        raise InputError(f"give one activation source, got {' and '.join(flags)}")
    if args.hf_module and not args.hf_model:
        raise InputError("--hf-module needs --hf-model")
    if args.activations:
        return FileActivations(args.activations, args.n_tokens)
    n_tokens = args.n_tokens or 100_000
    if args.hf_model:
        if not args.hf_module:
            raise InputError("--hf-model needs --hf-module (e.g. encoder.layer.3)")
        texts = _text_factory(args, default="fortunes")
        return HFActivationFactory(
            args.hf_model, args.hf_module, texts, n_tokens, args.context_size, device
        )
    if args.model or args.dataset or args.text_file or args.hook:
        texts = _text_factory(args, default="Skylion007/openwebtext")
        return TransformerLensActivationFactory(
            args.model, texts, n_tokens, args.hook, args.context_size, device, torch.float32
        )
    return None


def build_sae_specs(args: argparse.Namespace):
    from sae_bench_amortization import loading

    if len(args.sae_release) != len(args.sae_id):
        raise InputError(
            f"--sae-release and --sae-id come in pairs: got {len(args.sae_release)} releases and {len(args.sae_id)} ids"
        )
    if len(args.sae_regex) != len(args.sae_block_regex):
        raise InputError("--sae-regex and --sae-block-regex come in pairs")
    if len(args.sae_name) > len(args.sae_path):
        raise InputError("--sae-name names a --sae-path: give at most one per --sae-path")
    specs = [
        loading.spec_from_release(r, i) for r, i in zip(args.sae_release, args.sae_id, strict=True)
    ]
    for release_regex, block_regex in zip(args.sae_regex, args.sae_block_regex, strict=True):
        specs.extend(loading.specs_from_regex(release_regex, block_regex))
    names = args.sae_name + [None] * (len(args.sae_path) - len(args.sae_name))
    specs.extend(
        loading.spec_from_path(path, name) for path, name in zip(args.sae_path, names, strict=True)
    )
    return specs


def build_inference(args: argparse.Namespace):
    from sae_bench_amortization.inference.modes import InferenceSettings, parse_modes

    if args.l1_coefficient is not None and not 0 <= args.l1_coefficient < float("inf"):
        raise InputError(
            f"--l1-coefficient must be a non-negative finite number, got {args.l1_coefficient}"
        )
    return InferenceSettings(
        modes=parse_modes(args.inference),
        modes_given=bool(args.inference),
        l1_coefficient=args.l1_coefficient,
        method=args.solver,
        calibration_tokens=args.calibration_tokens,
    )


# ---------------------------------------------------------------------------------------- commands


def cmd_list(_args: argparse.Namespace) -> int:
    from sae_bench_amortization.registry import discover_evals

    registry = discover_evals()
    width = max(len(name) for name in registry)
    for name, entry in registry.items():
        print(f"{name:<{width}}  {entry.description}")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from sae_bench_amortization.executors import RayOptions, run_ray, run_sequential
    from sae_bench_amortization.registry import EvalRequest, discover_evals, get_eval
    from sae_bench_amortization.reporting import print_summary
    from sae_bench_amortization.results import ensure_output_dir

    registry = discover_evals()
    entries = [get_eval(name, registry) for name in dict.fromkeys(args.evals)]
    if args.executor != "ray" and (
        args.ray_address or args.gpus_per_task != 0.0 or args.cpus_per_task != 1.0
    ):
        raise InputError(
            "--ray-address, --gpus-per-task and --cpus-per-task go with --executor ray"
        )
    if not 0 < args.dense_threshold < 1:
        raise InputError(f"--dense-threshold must be in (0, 1), got {args.dense_threshold}")
    inference = build_inference(args)
    for path in args.loca_path:
        if not Path(path).exists():
            raise InputError(f"--loca-path not found: {path}")
    if args.loca_path and [entry.name for entry in entries] != ["amortization_gap"]:
        raise InputError("--loca-path is read by --eval amortization_gap (alone)")
    device = args.device or _default_device()
    specs = build_sae_specs(args)
    output_dir = ensure_output_dir(args.output_dir)
    factory = build_activation_factory(args, device)
    if not specs and factory is None:
        from sae_bench_amortization import default, loading
        from sae_bench_amortization.activations.sources import FileActivations

        bench = default.default_benchmark()
        print(
            f"no SAE given: using the offline default (synthetic ground truth, TopK SAE) from {bench.sae_path.parent}"
        )
        specs = [loading.spec_from_path(bench.sae_path, bench.sae_name)]
        factory = FileActivations(str(bench.activations), args.n_tokens)
    if not specs:
        raise InputError(
            "no SAE selected: pass --sae-release/--sae-id, --sae-regex/--sae-block-regex or --sae-path"
        )
    if factory is None:  # SAEs but no source: read each SAE's own model and hook (TransformerLens)
        from sae_bench_amortization.activations.sources import TransformerLensActivationFactory

        factory = TransformerLensActivationFactory(
            None,
            _text_factory(args, "Skylion007/openwebtext"),
            args.n_tokens or 100_000,
            None,
            args.context_size,
            device,
        )
    options = {
        "dense_threshold": args.dense_threshold,
        "absorption_definition": args.absorption_definition,
        "loca_paths": args.loca_path,
        "dataset": args.dataset,
        "text_file": args.text_file,
        "context_size": args.context_size,
    }
    request = EvalRequest(
        saes=specs,
        output_dir=output_dir,
        activations=factory,
        model_name=args.model,
        device=device,
        dtype=args.dtype,
        batch_size=args.batch_size,
        seed=args.seed,
        force_rerun=args.force_rerun,
        n_tokens=args.n_tokens,
        options=options,
        inference=inference,
    )
    bad_input: list[str] = []
    if args.executor == "ray":
        ray_options = RayOptions(
            args.ray_address, args.gpus_per_task, args.cpus_per_task, args.device
        )
        rows, bad_input = run_ray(entries, request, ray_options)
    else:
        rows = run_sequential(entries, request)
    print_summary(rows)
    if bad_input:  # the other tasks completed; bad input still exits 2 with one line
        more = f" (and {len(bad_input) - 1} more tasks)" if len(bad_input) > 1 else ""
        raise InputError(bad_input[0] + more)
    failed = [outcome for _, outcome in rows if outcome.status.startswith("failed")]
    return 1 if failed else 0


def cmd_activations(args: argparse.Namespace) -> int:
    import torch

    from sae_bench_amortization.activations.file import ActivationFileWriter
    from sae_bench_amortization.activations.models import (
        HFModelActivations,
        TransformerLensActivations,
        load_transformer_lens_model,
    )

    device = args.device or _default_device()
    flags = _source_flags(args)
    if args.activations:
        raise InputError(
            "'saebench activations' reads a model: use --model or --hf-model, not --activations"
        )
    if len(flags) != 1:
        raise InputError("give exactly one of --model or --hf-model")
    out = Path(args.out)
    if out.is_dir():
        raise InputError(f"--out is a folder, expected a file path: {out}")
    n_tokens = args.n_tokens or 100_000
    if args.hf_model:
        if not args.hf_module:
            raise InputError("--hf-model needs --hf-module (e.g. encoder.layer.3)")
        source = HFModelActivations(
            args.hf_model,
            args.hf_module,
            _text_factory(args, "fortunes"),
            n_tokens,
            args.context_size,
            device,
        )
        metadata = {"hf_model": args.hf_model, "hf_module": args.hf_module}
    else:
        if not args.hook:
            raise InputError("--model needs --hook (e.g. blocks.4.hook_resid_post)")
        model = load_transformer_lens_model(args.model, device, torch.float32)
        source = TransformerLensActivations(
            model,
            args.hook,
            _text_factory(args, "Skylion007/openwebtext"),
            n_tokens,
            args.context_size,
            model_name=args.model,
        )
        metadata = {"model_name": args.model, "hook_name": args.hook}
    with ActivationFileWriter(
        out, source.d_in, getattr(torch, args.dtype), metadata=metadata
    ) as writer:
        for batch in source.iter_batches(8192):
            writer.write(batch.acts)
    print(f"wrote {writer.n_tokens} tokens x {source.d_in} to {out}")
    return 0


def cmd_synth(args: argparse.Namespace) -> int:
    from sae_bench_amortization.synthetic import SyntheticConfig, ground_truth, write_synthetic

    if not args.out and not args.reference_saes:
        raise InputError("give --out FILE, --reference-saes DIR, or both")
    config = SyntheticConfig(
        d_in=args.d_in,
        n_features=args.n_features,
        n_hierarchies=args.n_hierarchies,
        n_composites=args.n_composites,
        p_max=args.p_max,
        noise=args.noise,
        seed=args.seed,
    )
    if args.out:
        out = Path(args.out)
        if out.is_dir():
            raise InputError(f"--out is a folder, expected a file path: {out}")
        if not out.parent.is_dir():
            raise InputError(f"output folder does not exist: {out.parent}")
        activations, sidecar = write_synthetic(out, config, args.n_tokens)
        print(
            f"wrote {args.n_tokens} tokens x {config.d_in} with {config.n_features} features to {activations}"
        )
        print(f"wrote the true dictionary and structure to {sidecar}")
    if args.reference_saes:
        from sae_bench_amortization.reference_saes import write_reference_saes
        from sae_bench_amortization.results import ensure_output_dir

        folder = ensure_output_dir(args.reference_saes)
        for path in write_reference_saes(ground_truth(config), folder):
            print(f"wrote reference SAE {path}")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from sae_bench_amortization.activations.file import ActivationFile
    from sae_bench_amortization.training import train_sae

    source = ActivationFile(args.activations)
    source.check_finite()
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise InputError(f"--out exists and is not a folder: {out}")
    if args.architecture == "topk" and args.k is None:
        raise InputError("--architecture topk needs --k")
    if not args.l1_coefficient >= 0:
        raise InputError(f"--l1-coefficient must be >= 0, got {args.l1_coefficient}")
    metadata = {
        "model_name": source.metadata.get("model_name")
        or source.metadata.get("hf_model")
        or "unknown",
        "hook_name": source.metadata.get("hook_name")
        or source.metadata.get("hf_module")
        or "unknown",
    }
    sae = train_sae(
        source,
        args.architecture,
        args.d_sae,
        args.n_tokens,
        k=args.k,
        l1_coefficient=args.l1_coefficient,
        batch_size=args.batch_size,
        lr=args.lr,
        seed=args.seed,
        metadata=metadata,
        device=args.device or _default_device(),
    )
    sae.save_inference_model(out)
    print(
        f"wrote {args.architecture} SAE (d_in {source.d_in}, d_sae {args.d_sae}) trained on {args.n_tokens} tokens to {out}"
    )
    return 0


def _group_budgets(text: str, n_groups: int) -> list[int]:
    try:
        budgets = [int(part) for part in text.split(",")]
    except ValueError:
        raise InputError(
            f"--group-k must be comma-separated positive integers, got '{text}'"
        ) from None
    if any(k < 1 for k in budgets):
        raise InputError(f"--group-k must be comma-separated positive integers, got '{text}'")
    if len(budgets) != n_groups:
        raise InputError(f"--group-k has {len(budgets)} budgets but --groups is {n_groups}")
    return budgets


def cmd_train_loca(args: argparse.Namespace) -> int:
    from sae_bench_amortization import loading
    from sae_bench_amortization.adapters.loca import LocASAE
    from sae_bench_amortization.loca import as_source
    from sae_bench_amortization.loca_training import LocATrainingConfig, checkpoints, train_loca

    budgets = _group_budgets(args.group_k, args.groups)
    config = LocATrainingConfig(
        n_tokens=args.n_tokens or 1_000_000,
        batch_size=args.batch_size,
        lr=args.lr,
        aux_loss_coefficient=args.aux_loss_coefficient,
        dead_after_tokens=args.dead_after_tokens,
        checkpoint_every=args.checkpoint_every,
        seed=args.seed,
    )
    if bool(args.sae_release) != bool(args.sae_id):
        raise InputError("--sae-release and --sae-id come together")
    if bool(args.sae_path) == bool(args.sae_release):
        raise InputError("give the pretrained SAE: --sae-path P, or --sae-release R --sae-id I")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise InputError(f"--out exists and is not a folder: {out}")
    device = args.device or _default_device()
    factory = build_activation_factory(args, device)
    if factory is None:
        raise InputError("give an activation source: --activations F, --model NAME or --hf-model M")
    spec = (
        loading.spec_from_path(args.sae_path)
        if args.sae_path
        else loading.spec_from_release(args.sae_release, args.sae_id)
    )
    resuming = bool(checkpoints(out))
    sae = spec.load(device, "float32")
    source = as_source(factory, sae)
    if resuming:
        loca = None  # train_loca reads the last checkpoint
    else:
        if args.groups > sae.cfg.d_sae:
            raise InputError(f"--groups {args.groups} exceeds the SAE's d_sae {sae.cfg.d_sae}")
        loca = LocASAE.from_sae(
            sae, source, n_groups=args.groups, group_k=budgets, n_tokens=args.grouping_tokens
        )
        report = loca.cfg.grouping
        print(
            f"grouped {sae.cfg.d_sae} latents into {args.groups} groups by angular variance "
            f"(budgets {loca.cfg.group_k}, global k {report['global_k']} from {report['global_k_source']}; "
            f"{report['n_never_fired']} never fired → last group)"
        )
    loca = train_loca(loca, source, out, config, device)
    print(
        f"wrote LocA-SAE (d_in {loca.cfg.d_in}, d_sae {loca.cfg.d_sae}, budgets {loca.cfg.group_k}) to {out}"
    )
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from sae_bench_amortization.compare import load_results, markdown_table
    from sae_bench_amortization.report_plots import (
        per_sae_and_mode,
        plot_ista_ablation,
        plot_pareto,
        plot_pathologies,
        write_png,
    )
    from sae_bench_amortization.results import ensure_output_dir, write_text_atomic

    if args.out == "":
        raise InputError("--out must name a folder")
    frame = load_results(args.results_dir)
    out = ensure_output_dir(args.out or Path(args.results_dir) / "summary")
    table = per_sae_and_mode(frame)
    figures = {  # all drawn before anything is written: a failure leaves the folder as it was
        "pathologies_by_mode.png": plot_pathologies(table),
        "ista_steps_ablation.png": plot_ista_ablation(table),
        "l0_nmse_pareto.png": plot_pareto(table),
    }
    write_text_atomic(out / "summary.csv", frame.to_csv(index=False))
    write_text_atomic(out / "summary.md", markdown_table(frame))
    written = [out / "summary.csv", out / "summary.md"]
    for name, figure in figures.items():
        if figure is None:
            (out / name).unlink(missing_ok=True)  # an old plot these results no longer make
        else:
            written.append(write_png(figure, out / name))
    n_saes, n_evals = frame["sae"].nunique(), frame["eval"].nunique()
    print(
        f"{len(frame)} rows ({n_saes} SAEs, {n_evals} evals); wrote "
        + ", ".join(str(p) for p in written)
    )
    return 0


def cmd_regress(args: argparse.Namespace) -> int:
    import json

    from sae_bench_amortization.compare import load_results
    from sae_bench_amortization.regress import (
        baseline_from_results,
        compare_with_baseline,
        format_checks,
        read_baseline,
    )
    from sae_bench_amortization.results import write_text_atomic

    if args.write_baseline == "" or args.baseline == "":
        raise InputError("--baseline / --write-baseline must name a file")
    frame = load_results(args.results)
    if args.write_baseline is not None:
        target = Path(args.write_baseline)
        if not target.parent.is_dir():
            raise InputError(f"--write-baseline folder not found: {target.parent}")
        write_text_atomic(
            target, json.dumps(baseline_from_results(frame), indent=1, sort_keys=True) + "\n"
        )
        print(f"wrote a baseline of {frame['sae'].nunique()} SAEs ({len(frame)} rows) to {target}")
        return 0
    checks = compare_with_baseline(
        frame, read_baseline(args.baseline), args.rtol, args.atol, args.metric
    )
    print(format_checks(checks))
    failed = [c for c in checks if c.status in ("worse", "changed")]
    return 1 if failed else 0


def cmd_dynamics(args: argparse.Namespace) -> int:
    from sae_bench_amortization.dynamics import write_dynamics

    if list(dict.fromkeys(args.evals)) != ["amortization_gap"]:
        raise InputError("dynamics runs --eval amortization_gap (once) over the checkpoints")
    if not (args.sae_path or args.sae_release or args.sae_regex):
        raise InputError(
            "dynamics needs checkpoints: repeat --sae-path in order, or --sae-regex/--sae-block-regex"
        )
    cmd_run(args)
    csv_path, png_path = write_dynamics(
        Path(args.output_dir), [spec.sae_name for spec in build_sae_specs(args)]
    )
    print(f"wrote {csv_path} and {png_path}")
    return 0


COMMANDS = {
    "dynamics": cmd_dynamics,
    "list": cmd_list,
    "run": cmd_run,
    "activations": cmd_activations,
    "synth": cmd_synth,
    "train": cmd_train,
    "train-loca": cmd_train_loca,
    "compare": cmd_compare,
    "regress": cmd_regress,
}


def bound_the_heap(threshold: int = 1 << 20) -> None:
    """Serve allocations ≥ 1 MiB with mmap, returned to the system when freed (glibc only).

    glibc otherwise raises its mmap threshold after large frees and keeps big tensors on a heap that
    fragments: measured, an eval's peak memory then grew 1.65x for 10x tokens; with this, 1.005x.
    MALLOC_MMAP_THRESHOLD_ in the environment takes precedence.
    """
    if os.environ.get("MALLOC_MMAP_THRESHOLD_") or not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-3, threshold)  # M_MMAP_THRESHOLD
    except (OSError, AttributeError):  # not glibc
        pass


def main(argv: Sequence[str] | None = None) -> int:
    bound_the_heap()
    try:
        args = build_parser().parse_args(argv)
        return COMMANDS[args.command](args)
    except InputError as exc:
        message = (
            str(exc).replace("\r", "\\r").replace("\n", "\\n")
        )  # one line, whatever the input held
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
        print(
            f"saebench: internal error: {type(exc).__name__}: {exc} (set SAEBENCH_DEBUG=1 for the traceback)",
            file=sys.stderr,
        )
        return 1


if __name__ == "__main__":
    sys.exit(main())
