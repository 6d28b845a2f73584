"""A small, deterministic TopK SAE trainer on SAE-Lens's own ``TopKTrainingSAE`` (its loss and aux loss)."""

from __future__ import annotations

import torch
from sae_lens.saes.sae import SAEMetadata, TrainCoefficientConfig, TrainStepInput
from sae_lens.saes.topk_sae import TopKTrainingSAE, TopKTrainingSAEConfig
from tqdm.auto import tqdm


def train_topk_sae(
    activations: torch.Tensor,
    d_sae: int,
    k: int,
    n_epochs: int = 4,
    batch_size: int = 1024,
    lr: float = 1e-3,
    seed: int = 0,
    dead_after_tokens: int = 20_000,
    metadata: dict | None = None,
) -> TopKTrainingSAE:
    """Train a TopK SAE on activations [N, d_in] with Adam; returns the SAE-Lens training SAE.

    Decoder bias starts at the data mean; the encoder starts as the decoder's transpose (SAE-Lens's
    init). Latents silent for ``dead_after_tokens`` tokens get SAE-Lens's TopK auxiliary loss.
    """
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    cfg = TopKTrainingSAEConfig(
        d_in=activations.shape[1], d_sae=d_sae, k=k, metadata=SAEMetadata(**(metadata or {}))
    )
    sae = TopKTrainingSAE(cfg)
    with torch.no_grad():
        sae.b_dec.copy_(activations.mean(dim=0))
    optimizer = torch.optim.Adam(sae.parameters(), lr=lr)
    coefficients = {
        name: value.value if isinstance(value, TrainCoefficientConfig) else value
        for name, value in sae.get_coefficients().items()
    }
    tokens_since_fired = torch.zeros(d_sae, dtype=torch.int64)
    n_steps = n_epochs * ((activations.shape[0] + batch_size - 1) // batch_size)
    step = 0
    with tqdm(
        total=n_steps, desc="training TopK SAE", unit="step", leave=False, disable=None
    ) as bar:
        for _ in range(n_epochs):
            order = torch.randperm(activations.shape[0], generator=generator)
            for start in range(0, activations.shape[0], batch_size):
                x = activations[order[start : start + batch_size]]
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
                bar.update(1)
                bar.set_postfix(mse=f"{output.losses['mse_loss'].item():.3g}")
    return sae
