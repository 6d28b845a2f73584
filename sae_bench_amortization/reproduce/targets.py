"""What each of the paper's results takes to reproduce: settings by scale, the steps, what was chosen.

Where the paper is silent, the settings are its authors' public code's (``wenjie1835/ICLR-rebuttal``);
each choice is written into :func:`choices` and the reproduction's manifest."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields, replace
from pathlib import Path

from sae_bench_amortization.reproduce import SCALES as SCALES
from sae_bench_amortization.reproduce.steps import Step

GEMMA_SCOPE = ("gemma-scope-2b-pt-res-canonical", "layer_12/width_16k/canonical")
VANILLA_RELEASE = "sae_bench_gemma-2-2b_vanilla_width-2pow14_date-1109"
VANILLA_CHECKPOINTS = (0, 146, 463, 1464, 4632, 14648, 46322)  # the registry's, in training order
GATED_REGEX = r"sae_bench_pythia70m_sweep_(gated|topk)_ctx128_0730"
LOCA_BUDGETS = "6,5,4,3,3,2,2,1"


@dataclass(frozen=True)
class Settings:
    """One reproduction's settings: the scale's defaults, replaced by the flags given."""

    scale: str
    out: Path
    model: str = "pythia-160m-deduped"  # the authors' EleutherAI/pythia-160m-deduped
    layer: int = 7  # the authors' hidden_states[8]: the residual stream after block 7
    dataset: str | None = "monology/pile-uncopyrighted"  # the authors' text for the Pythia SAEs
    text_file: str | None = None
    context_size: int = 128
    activation_tokens: int = 10_000_000  # the authors' 10M-token stream
    train_tokens: int = 102_400_000  # their cap: 50,000 steps of 2,048 (they may stop earlier)
    loca_tokens: int = 102_400_000  # fine-tuning: the same cap
    grouping_tokens: int = 409_600  # angular variance over 200 batches of 2,048
    eval_tokens: int = 50_000  # the paper's protocol: up to 50,000 tokens
    calibration_tokens: int = 5000  # the authors calibrate λ on the first 5,000 tokens
    d_sae: int = 16_384
    k: int = 20
    lr: float = 3e-4
    batch_size: int = 2048
    gated_block_regex: str = r"blocks\.3\.hook_resid_post__trainer_.*"
    activations: str | None = None  # evaluate published SAEs on this file instead of their model
    device: str | None = None


SMOKE = {  # the same chain, sizes a CPU runs in seconds
    "activation_tokens": 4096, "train_tokens": 16_384, "loca_tokens": 8192, "grouping_tokens": 2048,
    "eval_tokens": 128, "calibration_tokens": 64, "d_sae": 512, "lr": 1e-3, "batch_size": 512,
    "gated_block_regex": r"blocks\.3\.hook_resid_post__trainer_[01]$",
}  # fmt: skip


def settings_for(scale: str, out: Path, **given: object) -> Settings:
    """The scale's settings with the flags ``given`` (None: not given) in their place."""
    base = Settings(scale, out)
    if scale == "smoke":
        base = replace(base, **SMOKE)  # type: ignore[arg-type]
    names = {f.name for f in fields(Settings)}
    return replace(base, **{k: v for k, v in given.items() if v is not None and k in names})  # type: ignore[arg-type]


def hook(settings: Settings) -> str:
    return f"blocks.{settings.layer}.hook_resid_post"


def _text(s: Settings) -> tuple[str, ...]:
    if s.text_file:
        return ("--text-file", s.text_file, "--context-size", str(s.context_size))
    return (*(("--dataset", s.dataset) if s.dataset else ()), "--context-size", str(s.context_size))


def _device(s: Settings) -> tuple[str, ...]:
    return ("--device", s.device) if s.device else ()


def _path(s: Settings, name: str) -> str:
    return str(s.out / name)


def _activation_steps(s: Settings) -> list[Step]:
    """Training activations from the model, then held-out evaluation tokens right after them."""
    model = ("activations", "--model", s.model, "--hook", hook(s), *_text(s), *_device(s))
    return [
        Step("activations", (*model, "--n-tokens", str(s.activation_tokens),
                             "--out", _path(s, "activations.safetensors")), ("activations.safetensors",)),
        Step("held_out", (*model, "--skip-tokens", str(s.activation_tokens), "--n-tokens",
                          str(s.eval_tokens), "--out", _path(s, "held_out.safetensors")), ("held_out.safetensors",)),
    ]  # fmt: skip


def _train(s: Settings, architecture: str) -> Step:
    return Step(f"train_{architecture}", (
        "train", "--activations", _path(s, "activations.safetensors"), "--architecture", architecture,
        "--d-sae", str(s.d_sae), "--k", str(s.k), "--n-tokens", str(s.train_tokens), "--lr", str(s.lr),
        "--batch-size", str(s.batch_size), *_device(s), "--out", _path(s, architecture),
    ), (architecture,), ("activations.safetensors",))  # fmt: skip


def _evaluate(s: Settings, target: str, saes: tuple[str, ...], modes: tuple[str, ...],
              inputs: tuple[str, ...] = (), source: tuple[str, ...] = (), command: str = "run") -> Step:  # fmt: skip
    results = f"results/{target}"
    argv = (command, "--eval", "amortization_gap", "--protocol", "paper", *saes, *source,
            *(a for mode in modes for a in ("--inference", mode)),
            "--calibration-tokens", str(s.calibration_tokens), *_device(s),
            "--output-dir", _path(s, results))  # fmt: skip
    return Step(f"evaluate_{target}", argv, (results,), inputs, evaluates=True)


def _published_source(s: Settings) -> tuple[str, ...]:
    """A published SAE's own model and hook on the text given, or the activation file given."""
    if s.activations:
        return ("--activations", s.activations, "--n-tokens", str(s.eval_tokens))
    return ("--n-tokens", str(s.eval_tokens), *_text(s))


def pythia_topk(s: Settings) -> list[Step]:
    loca = Step("train_loca", (
        "train-loca", "--sae-path", _path(s, "topk"), "--activations", _path(s, "activations.safetensors"),
        "--n-tokens", str(s.loca_tokens), "--grouping-tokens", str(s.grouping_tokens),
        "--group-k", LOCA_BUDGETS, "--lr", str(s.lr / 2), "--batch-size", str(s.batch_size),
        "--aux-loss-coefficient", "0", *_device(s), "--out", _path(s, "loca"),
    ), ("loca",), ("topk", "activations.safetensors"))  # fmt: skip
    evaluate = _evaluate(
        s, "pythia-topk",
        ("--sae-path", _path(s, "topk"), "--sae-name", "pythia_topk", "--loca-path", _path(s, "loca")),
        ("amortized", "semi:30"), ("topk", "loca", "held_out.safetensors"),
        ("--activations", _path(s, "held_out.safetensors")),
    )  # fmt: skip
    return [*_activation_steps(s), _train(s, "topk"), loca, evaluate]


def batchtopk_steps(s: Settings) -> list[Step]:
    evaluate = _evaluate(
        s, "batchtopk-steps", ("--sae-path", _path(s, "batchtopk"), "--sae-name", "pythia_batchtopk"),
        ("amortized", "semi:5", "semi:50"), ("batchtopk", "held_out.safetensors"),
        ("--activations", _path(s, "held_out.safetensors")),
    )  # fmt: skip
    return [*_activation_steps(s), _train(s, "batchtopk"), evaluate]


def gemma_jumprelu(s: Settings) -> list[Step]:
    release, sae_id = GEMMA_SCOPE
    return [_evaluate(s, "gemma-jumprelu", ("--sae-release", release, "--sae-id", sae_id),
                      ("amortized", "semi:30"), source=_published_source(s))]  # fmt: skip


def checkpoint_ids() -> list[str]:
    steps = [f"blocks.12.hook_resid_post__trainer_0_step_{step}" for step in VANILLA_CHECKPOINTS]
    return [*steps, "blocks.12.hook_resid_post__trainer_0"]


def dynamics(s: Settings) -> list[Step]:
    pairs = tuple(a for sae_id in checkpoint_ids() for a in ("--sae-release", VANILLA_RELEASE, "--sae-id", sae_id))  # fmt: skip
    return [_evaluate(s, "dynamics", pairs, ("amortized", "semi:30"), source=_published_source(s),
                      command="dynamics")]  # fmt: skip


def gated_pattern(s: Settings) -> list[Step]:
    evaluate = _evaluate(
        s, "gated-pattern", ("--sae-regex", GATED_REGEX, "--sae-block-regex", s.gated_block_regex),
        ("amortized", "semi:30"), source=_published_source(s),
    )  # fmt: skip
    summary = Step("compare_gated-pattern", ("compare", _path(s, "results/gated-pattern"), "--out",
                   _path(s, "results/gated-pattern-summary")), ("results/gated-pattern-summary",), evaluates=True)  # fmt: skip
    return [evaluate, summary]


@dataclass(frozen=True)
class Target:
    """A result of the paper: what it is, its steps, and the settings it reads."""

    name: str
    title: str
    steps: Callable[[Settings], list[Step]]
    trains: bool  # trains its own SAEs from a model's activations (reads --model, --layer)


TARGETS: dict[str, Target] = {t.name: t for t in (
    Target("pythia-topk", "Pythia-160M, TopK: full / semi / LocA", pythia_topk, True),
    Target("gemma-jumprelu", "Gemma-2-2B, JumpReLU (Gemma Scope): full vs semi", gemma_jumprelu, False),
    Target("batchtopk-steps", "BatchTopK: 5 vs 50 ISTA steps", batchtopk_steps, True),
    Target("dynamics", "Training dynamics, Standard SAE (SAEBench Gemma checkpoints)", dynamics, False),
    Target("gated-pattern", "Gated vs TopK (SAEBench Pythia-70M sweeps)", gated_pattern, False),
)}  # fmt: skip


def choices(target: Target, s: Settings) -> dict[str, str]:
    """What this reproduction chose where the paper is silent, and why (printed and kept in the manifest)."""
    chosen = {
        "scale": s.scale,
        "eval tokens": f"{s.eval_tokens:,} (the paper's protocol: up to 50,000)",
        "λ calibration": f"on {s.calibration_tokens:,} tokens, each semi:T its own λ matching the encoder's "
        "L0 (--protocol paper; the authors: 5,000 tokens, one λ for semi and non-amortized)",
    }
    text = s.text_file or s.dataset or "the package default (Skylion007/openwebtext)"
    if target.trains:
        chosen |= {
            "model": f"{s.model} (the authors': EleutherAI/pythia-160m-deduped)",
            "hook": f"{hook(s)} (the paper names no layer; the authors read hidden_states[8], the residual "
                    "stream after block 7)",
            "text": f"{text}, {s.context_size}-token documents (the authors': monology/pile-uncopyrighted, 128)",
            "activation tokens": f"{s.activation_tokens:,} (the authors': a 10,000,000-token stream)",
            "held-out tokens": f"{s.eval_tokens:,} right after them (the authors evaluate 10,000 tokens "
                               "from the start of the training stream)",
            "SAE": f"d_sae {s.d_sae:,}, k {s.k}, Adam lr {s.lr:g}, batch {s.batch_size:,}, "
                   f"{s.train_tokens:,} tokens (the authors': 16,384, 20, 3e-4, 2,048, at most 50,000 steps, "
                   "stopping early at loss < 0.1)",
        }  # fmt: skip
        if target.name == "pythia-topk":
            chosen["LocA"] = (f"budgets {LOCA_BUDGETS} (group 0 = highest angular variance), lr {s.lr / 2:g}, "
                              f"MSE only, {s.loca_tokens:,} tokens, grouping over {s.grouping_tokens:,} tokens")  # fmt: skip
        if target.name == "batchtopk-steps":
            chosen["BatchTopK SAE"] = ("trained here on the Pythia activations above, k as the TopK SAE's "
                                       "(the authors used an SAE of their own that is not published)")  # fmt: skip
    else:
        chosen["source"] = (f"activation file {s.activations}" if s.activations
                            else f"each SAE's own model and hook, text {text}")  # fmt: skip
    if target.name == "gemma-jumprelu":
        chosen["SAE"] = (
            f"{GEMMA_SCOPE[0]} / {GEMMA_SCOPE[1]} (the authors' code names no Gemma SAE)"
        )
    if target.name == "dynamics":
        chosen["checkpoints"] = (
            f"{VANILLA_RELEASE}: steps {', '.join(map(str, VANILLA_CHECKPOINTS))}, final"
        )
    if target.name == "gated-pattern":
        chosen["SAEs"] = f"{GATED_REGEX} × {s.gated_block_regex}"
    return chosen


def caveats(target: Target, s: Settings) -> list[str]:
    """What makes this run's numbers differ from the paper's by construction (printed with the notes)."""
    notes = []
    if s.scale == "smoke":
        notes.append("--scale smoke: the chain at tiny sizes, a check that it runs; its numbers say nothing "
                     "about the paper's")  # fmt: skip
    if target.trains:
        if s.model != Settings.model:
            notes.append(f"model {s.model} stands in for the paper's pythia-160m-deduped")
        notes.append("the authors L2-normalise every activation before training and stop at a loss threshold; "
                     "this chain trains on the raw residual stream for the whole token budget")  # fmt: skip
        notes.append("the authors evaluate on the first 10,000 tokens of their training stream; here on "
                     f"{s.eval_tokens:,} held-out tokens")  # fmt: skip
    elif s.activations:
        notes.append(
            f"evaluated on the activation file {s.activations}, not on the SAE's own model"
        )
    if target.name == "batchtopk-steps":
        notes.append(
            "the authors' BatchTopK SAE is not published: this one is trained here (k as the TopK SAE's)"
        )
    if target.name == "gemma-jumprelu":
        notes.append("the paper names no Gemma SAE: Gemma Scope's canonical 16k SAE at layer 12")
    return notes
