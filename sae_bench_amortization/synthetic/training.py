"""A small, deterministic SAE trainer on SAE-Lens's own training SAEs (their losses and aux losses),
streaming from any activation source: TopK (``TopKTrainingSAE``), BatchTopK (``BatchTopKTrainingSAE``, saved
as the JumpReLU SAE-Lens makes of it) or standard L1 (``StandardTrainingSAE``).

``saebench train`` writes into ``out``: the SAE-Lens folder, and ``training_log.csv`` with one row
(:data:`LOG_FIELDS`) about every 1% of the steps and at the last step."""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from sae_lens import BatchTopKTrainingSAE, BatchTopKTrainingSAEConfig
from sae_lens.saes.sae import SAEMetadata, TrainCoefficientConfig, TrainStepInput
from sae_lens.saes.standard_sae import StandardTrainingSAE, StandardTrainingSAEConfig
from sae_lens.saes.topk_sae import TopKTrainingSAE, TopKTrainingSAEConfig
from tqdm.auto import tqdm

from sae_bench_amortization.activations.base import take_tokens
from sae_bench_amortization.activations.file import ActivationFile, truth_path
from sae_bench_amortization.atomic import write_text_atomic
from sae_bench_amortization.errors import InputError
from sae_bench_amortization.metrics.reconstruction import (
    ReconstructionAccumulator,
)
from sae_bench_amortization.sources.sanity import check_sae
from sae_bench_amortization.targets import check_apart, check_creatable, check_replaceable

ARCHITECTURES = ("topk", "batchtopk", "standard")
K_SPARSE = ("topk", "batchtopk")  # the architectures that take --k
# step; tokens trained on; SAE-Lens's training loss and its mse (mean ‖x − x̂‖²); the batch's NMSE; mean L0
LOG_FIELDS = ("step", "tokens", "loss", "mse", "nmse", "l0")
EVAL_TOKENS = 20_000  # the final report reads at most this many tokens from the start of the file


def shuffled_batches(
    source, batch_size: int, n_tokens: int, seed: int = 0, buffer_batches: int = 32
) -> Iterator[torch.Tensor]:
    """n_tokens activations in batches [batch_size, d_in], shuffled within a buffer of chunks; the
    source is read again from the start as often as needed (epochs). Memory: one buffer."""
    generator = torch.Generator().manual_seed(seed)
    emitted = 0
    while emitted < n_tokens:
        buffer: list[torch.Tensor] = []
        read_any = False
        for batch in source.iter_batches(batch_size):
            read_any = True
            buffer.append(batch.acts)
            if len(buffer) == buffer_batches:
                for out in _shuffle(buffer, batch_size, generator):
                    yield out[: n_tokens - emitted]
                    emitted += min(out.shape[0], n_tokens - emitted)
                    if emitted >= n_tokens:
                        return
                buffer = []
        if not read_any:
            raise InputError("the activation source is empty")
        for out in _shuffle(buffer, batch_size, generator):
            yield out[: n_tokens - emitted]
            emitted += min(out.shape[0], n_tokens - emitted)
            if emitted >= n_tokens:
                return


def _shuffle(
    buffer: list[torch.Tensor], batch_size: int, generator: torch.Generator
) -> Iterator[torch.Tensor]:
    if not buffer:
        return
    joined = torch.cat(buffer)
    joined = joined[torch.randperm(joined.shape[0], generator=generator)]
    yield from joined.split(batch_size)


def train_sae(
    source,
    architecture: str,
    d_sae: int,
    n_tokens: int,
    *,
    k: int | None = None,
    l1_coefficient: float = 5.0,
    batch_size: int = 1024,
    lr: float = 1e-3,
    seed: int = 0,
    dead_after_tokens: int = 20_000,
    metadata: dict | None = None,
    device: str = "cpu",
    log: list[dict] | None = None,
):
    """Train an SAE-Lens TopK, BatchTopK or standard SAE on ``n_tokens`` activations of ``source`` with Adam.

    Decoder bias starts at the mean of the first batch; weights start as SAE-Lens initialises them.
    TopK latents silent for ``dead_after_tokens`` tokens get SAE-Lens's auxiliary loss. Returns the
    SAE-Lens training SAE (``save_inference_model`` writes an inference SAE-Lens folder). A ``log``
    list receives a :data:`LOG_FIELDS` row every :func:`log_interval` steps and at the last step.
    """
    if architecture not in ARCHITECTURES:
        raise InputError(
            f"--architecture must be one of {', '.join(ARCHITECTURES)}, got '{architecture}'"
        )
    if architecture in K_SPARSE and not (k and k > 0):
        raise InputError(f"--architecture {architecture} needs --k (a positive integer)")
    if d_sae <= 0 or n_tokens <= 0:
        raise InputError("--d-sae and --n-tokens must be positive")
    torch.manual_seed(seed)
    meta = SAEMetadata(**(metadata or {}))
    if architecture == "topk":
        assert k is not None  # checked above
        sae = TopKTrainingSAE(
            TopKTrainingSAEConfig(d_in=source.d_in, d_sae=d_sae, k=k, metadata=meta, device=device)
        )
    elif (
        architecture == "batchtopk"
    ):  # k actives per token on average over the batch; saved as JumpReLU
        assert k is not None  # checked above
        sae = BatchTopKTrainingSAE(
            BatchTopKTrainingSAEConfig(
                d_in=source.d_in, d_sae=d_sae, k=k, metadata=meta, device=device
            )
        )
    else:
        cfg = StandardTrainingSAEConfig(
            d_in=source.d_in,
            d_sae=d_sae,
            l1_coefficient=l1_coefficient,
            metadata=meta,
            device=device,
        )
        sae = StandardTrainingSAE(cfg)
    optimizer = torch.optim.Adam(sae.parameters(), lr=lr)
    coefficients = {
        name: value.value if isinstance(value, TrainCoefficientConfig) else value
        for name, value in sae.get_coefficients().items()
    }
    tokens_since_fired = torch.zeros(d_sae, dtype=torch.int64, device=device)
    step, tokens, every = 0, 0, log_interval(n_tokens, batch_size)
    with tqdm(
        total=n_tokens, desc=f"training {architecture} SAE", unit="tok", leave=False, disable=None
    ) as bar:
        for x in shuffled_batches(source, batch_size, n_tokens, seed):
            x = x.to(device)
            if step == 0:
                with torch.no_grad():
                    sae.b_dec.copy_(x.mean(dim=0))
            output = sae.training_forward_pass(
                TrainStepInput(
                    sae_in=x,
                    coefficients=coefficients,
                    dead_neuron_mask=tokens_since_fired > dead_after_tokens,
                    n_training_steps=step,
                    is_logging_step=False,
                )
            )
            optimizer.zero_grad(set_to_none=True)
            output.loss.backward()
            optimizer.step()
            fired = (output.feature_acts > 0).any(dim=0)
            tokens_since_fired = torch.where(fired, 0, tokens_since_fired + x.shape[0])
            step, tokens = step + 1, tokens + x.shape[0]
            if log is not None and (step % every == 0 or tokens >= n_tokens):
                log.append(_log_row(step, tokens, x, output))
            bar.update(x.shape[0])
            bar.set_postfix(mse=f"{output.losses['mse_loss'].item():.3g}")
    return sae


def log_interval(n_tokens: int, batch_size: int) -> int:
    """Steps between training-log rows: about 1% of the steps, at least 1."""
    return max(1, math.ceil(n_tokens / batch_size) // 100)


def _log_row(step: int, tokens: int, x: torch.Tensor, output) -> dict:
    """A :data:`LOG_FIELDS` row for the batch x [B, d_in] just trained on (NMSE None: no variance)."""
    batch = ReconstructionAccumulator()
    batch.update(x, output.sae_out)
    l0 = (output.feature_acts > 0).sum(dim=-1).double().mean()
    mse = output.losses["mse_loss"]
    return {"step": step, "tokens": tokens, "loss": output.loss.item(), "mse": mse.item(),
            "nmse": batch.nmse, "l0": l0.item()}  # fmt: skip


def log_csv(rows: list[dict]) -> str:
    """training_log.csv's text: a header of :data:`LOG_FIELDS`, floats to 6 digits, None empty."""
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=LOG_FIELDS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({key: _cell(value) for key, value in row.items()})
    return text.getvalue()


def _cell(value: Any) -> str:
    if value is None:
        return ""
    return f"{value:.6g}" if isinstance(value, float) else str(value)


@dataclass(frozen=True)
class TrainingReport:
    """What ``saebench train`` trained: the last step's training loss, and the saved SAE's NMSE and
    explained variance (SAEBench core's definition) on the file's first ``n_eval_tokens`` tokens."""

    sae: Any
    log: list[dict]
    loss: float
    nmse: float | None
    explained_variance: float | None
    n_eval_tokens: int

    def summary(self) -> str:
        return (
            f"final loss {self.loss:.6g}, NMSE {_shown(self.nmse)}, explained variance "
            f"{_shown(self.explained_variance)} (on the file's first {self.n_eval_tokens} tokens)"
        )


def _shown(value: float | None) -> str:
    return "undefined" if value is None else f"{value:.6g}"


def reconstruction_quality(
    sae_folder: Path, source, device: str, n_tokens: int = EVAL_TOKENS, batch_size: int = 4096
) -> tuple[float | None, float | None, int]:
    """(NMSE, explained variance, tokens read) of the SAE saved at ``sae_folder`` on the first
    ``n_tokens`` tokens of ``source``, in one streamed pass of [batch_size, d_in] chunks."""
    from sae_lens import SAE

    sae = SAE.load_from_disk(str(sae_folder), device=device)
    quality = ReconstructionAccumulator()
    with torch.no_grad():
        for batch in take_tokens(source.iter_batches(batch_size), n_tokens):
            x = batch.acts.to(device, sae.W_dec.dtype)
            quality.update(x, sae.decode(sae.encode(x)))
    return quality.nmse, quality.explained_variance, quality.n_tokens


def train_sae_file(
    activations: str | Path,
    architecture: str,
    d_sae: int,
    n_tokens: int,
    out: Path,
    *,
    overwrite: bool = False,
    **options: Any,
):
    """``saebench train``: :func:`train_sae` on an activation file (``options``: its keyword arguments),
    saved as an SAE-Lens folder at ``out`` (model and hook names taken from the file's metadata) with
    ``training_log.csv`` beside it; returns a :class:`TrainingReport`."""

    reads = {"--activations": activations, "--activations' truth sidecar": truth_path(activations)}
    check_apart({"--out": out}, reads)
    source = ActivationFile(activations)
    source.check_finite()
    check_training_options(architecture, d_sae, n_tokens, **options)
    check_creatable(out, "--out")
    check_replaceable(out, "--out", overwrite, own=_own_output, is_ours=_trained_here, what="train")
    meta = source.metadata
    metadata = {
        "model_name": meta.get("model_name") or meta.get("hf_model") or "unknown",
        "hook_name": meta.get("hook_name") or meta.get("hf_module") or "unknown",
    }
    log: list[dict] = []
    sae = train_sae(source, architecture, d_sae, n_tokens, metadata=metadata, log=log, **options)
    try:
        check_sae(sae, str(out))
    except InputError as exc:
        raise InputError(f"training diverged, nothing written ({exc}): lower --lr") from None
    save_sae_folder(sae, out, log_csv(log))
    quality = reconstruction_quality(out, source, options.get("device", "cpu"))
    return TrainingReport(sae, log, log[-1]["loss"], *quality)


TRAIN_OUTPUT = ("cfg.json", "sae_weights.safetensors", "training_log.csv")


def _own_output(name: str) -> bool:
    """A name ``saebench train`` writes into ``--out`` (or one of its temporaries)."""
    return name in TRAIN_OUTPUT or name.startswith(".")


def _trained_here(folder: Path) -> bool:
    return (folder / "training_log.csv").is_file()


def check_training_options(architecture: str, d_sae: int, n_tokens: int, **options: Any) -> None:
    """One line for the first option ``train`` cannot use (before any work)."""
    if architecture in K_SPARSE and options.get("k") is None:
        raise InputError(f"--architecture {architecture} needs --k")
    if d_sae <= 0 or n_tokens <= 0:
        raise InputError(f"--d-sae and --n-tokens must be positive, got {d_sae} and {n_tokens}")
    if architecture in K_SPARSE and not 0 < options["k"] <= d_sae:
        raise InputError(f"--k must satisfy 0 < k <= --d-sae ({d_sae}), got {options['k']}")
    if not 0 <= options.get("l1_coefficient", 0) < float("inf"):
        raise InputError(
            f"--l1-coefficient must be a finite number >= 0, got {options['l1_coefficient']}"
        )
    lr = options.get("lr", 1e-3)
    if not (0 < lr < float("inf")):
        raise InputError(f"--lr must be a positive number, got {lr}")
    if options.get("batch_size", 1) <= 0:
        raise InputError(f"--batch-size must be positive, got {options['batch_size']}")


def save_sae_folder(sae, out: Path, log_text: str) -> None:
    """The SAE-Lens folder and its training log, written into a staging folder inside ``out`` and moved
    into place file by file (a reader never sees half a model); a write failure is one line."""
    import os
    import shutil

    staging = out / f".train.{os.getpid()}.partial"
    try:
        out.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(staging, ignore_errors=True)
        sae.save_inference_model(staging)
        for item in staging.iterdir():
            item.replace(out / item.name)
        staging.rmdir()
        write_text_atomic(out / "training_log.csv", log_text)
    except OSError as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise InputError(f"cannot write --out {out}: {exc.strerror or exc}") from None
