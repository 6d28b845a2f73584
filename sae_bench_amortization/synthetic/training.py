"""A small, deterministic SAE trainer on SAE-Lens's own training SAEs (their losses and aux losses),
streaming from any activation source: TopK (``TopKTrainingSAE``) or standard L1 (``StandardTrainingSAE``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from sae_lens.saes.sae import SAEMetadata, TrainCoefficientConfig, TrainStepInput
from sae_lens.saes.standard_sae import StandardTrainingSAE, StandardTrainingSAEConfig
from sae_lens.saes.topk_sae import TopKTrainingSAE, TopKTrainingSAEConfig
from tqdm.auto import tqdm

from sae_bench_amortization.errors import InputError

ARCHITECTURES = ("topk", "standard")


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
    k: int | None = None,
    l1_coefficient: float = 5.0,
    batch_size: int = 1024,
    lr: float = 1e-3,
    seed: int = 0,
    dead_after_tokens: int = 20_000,
    metadata: dict | None = None,
    device: str = "cpu",
):
    """Train an SAE-Lens TopK or standard SAE on ``n_tokens`` activations of ``source`` with Adam.

    Decoder bias starts at the mean of the first batch; weights start as SAE-Lens initialises them.
    TopK latents silent for ``dead_after_tokens`` tokens get SAE-Lens's auxiliary loss. Returns the
    SAE-Lens training SAE (``save_inference_model`` writes an inference SAE-Lens folder).
    """
    if architecture not in ARCHITECTURES:
        raise InputError(
            f"--architecture must be one of {', '.join(ARCHITECTURES)}, got '{architecture}'"
        )
    if architecture == "topk" and not (k and k > 0):
        raise InputError("--architecture topk needs --k (a positive integer)")
    if d_sae <= 0 or n_tokens <= 0:
        raise InputError("--d-sae and --n-tokens must be positive")
    torch.manual_seed(seed)
    meta = SAEMetadata(**(metadata or {}))
    if architecture == "topk":
        sae = TopKTrainingSAE(
            TopKTrainingSAEConfig(d_in=source.d_in, d_sae=d_sae, k=k, metadata=meta, device=device)
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
    step = 0
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
            step += 1
            bar.update(x.shape[0])
            bar.set_postfix(mse=f"{output.losses['mse_loss'].item():.3g}")
    return sae


def train_sae_file(
    activations: str | Path,
    architecture: str,
    d_sae: int,
    n_tokens: int,
    out: Path,
    overwrite: bool = False,
    **options: Any,
):
    """``saebench train``: :func:`train_sae` on an activation file (``options``: its keyword arguments),
    saved as an SAE-Lens folder at ``out`` (model and hook names taken from the file's metadata)."""
    from sae_bench_amortization.activations.file import ActivationFile

    source = ActivationFile(activations)
    source.check_finite()
    if out.exists() and not out.is_dir():
        raise InputError(f"--out exists and is not a folder: {out}")
    from sae_bench_amortization.atomic import refuse_existing

    refuse_existing(out, "--out", overwrite)
    if architecture == "topk" and options.get("k") is None:
        raise InputError("--architecture topk needs --k")
    if d_sae <= 0 or n_tokens <= 0:
        raise InputError(f"--d-sae and --n-tokens must be positive, got {d_sae} and {n_tokens}")
    if architecture == "topk" and not 0 < options["k"] <= d_sae:
        raise InputError(f"--k must satisfy 0 < k <= --d-sae ({d_sae}), got {options['k']}")
    if not options.get("l1_coefficient", 0) >= 0:
        raise InputError(f"--l1-coefficient must be >= 0, got {options['l1_coefficient']}")
    meta = source.metadata
    metadata = {
        "model_name": meta.get("model_name") or meta.get("hf_model") or "unknown",
        "hook_name": meta.get("hook_name") or meta.get("hf_module") or "unknown",
    }
    sae = train_sae(source, architecture, d_sae, n_tokens, metadata=metadata, **options)
    sae.save_inference_model(out)
    return sae
