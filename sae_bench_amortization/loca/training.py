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
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch
from sae_lens.saes.topk_sae import calculate_topk_aux_acts
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from sae_bench_amortization.errors import InputError
from sae_bench_amortization.synthetic.training import shuffled_batches

STATE_FILE = "trainer_state.safetensors"
LOG_FIELDS = ("tokens", "mse", "aux_loss", "dead_fraction")


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
    out: Path, loca, optimizer, tokens: int, since_fired: torch.Tensor, steps: int, config
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
    save_file(tensors, str(partial / STATE_FILE), metadata=meta)
    shutil.rmtree(final, ignore_errors=True)
    partial.rename(final)
    for old in checkpoints(out)[: -config.keep_checkpoints]:
        shutil.rmtree(old, ignore_errors=True)


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


def train_loca(loca, source, out: str | Path, config: LocATrainingConfig, device: str = "cpu"):
    """Fine-tune ``loca`` on ``source`` (an activation source) into ``out``; resumes from ``out``'s last
    checkpoint when there is one. Returns the fine-tuned LocA-SAE (also saved in ``out``)."""
    from sae_lens import SAE

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    log_path = out / "training_log.csv"
    found = checkpoints(out)
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
                _save_checkpoint(out, loca, optimizer, tokens, since_fired, step, config)
                next_checkpoint = (tokens // config.checkpoint_every + 1) * config.checkpoint_every
    _save_checkpoint(out, loca, optimizer, tokens, since_fired, step, config)
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


def train_loca_from_sae(
    sae_path: str | None,
    sae_release: str | None,
    sae_id: str | None,
    source_settings,
    out: Path,
    n_groups: int,
    group_k: str,
    grouping_tokens: int,
    config: LocATrainingConfig,
    device: str = "cpu",
    group_order: str = "avar_desc",
    budget_scaling: str = "none",
    overwrite: bool = False,
):
    """``saebench train-loca``: the pretrained SAE (``sae_path``, or ``sae_release`` + ``sae_id``) grouped
    by angular variance on the source's first ``grouping_tokens`` tokens, then fine-tuned into ``out``
    (or resumed from its last checkpoint)."""
    from sae_bench_amortization.activations.sources import as_source
    from sae_bench_amortization.adapters.loca import LocASAE
    from sae_bench_amortization.sources import saes as loading

    budgets = group_budgets(group_k, n_groups)
    if bool(sae_release) != bool(sae_id):
        raise InputError("--sae-release and --sae-id come together")
    if bool(sae_path) == bool(sae_release):
        raise InputError("give the pretrained SAE: --sae-path P, or --sae-release R --sae-id I")
    if out.exists() and not out.is_dir():
        raise InputError(f"--out exists and is not a folder: {out}")
    if out.is_dir() and any(out.iterdir()) and not checkpoints(out) and not overwrite:
        raise InputError(
            f"--out {out} exists and holds no LocA training to resume: pass --overwrite to replace it"
        )
    factory = source_settings.factory(device)
    if factory is None:
        raise InputError("give an activation source: --activations F, --model NAME or --hf-model M")
    spec = (
        loading.spec_from_path(sae_path)
        if sae_path
        else loading.spec_from_release(sae_release, sae_id)
    )
    if overwrite and out.is_dir():  # start afresh: nothing of the earlier folder is resumed
        shutil.rmtree(out)
    resuming = bool(checkpoints(out))
    sae = spec.load(device, "float32")
    source = as_source(factory, sae)
    loca = None  # resuming: train_loca reads the last checkpoint
    if not resuming:
        if n_groups > sae.cfg.d_sae:
            raise InputError(f"--groups {n_groups} exceeds the SAE's d_sae {sae.cfg.d_sae}")
        loca = LocASAE.from_sae(
            sae, source, n_groups=n_groups, group_k=budgets, n_tokens=grouping_tokens,
            group_order=group_order, budget_scaling=budget_scaling,
        )  # fmt: skip
        report = loca.cfg.grouping
        where = "group 0" if group_order == "avar_desc" else "the last group"
        print(
            f"grouped {sae.cfg.d_sae} latents into {n_groups} groups by angular variance ({group_order}; "
            f"budgets {loca.cfg.group_k}, {budget_scaling} scaling, global k {report['global_k']}; "
            f"{report['n_never_fired']} never fired → {where})"
        )
    return train_loca(loca, source, out, config, device)
