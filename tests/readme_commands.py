r"""The README's shell commands, as a test runs them.

Every fenced ``bash`` block of README.md is split into commands (continuation lines joined, comments
dropped). Each command is either run — after the substitutions below, in one offline process against the
test Hugging Face cache (``tests/hf_cache.py``) and files generated first — or is one of the
:data:`EXCEPTIONS`, each with its reason. A substitution or exception that no longer matches a README
command fails the suite, as does a command that matches neither: a renamed flag breaks the tests, not
the user.

Substitutions (the README's section "Reproducing the paper" repeats this table):

* ``--device cuda`` → ``--device cpu`` (no GPU here);
* sizes: ``--n-tokens N`` above 2,000 → 2,000; a run reading a model without ``--n-tokens`` gets
  ``--n-tokens 1000 --calibration-tokens 256``, one reading a file without it ``--n-tokens 1000``;
  ``saebench reproduce`` gets ``--scale smoke`` and, for
  the targets whose models are not in the cache, the stand-ins of :data:`REPRODUCE_STAND_INS`;
* names: ``--sae-block-regex 'blocks\.3\.hook_resid_post__trainer_.*'`` over the Pythia-70M TopK sweep →
  ``trainer_[012]$`` (the three trainers in the cache); ``gpt2-small-res-jb`` / ``blocks.8.hook_resid_pre`` → the cached SAE-Lens-native Pythia-70M SAE; the
  embedded default (no SAE, no source) → ``--sae-path my_topk --sae-name default_stand_in --activations
  held_out.safetensors`` (the default itself runs in ``.ci/run`` and ``tests/test_wheel.py``); ``/shared/sweep`` → ``eval_results``;
  an ``--out`` an earlier README command already wrote gets the suffix ``_2`` (unless the command
  says ``--overwrite``), and a run of one ``--sae-path`` an earlier README command evaluated with the same
  evals gets ``--sae-name NAME_2`` (the README's examples are separate scenarios; here they share
  ``eval_results``);
* the files a command names that no README command writes (``my_saes/run7``, ``acts.safetensors``,
  ``my_minilm_sae``, ``my_world.yaml``, ``ckpt_*``, ``ci/sae_baseline.json``) are made first by the
  :data:`GENERATED` commands.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"
MAX_TOKENS = 2000
PYTHIA = ("pythia-70m-deduped-res-sm", "blocks.3.hook_resid_post")  # SAE-Lens-native, in the cache

EXCEPTIONS = {  # a command's start → why it is not run here
    "bash scripts/dev.sh": ".ci/run runs both commands on a clean clone (the CI of this project)",
    "hf download": "downloads from the hub (no network here); the cache it fills is what "
    "tests/hf_cache.py builds offline",
    "saebench run --eval amortization_gap --eval dead_dense --sae-regex gemma-scope-2b-pt-res$": (
        "needs a machine with 8 GPUs for Ray; tests/test_ray_executor.py runs --executor ray on a local "
        "instance"
    ),
    "saebench run --eval amortization_gap --sae-regex pythia --sae-block-regex .* --executor ray": (
        "needs a Ray cluster (--ray-address auto); tests/test_ray_executor.py runs --executor ray on a "
        "local instance"
    ),
    "export ": "the test's process already has this environment (HF_HOME = the test cache, offline)",
    "unset ": "the test's process already has this environment (no cache overrides)",
}

REPRODUCE_STAND_INS = {  # target → what replaces the models the test cache lacks
    "pythia-topk": ("--model", "pythia-70m-deduped", "--layer", "3", "--dataset", "Skylion007/openwebtext"),
    "batchtopk-steps": ("--model", "pythia-70m-deduped", "--layer", "3", "--dataset",
                        "Skylion007/openwebtext"),
    "gemma-jumprelu": ("--activations", "gemma_scope_planted.safetensors"),
    "dynamics": ("--activations", "vanilla_planted.safetensors"),
    "gated-pattern": ("--dataset", "Skylion007/openwebtext"),
}  # fmt: skip

_WORLD_YAML = (
    "import yaml; from sae_bench_amortization.synthetic import SyntheticConfig; "
    "open('my_world.yaml', 'w').write(yaml.safe_dump(SyntheticConfig(n_features=64).model_config().to_dict()))"
)
_PLANT = (  # activations of a cached SAE's width: sums of 8 of its decoder rows, magnitudes 1-2, + noise
    "import torch; from sae_lens import SAE; from sae_bench_amortization.activations.file import "
    "ActivationFileWriter as W; D = SAE.from_pretrained({release!r}, {sae_id!r}, device='cpu').W_dec.detach(); "
    "g = torch.Generator().manual_seed(0); i = torch.randint(0, D.shape[0], (512, 8), generator=g); "
    "x = ((1 + torch.rand(512, 8, generator=g))[..., None] * D[i]).sum(1) + 0.01 * torch.randn(512, D.shape[1], generator=g); "
    "w = W({out!r}, D.shape[1]); w.write(x); w.close()"
)
_SMALL_TOPK = ("--architecture", "topk", "--d-sae", "256", "--k", "8", "--n-tokens", "2000")
GENERATED = {  # a file the README names but none of its commands writes → the commands that make it
    "acts.safetensors": [["saebench", "activations", "--model", "pythia-70m-deduped", "--hook",
                          "blocks.3.hook_resid_post", "--n-tokens", "1000", "--out", "acts.safetensors"]],
    "my_saes/run7": [["saebench", "train", "--activations", "acts.safetensors", *_SMALL_TOPK,
                      "--out", "my_saes/run7"]],
    "my_minilm_sae": [["saebench", "train", "--activations", "minilm_l3.safetensors", *_SMALL_TOPK,
                       "--out", "my_minilm_sae"]],
    "my_world.yaml": [["python", "-c", _WORLD_YAML]],
    **{f"ckpt_{n}": [["saebench", "train", "--activations", "synth.safetensors", "--architecture", "topk",
                      "--d-sae", "128", "--k", "4", "--n-tokens", str(tokens), "--out", f"ckpt_{n}"]]
       for n, tokens in (("1k", 500), ("10k", 1000), ("100k", 2000))},
    "gemma_scope_planted.safetensors": [["python", "-c", _PLANT.format(
        release="gemma-scope-2b-pt-res-canonical", sae_id="layer_12/width_16k/canonical",
        out="gemma_scope_planted.safetensors")]],
    "vanilla_planted.safetensors": [["python", "-c", _PLANT.format(
        release="sae_bench_gemma-2-2b_vanilla_width-2pow14_date-1109",
        sae_id="blocks.12.hook_resid_post__trainer_0", out="vanilla_planted.safetensors")]],
    "ci/sae_baseline.json": [["python", "-c", "import os; os.makedirs('ci', exist_ok=True)"], ["saebench", "regress", "--results", "eval_results", "--write-baseline",
                              "ci/sae_baseline.json"]],
}  # fmt: skip

MODEL_READERS = ("--sae-release", "--sae-regex", "--model")  # a run that reads a model by these


@dataclass
class Command:
    """One README command: where it is, its words, and what the test does with it."""

    section: str
    text: str
    argv: list[str]
    run: list[str] | None = None  # after the substitutions; None: an exception
    why_not: str | None = None
    substitutions: list[str] = field(default_factory=list)


def bash_blocks(readme: Path = README) -> list[tuple[str, str]]:
    """(the heading it sits under, the block's text) of every fenced ``bash`` block."""
    blocks, heading, inside, lines = [], "", False, []
    for line in readme.read_text().splitlines():
        if not inside and line.startswith("#"):
            heading = line.lstrip("#").strip()
        if line.strip() == "```bash":
            inside, lines = True, []
        elif inside and line.strip() == "```":
            inside = False
            blocks.append((heading, "\n".join(lines)))
        elif inside:
            lines.append(line)
    return blocks


def commands(readme: Path = README) -> list[Command]:
    """Every command of every bash block, in README order."""
    found = []
    for section, block in bash_blocks(readme):
        joined = re.sub(r"\\\n\s*", " ", block)
        for line in joined.splitlines():
            argv = shlex.split(line, comments=True)
            if argv:
                found.append(Command(section, shlex.join(argv), argv))
    return found


def _set(argv: list[str], flag: str, value: str) -> None:
    index = argv.index(flag)
    argv[index + 1] = value


def substitute(command: Command, written: set[str], used: set[str]) -> None:
    """Fill ``command.run`` (or ``why_not``); ``written``: the --out paths earlier commands wrote;
    ``used``: the substitution and exception names that matched (each must match some command)."""
    for start, why in EXCEPTIONS.items():
        if " ".join(command.argv).startswith(start):
            command.why_not = why
            used.add(f"exception: {start}")
            return
    argv = list(command.argv)
    notes = command.substitutions

    def note(name: str) -> None:
        notes.append(name)
        used.add(name)

    if argv[0] == "python":
        command.run = argv
        return
    assert argv[0] == "saebench", (
        f"a README command that is neither run nor excepted: {command.text}"
    )
    if "cuda" in argv:
        _set(argv, "--device", "cpu")
        note("--device cuda → cpu")
    if "--n-tokens" in argv and int(argv[argv.index("--n-tokens") + 1]) > MAX_TOKENS:
        _set(argv, "--n-tokens", str(MAX_TOKENS))
        note("--n-tokens → 2000")
    if "gpt2-small-res-jb" in argv:
        _set(argv, "--sae-release", PYTHIA[0])
        _set(argv, "--sae-id", PYTHIA[1])
        note("gpt2-small-res-jb → the cached Pythia-70M SAE")
    if r"blocks\.3\.hook_resid_post__trainer_.*" in argv and "--sae-regex" in argv:
        argv[argv.index(r"blocks\.3\.hook_resid_post__trainer_.*")] = (
            r"blocks\.3\.hook_resid_post__trainer_[012]$"
        )
        note("the sweep's trainers → the three cached")
    if "/shared/sweep" in argv:
        argv[argv.index("/shared/sweep")] = "eval_results"
        note("/shared/sweep → eval_results")
    if argv[1] == "run" and not any(
        a in argv for a in ("--sae-path", "--sae-release", "--sae-regex")
    ):
        argv += [
            "--sae-path",
            "my_topk",
            "--sae-name",
            "default_stand_in",
            "--activations",
            "held_out.safetensors",
        ]
        note("the embedded default → my_topk on held_out.safetensors")
    if argv[1] in ("run", "dynamics") and any(a in argv for a in MODEL_READERS) and "--activations" not in argv and "--n-tokens" not in argv:  # fmt: skip
        argv += ["--n-tokens", "1000", "--calibration-tokens", "256"]
        note("a model run → --n-tokens 1000 --calibration-tokens 256")
    if argv[1] in ("run", "dynamics") and "--activations" in argv and "--n-tokens" not in argv:
        argv += ["--n-tokens", "1000"]
        note("a run on a file → --n-tokens 1000")
    if argv[1] == "reproduce":
        argv += ["--scale", "smoke", *REPRODUCE_STAND_INS[argv[2]]]
        note(f"reproduce {argv[2]} → --scale smoke with stand-ins")
    if argv[1] == "run" and argv.count("--sae-path") == 1 and "--sae-name" not in argv:
        evaluated = (
            tuple(argv[i + 1] for i, a in enumerate(argv) if a == "--eval"),
            argv[argv.index("--sae-path") + 1],
        )
        if evaluated in written:
            argv += ["--sae-name", f"{evaluated[1]}_2"]
            note("an SAE an earlier command evaluated → --sae-name NAME_2")
        written.add(evaluated)  # type: ignore[arg-type]
    if "--out" in argv and argv[argv.index("--out") + 1] in written and "--overwrite" not in argv:
        _set(argv, "--out", argv[argv.index("--out") + 1] + "_2")
        note("an --out already written → _2")
    if "--out" in argv:
        written.add(argv[argv.index("--out") + 1])
    command.run = argv


def prepared(readme: Path = README) -> tuple[list[Command], set[str]]:
    """Every README command with its substitutions, and the names of the rules that matched."""
    found, written, used = commands(readme), set(), set()
    for command in found:
        substitute(command, written, used)
    return found, used


def all_rules() -> set[str]:
    """The names of every substitution and exception (each must match a README command)."""
    return {
        "--device cuda → cpu", "--n-tokens → 2000", "gpt2-small-res-jb → the cached Pythia-70M SAE",
        "/shared/sweep → eval_results", "the embedded default → my_topk on held_out.safetensors",
        "a model run → --n-tokens 1000 --calibration-tokens 256", "an --out already written → _2",
        "an SAE an earlier command evaluated → --sae-name NAME_2", "a run on a file → --n-tokens 1000", "the sweep's trainers → the three cached",
        *(f"reproduce {target} → --scale smoke with stand-ins" for target in REPRODUCE_STAND_INS),
        *(f"exception: {start}" for start in EXCEPTIONS),
    }  # fmt: skip
