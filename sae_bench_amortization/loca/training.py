"""Fine-tune a LocA-SAE on an activation stream: Adam on MSE (+ SAE-Lens's TopK auxiliary loss for dead
latents), unit-norm decoder rows, periodic checkpoints and resume from the last one.

Layout of ``out``:
    cfg.json, sae_weights.safetensors   the fine-tuned LocA-SAE (an SAE-Lens folder), written at the end
    training_log.csv                    tokens, mse, aux_loss, dead_fraction per logged step
    checkpoints/tokens_<N>/             the LocA-SAE after N tokens + trainer_state.safetensors
Resuming replays the same shuffled stream (deterministic per seed and batch size) and skips the tokens
already trained on, so an interrupted run ends with the same weights as an uninterrupted one; a resume with
another batch size, seed, lr or auxiliary-loss setting is refused. Extending a finished run with a larger
``--n-tokens`` continues from its last checkpoint (close to, not bit-identical with, one longer run: the
earlier run's last batch was cut short).
"""

from __future__ import annotations

import csv
import json
import math
import re
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import torch
from sae_lens.saes.topk_sae import calculate_topk_aux_acts
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from sae_bench_amortization.activations.file import ActivationFile
from sae_bench_amortization.activations.sources import as_source, source_identity
from sae_bench_amortization.adapters.loca import LocASAE, base_sae_identity
from sae_bench_amortization.adapters.loca_grouping import (
    BUDGET_SCALINGS,
    GROUP_ORDERS,
    BudgetScaling,
    GroupOrder,
    check_base_architecture,
)
from sae_bench_amortization.errors import InputError
from sae_bench_amortization.sources import saes as loading
from sae_bench_amortization.sources.sanity import check_sae
from sae_bench_amortization.synthetic.training import shuffled_batches
from sae_bench_amortization.targets import check_apart, check_creatable, check_replaceable, named

STATE_FILE = "trainer_state.safetensors"
LOG_FIELDS: tuple[str, ...] = ("tokens", "mse", "aux_loss", "dead_fraction")


@dataclass
class LocATrainingConfig:
    n_tokens: int = 1_000_000
    batch_size: int = 1024
    lr: float = 1e-4
    aux_loss_coefficient: float = 1.0  # SAE-Lens's TopK default; 0: no auxiliary loss
    dead_after_tokens: int = 100_000  # a latent silent this long counts as dead for the aux loss
    checkpoint_every: int = 100_000  # tokens
    keep_checkpoints: int = 2
    log_every: int = 20  # steps
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("n_tokens", "batch_size", "checkpoint_every", "log_every", "keep_checkpoints"):
            if getattr(self, name) <= 0:
                raise InputError(
                    f"--{name.replace('_', '-')} must be positive, got {getattr(self, name)}"
                )
        if not self.lr > 0:
            raise InputError(f"--lr must be positive, got {self.lr}")
        if not self.aux_loss_coefficient >= 0:
            raise InputError(
                f"--aux-loss-coefficient must be >= 0, got {self.aux_loss_coefficient}"
            )


def loca_loss(loca, x: torch.Tensor, dead: torch.Tensor, aux_coefficient: float):
    """x [B, d_in] → (total loss, mse, aux, codes [B, d_sae]). mse: ‖x − x̂‖² summed over d_in, mean over
    tokens; aux: SAE-Lens's TopK auxiliary loss on the ``dead`` [d_sae] latents (residual reconstruction)."""
    codes, hidden_pre = loca.encode_with_hidden_pre(x)
    recon = loca.decode(codes)
    mse = (recon - x).pow(2).sum(dim=-1).mean()
    aux = mse.new_zeros(())
    n_dead = int(dead.sum())
    if aux_coefficient > 0 and n_dead > 0:
        k_aux = min(x.shape[-1] // 2, n_dead)
        aux_acts = calculate_topk_aux_acts(k_aux, hidden_pre, dead)
        residual = (x - recon).detach()
        aux_recon = aux_acts.relu() @ loca.W_dec
        scale = min(n_dead / (x.shape[-1] // 2), 1.0)
        aux = aux_coefficient * scale * (aux_recon - residual).pow(2).sum(dim=-1).mean()
    return mse + aux, mse, aux, codes


@torch.no_grad()
def normalize_decoder(loca) -> None:
    loca.W_dec.div_(loca.W_dec.norm(dim=1, keepdim=True).clamp(min=1e-12))


def checkpoints(out: Path) -> list[Path]:
    """Complete checkpoints (``tokens_<N>`` folders, renamed into place after their state file), oldest first."""
    folder = out / "checkpoints"
    if not folder.is_dir():
        return []
    found = [
        p
        for p in folder.iterdir()
        if re.fullmatch(r"tokens_\d+", p.name) and (p / STATE_FILE).is_file()
    ]
    return sorted(found, key=lambda p: int(p.name.split("_")[1]))


RESUME_SETTINGS = ("batch_size", "seed", "lr", "aux_loss_coefficient", "dead_after_tokens")


def _save_checkpoint(
    out: Path,
    loca,
    optimizer,
    tokens: int,
    since_fired: torch.Tensor,
    *,
    steps: int,
    config,
    run: dict | None = None,
) -> None:
    final = out / "checkpoints" / f"tokens_{tokens}"
    partial = final.with_name(final.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    loca.save_model(partial)
    state = optimizer.state_dict()
    tensors = {"tokens_since_fired": since_fired.cpu()}
    for index, entry in state["state"].items():
        for name, value in entry.items():
            tensors[f"adam.{index}.{name}"] = torch.as_tensor(value).cpu()
    meta = {
        "tokens": str(tokens),
        "steps": str(steps),
        "param_groups": json.dumps(state["param_groups"]),
        "settings": json.dumps({key: getattr(config, key) for key in RESUME_SETTINGS}),
    }
    if run is not None:
        meta["run"] = json.dumps(run)
    save_file(tensors, str(partial / STATE_FILE), metadata=meta)
    shutil.rmtree(final, ignore_errors=True)
    partial.rename(final)
    for old in checkpoints(out)[: -config.keep_checkpoints]:
        shutil.rmtree(old, ignore_errors=True)


def checkpoint_metadata(path: Path) -> dict[str, str]:
    """The metadata of a checkpoint's trainer state (tokens, steps, settings, and ``run``: what the run
    was trained from, when the writer recorded it)."""
    from safetensors import safe_open

    with safe_open(str(path / STATE_FILE), framework="pt") as handle:
        return handle.metadata() or {}


def _load_checkpoint(path: Path, optimizer, device, config) -> tuple[int, torch.Tensor, int]:
    """Restore the optimizer from a checkpoint; (tokens trained, tokens since each latent fired, steps).
    A resume is exact only with the same stream and optimizer: other settings are refused."""
    from safetensors import safe_open

    tensors = load_file(str(path / STATE_FILE), device=str(device))
    with safe_open(str(path / STATE_FILE), framework="pt") as handle:
        meta = handle.metadata()
    saved = json.loads(meta.get("settings", "{}"))
    changed = [
        f"--{key.replace('_', '-')} {saved[key]} (now {getattr(config, key)})"
        for key in RESUME_SETTINGS
        if key in saved and saved[key] != getattr(config, key)
    ]
    if changed:
        raise InputError(
            f"{path} was trained with {', '.join(changed)}: resume with the same settings, or use another --out"
        )
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        if key.startswith("adam."):
            _, index, name = key.split(".", 2)
            state.setdefault(int(index), {})[name] = value.cpu() if name == "step" else value
    optimizer.load_state_dict({"state": state, "param_groups": json.loads(meta["param_groups"])})
    since_fired = tensors["tokens_since_fired"].to(torch.int64)
    return int(meta["tokens"]), since_fired, int(meta.get("steps", 0))


def _rewrite_log(path: Path, up_to_tokens: int) -> None:
    """Keep the log rows up to the checkpoint a run resumes from."""
    if not path.exists():
        return
    with path.open() as handle:
        rows = [r for r in csv.DictReader(handle) if int(r["tokens"]) <= up_to_tokens]
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=LOG_FIELDS)
        writer.writeheader()
        writer.writerows(rows)


def train_loca(
    loca,
    source,
    out: str | Path,
    config: LocATrainingConfig,
    *,
    device: str = "cpu",
    run: dict | None = None,
):
    """Fine-tune ``loca`` on ``source`` (an activation source) into ``out``; resumes from ``out``'s last
    checkpoint when there is one. ``run`` (JSON-able; :func:`run_record`): what the run is trained from,
    kept in every checkpoint; given, a resume from a checkpoint that records another (or none) is refused.
    Returns the fine-tuned LocA-SAE (also saved in ``out``)."""
    from sae_lens import SAE

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    log_path = out / "training_log.csv"
    found = checkpoints(out)
    if found and run is not None:
        check_same_run(out, run, config)
    if found:
        last = found[-1]
        loca = SAE.load_from_disk(str(last), device=device)
        optimizer = torch.optim.Adam(loca.parameters(), lr=config.lr)
        tokens, since_fired, step = _load_checkpoint(last, optimizer, device, config)
        _rewrite_log(log_path, tokens)
        print(f"resuming from {last} ({tokens} tokens trained)")
    else:
        if loca is None:
            raise InputError(f"nothing to resume in {out} and no LocA-SAE given")
        loca = loca.to(device)
        optimizer = torch.optim.Adam(loca.parameters(), lr=config.lr)
        since_fired = torch.zeros(loca.cfg.d_sae, dtype=torch.int64, device=device)
        tokens, step = 0, 0
        normalize_decoder(loca)
        with log_path.open("w", newline="") as handle:
            csv.DictWriter(handle, fieldnames=LOG_FIELDS).writeheader()
    if tokens >= config.n_tokens:
        print(
            f"already trained on {tokens} tokens (--n-tokens {config.n_tokens}); writing the model"
        )
        _save_final(loca, out)
        return loca
    if config.aux_loss_coefficient > 0 and loca.cfg.normalize_activations in (
        "constant_norm_rescale",
        "layer_norm",
    ):  # as SAE-Lens: its residual would be in another space than the aux reconstruction
        raise InputError(
            f"the auxiliary loss does not support normalize_activations={loca.cfg.normalize_activations!r}: "
            "pass --aux-loss-coefficient 0"
        )
    next_checkpoint = (tokens // config.checkpoint_every + 1) * config.checkpoint_every
    seen = 0
    with (
        tqdm(
            total=config.n_tokens,
            initial=tokens,
            desc="fine-tuning LocA-SAE",
            unit="tok",
            disable=None,
        ) as bar,
        log_path.open("a", newline="") as log_handle,
    ):
        log = csv.DictWriter(log_handle, fieldnames=LOG_FIELDS)
        for x in shuffled_batches(source, config.batch_size, config.n_tokens, config.seed):
            seen += x.shape[0]
            if seen <= tokens:  # trained on before the checkpoint this run resumed from
                continue
            if seen - x.shape[0] < tokens:  # an earlier run stopped inside this batch (a smaller
                x = x[tokens - (seen - x.shape[0]) :]  # --n-tokens): train only the rest of it
            x = x.to(device=device, dtype=loca.W_dec.dtype)
            dead = since_fired > config.dead_after_tokens
            loss, mse, aux, codes = loca_loss(loca, x, dead, config.aux_loss_coefficient)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            normalize_decoder(loca)
            fired = (codes > 0).any(dim=0)
            since_fired = torch.where(fired, 0, since_fired + x.shape[0])
            tokens, step = seen, step + 1
            bar.update(x.shape[0])
            if step % config.log_every == 0 or tokens == config.n_tokens:
                dead_fraction = float((since_fired > config.dead_after_tokens).float().mean())
                log.writerow(
                    {
                        "tokens": tokens,
                        "mse": f"{mse.item():.6g}",
                        "aux_loss": f"{aux.item():.6g}",
                        "dead_fraction": f"{dead_fraction:.6g}",
                    }
                )
                bar.set_postfix(mse=f"{mse.item():.3g}")
            if tokens >= next_checkpoint and tokens < config.n_tokens:
                log_handle.flush()
                _save_checkpoint(
                    out, loca, optimizer, tokens, since_fired, steps=step, config=config, run=run
                )
                next_checkpoint = (tokens // config.checkpoint_every + 1) * config.checkpoint_every
    _save_checkpoint(out, loca, optimizer, tokens, since_fired, steps=step, config=config, run=run)
    _save_final(loca, out)
    return loca


def _save_final(loca, out: Path) -> None:
    """The SAE-Lens folder, written beside and renamed in (a reader never sees half a model)."""
    staging = out / ".final.partial"
    shutil.rmtree(staging, ignore_errors=True)
    loca.save_model(staging)
    for item in staging.iterdir():
        item.replace(out / item.name)
    staging.rmdir()


def group_budgets(text: str, n_groups: int) -> list[int]:
    """``--group-k`` '6,5,4,...' → budgets, one per group."""
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


# ------------------------------------------------------------------------------ what a run is trained from

OWN_FILES = (
    "cfg.json",
    "sae_weights.safetensors",
    "training_log.csv",
    "checkpoints",
    ".final.partial",
)

# record key → (flag, how its value is shown), in the order differences are named
RUN_SETTINGS = {
    "groups": ("--groups", str),
    "group_k": ("--group-k", lambda v: ",".join(map(str, v))),
    "group_order": ("--group-order", str),
    "budget_scaling": ("--budget-scaling", str),
    "grouping_tokens": ("--grouping-tokens", str),
    "skip_tokens": ("--skip-tokens", str),
    **{key: (f"--{key.replace('_', '-')}", str) for key in RESUME_SETTINGS},
}
BASE_KEYS = (
    "weights_sha256",
    "d_sae",
    "d_in",
    "architecture",
)  # what names a base SAE (not where it lies)


def is_own_entry(name: str) -> bool:
    """A name train-loca writes in ``--out``: the model, the log, the checkpoints, its staging folder."""
    return name in OWN_FILES or (name.startswith(".") and name.endswith(".partial"))


def is_training_folder(folder: Path) -> bool:
    """A folder train-loca wrote: it holds a training log or checkpoints."""
    return (folder / "training_log.csv").is_file() or (folder / "checkpoints").is_dir()


def activation_identity(source) -> dict:
    """What the tokens of ``source`` are, whatever the span read: :func:`source_identity` without the token
    count (a run may be extended with a larger --n-tokens) and the skip (recorded beside it)."""

    identity = source_identity(source)
    return {k: v for k, v in identity.items() if k not in ("n_tokens", "skip_tokens")}


def run_record(
    base_sae: dict,
    source,
    *,
    skip_tokens: int,
    n_groups: int,
    budgets: list[int],
    group_order: str,
    budget_scaling: str,
    grouping_tokens: int,
    config: LocATrainingConfig,
) -> dict:
    """Everything a LocA fine-tuning's result depends on except its length (JSON-able, as stored)."""
    record = {
        "base_sae": base_sae,
        "activations": activation_identity(source),
        "activations_describe": source.describe(),  # for messages only
        "groups": n_groups,
        "group_k": list(budgets),
        "group_order": group_order,
        "budget_scaling": budget_scaling,
        "grouping_tokens": grouping_tokens,
        "skip_tokens": skip_tokens,
        **{key: getattr(config, key) for key in RESUME_SETTINGS},
    }
    return json.loads(json.dumps(record))


def _base_name(base: dict) -> str:
    where = base.get("path") or "/".join(
        str(base[key]) for key in ("release", "sae_id") if key in base
    )
    sha = str(base.get("weights_sha256", ""))[:12]
    return f"{where or 'an SAE'} ({base.get('architecture')}, d_sae {base.get('d_sae')}, weights {sha})"


def run_differences(saved: dict, now: dict) -> list[str]:
    """What differs between two :func:`run_record` s, each as "<was> (now <is>)"."""
    differences = []
    old_base, new_base = saved.get("base_sae") or {}, now.get("base_sae") or {}
    if any(old_base.get(key) != new_base.get(key) for key in BASE_KEYS):
        differences.append(f"from base SAE {_base_name(old_base)} (now {_base_name(new_base)})")
    if saved.get("activations") != now.get("activations"):
        old, new = saved.get("activations_describe"), now.get("activations_describe")
        if old == new:  # same name, other contents
            changed = sorted(
                key
                for key in set(saved["activations"] or {}) | set(now["activations"])
                if (saved["activations"] or {}).get(key) != now["activations"].get(key)
            )
            old = f"{old} with other contents ({', '.join(changed)})"
        differences.append(f"on {old} (now {new})")
    for key, (flag, show) in RUN_SETTINGS.items():
        if key in now and saved.get(key) != now[key]:
            was = "unset" if saved.get(key) is None else show(saved[key])
            differences.append(f"with {flag} {was} (now {show(now[key])})")
    return differences


def check_same_run(out: Path, run: dict, config: LocATrainingConfig) -> None:
    """One line unless ``out``'s last checkpoint was trained from exactly ``run`` (a longer --n-tokens may
    extend it; a shorter one than it holds cannot be undone)."""
    last = checkpoints(out)[-1]
    meta = checkpoint_metadata(last)
    if "run" not in meta:
        raise InputError(
            f"--out {out} holds a checkpoint of an earlier train-loca that did not record its base SAE and "
            "inputs, so a resume cannot be checked against this command: pass --overwrite to start "
            "afresh, or use another --out"
        )
    differences = run_differences(json.loads(meta["run"]), run)
    if differences:
        raise InputError(
            f"--out {out} was trained {'; '.join(differences)}: resume with the same inputs, or use "
            "another --out"
        )
    trained = int(meta.get("tokens", 0))
    if trained > config.n_tokens:
        raise InputError(
            f"--out {out} was already trained on {trained} tokens, more than --n-tokens {config.n_tokens}: "
            f"pass --n-tokens {trained} or more to resume it, or use another --out"
        )


def _check_target(out: Path, overwrite: bool) -> None:
    """``--out`` may be filled afresh: absent or empty; with --overwrite, an earlier train-loca output."""

    if out.is_dir() and any(out.iterdir()) and not overwrite:
        check_replaceable(
            out, "--out", True, own=is_own_entry, is_ours=is_training_folder, what="train-loca"
        )
        raise InputError(
            f"--out {out} exists and holds no LocA training to resume: pass --overwrite to replace it"
        )
    check_replaceable(
        out, "--out", overwrite, own=is_own_entry, is_ours=is_training_folder, what="train-loca"
    )


def _clear(out: Path) -> None:
    """Empty ``out`` (an earlier train-loca output, checked), keeping the folder itself."""
    for entry in out.iterdir():
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()


def _read_paths(sae_path, source_settings) -> dict:

    text = getattr(source_settings, "text", None)
    hf_model = getattr(source_settings, "hf_model", None)
    return named(
        [
            ("--sae-path", sae_path),
            ("--activations", getattr(source_settings, "activations", None)),
            ("--text-file", getattr(text, "text_file", None)),
            ("--hf-model", hf_model if hf_model and Path(hf_model).exists() else None),
        ]
    )


def _file_span(source_settings):
    """The settings with ``n_tokens`` dropped when an activation file holds fewer tokens (after the skip):
    the file is read whole and training passes over it several times (said in a note, not as a truncation)."""
    from dataclasses import replace

    path, wanted = source_settings.activations, source_settings.n_tokens
    if not path or wanted is None:
        return source_settings
    held = ActivationFile(path).n_tokens - max(source_settings.skip_tokens, 0)
    return replace(source_settings, n_tokens=None) if wanted > held else source_settings


def train_loca_from_sae(
    sae_path: str | None,
    sae_release: str | None,
    sae_id: str | None,
    source_settings,
    out: Path,
    *,
    n_groups: int,
    group_k: str,
    grouping_tokens: int,
    config: LocATrainingConfig,
    device: str = "cpu",
    group_order: GroupOrder = "avar_desc",
    budget_scaling: BudgetScaling = "none",
    overwrite: bool = False,
):
    """``saebench train-loca``: the pretrained SAE (``sae_path``, or ``sae_release`` + ``sae_id``) grouped
    by angular variance on the source's first ``grouping_tokens`` tokens, then fine-tuned into ``out``
    (or resumed from its last checkpoint, when that was trained from the same SAE, tokens and settings).

    Every input is checked before anything is written: ``out`` apart from what is read, replaceable (with
    ``overwrite`` only an earlier train-loca output, emptied only after all checks passed), the SAE
    loadable and sane, the source readable, the budgets valid, a resume the same run."""

    out = Path(out)
    check_apart({"--out": out}, _read_paths(sae_path, source_settings))
    check_creatable(out, "--out")
    if n_groups < 1:
        raise InputError(f"--groups must be positive, got {n_groups}")
    budgets = group_budgets(group_k, n_groups)
    if group_order not in GROUP_ORDERS:
        raise InputError(
            f"--group-order must be one of {', '.join(GROUP_ORDERS)}, got {group_order!r}"
        )
    if budget_scaling not in BUDGET_SCALINGS:
        raise InputError(
            f"--budget-scaling must be one of {', '.join(BUDGET_SCALINGS)}, got {budget_scaling!r}"
        )
    if grouping_tokens < 1:
        raise InputError(f"--grouping-tokens must be positive, got {grouping_tokens}")
    if bool(sae_release) != bool(sae_id):
        raise InputError("--sae-release and --sae-id come together")
    if bool(sae_path) == bool(sae_release):
        raise InputError("give the pretrained SAE: --sae-path P, or --sae-release R --sae-id I")
    resuming = not overwrite and bool(checkpoints(out))
    if not resuming:
        _check_target(out, overwrite)
    if sae_path:
        spec = loading.spec_from_path(sae_path)
    else:
        assert sae_release and sae_id  # checked above: one of the two ways is given
        spec = loading.spec_from_release(sae_release, sae_id)
    settings = _file_span(source_settings)
    factory = settings.factory(device)
    if factory is None:
        raise InputError("give an activation source: --activations F, --model NAME or --hf-model M")
    sae = spec.load(device, "float32")
    check_sae(sae, sae_path or f"{sae_release}/{sae_id}")
    check_base_architecture(sae)
    if n_groups > sae.cfg.d_sae:
        raise InputError(f"--groups {n_groups} exceeds the SAE's d_sae {sae.cfg.d_sae}")
    if config.aux_loss_coefficient > 0 and sae.cfg.normalize_activations in (
        "constant_norm_rescale",
        "layer_norm",
    ):
        raise InputError(
            f"the auxiliary loss does not support normalize_activations={sae.cfg.normalize_activations!r}: "
            "pass --aux-loss-coefficient 0"
        )
    source = as_source(factory, sae)
    origin = (
        {"path": Path(sae_path).resolve()}
        if sae_path
        else {"release": sae_release, "sae_id": sae_id}
    )
    base = base_sae_identity(sae, **origin)
    assert base is not None  # loaded in float32 above: always identified
    run = run_record(
        base, source, skip_tokens=source_settings.skip_tokens, n_groups=n_groups, budgets=budgets,
        group_order=group_order, budget_scaling=budget_scaling, grouping_tokens=grouping_tokens,
        config=config,
    )  # fmt: skip
    if resuming:
        check_same_run(out, run, config)
    held = getattr(source, "n_tokens", None)
    if held and config.n_tokens > held:
        default = " (the default)" if source_settings.n_tokens is None else ""
        print(
            f"note: --n-tokens {config.n_tokens}{default} exceeds the {held} tokens of {source.describe()}: "
            f"training makes {math.ceil(config.n_tokens / held)} passes over them",
            file=sys.stderr,
        )
    # every check passed: from here on, work and writes
    if overwrite and out.is_dir():  # start afresh: nothing of the earlier output is resumed
        _clear(out)
    loca = None  # resuming: train_loca reads the last checkpoint
    if not resuming:
        loca = LocASAE.from_sae(
            sae, source, n_groups=n_groups, group_k=budgets, n_tokens=grouping_tokens,
            group_order=group_order, budget_scaling=budget_scaling, base_sae=base,
        )  # fmt: skip
        report = loca.cfg.grouping
        where = "group 0" if group_order == "avar_desc" else "the last group"
        measured = min(grouping_tokens, held) if held else grouping_tokens
        print(
            f"grouped {sae.cfg.d_sae} latents into {n_groups} groups by angular variance on {measured} "
            f"tokens ({group_order}; budgets {loca.cfg.group_k}, {budget_scaling} scaling, global k "
            f"{report['global_k']}; {report['n_never_fired']} never fired → {where})"
        )
    return train_loca(loca, source, out, config, device=device, run=run)
