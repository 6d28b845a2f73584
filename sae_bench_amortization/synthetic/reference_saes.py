"""Reference SAEs built from the synthetic ground truth, each with known behaviour.

- ``oracle``: decoder = the true dictionary; encoder = ReLU(x·f_i − θ) per true feature.
- ``dead``: the oracle plus latents that can never fire (zero encoder, bias −1e4).
- ``dense``: the oracle plus latents that fire on every token (zero encoder, bias +1e3).
- ``split``: composite concept 0 is covered by two latents, one per sub-context (its own latent removed).
- ``absorbed``: in hierarchy 0 the child latent's decoder carries the parent direction, and the parent
  latent is gated off whenever the child fires.
Each folder is an SAE-Lens SAE (``save_model``) with ``expected_metrics.json`` beside its weights.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from sae_lens.saes.standard_sae import StandardSAE, StandardSAEConfig

from sae_bench_amortization.synthetic.generator import GroundTruth

THRESHOLD = (
    0.4  # oracle encoder bias: magnitudes ~ N(1, 0.1) (6σ above 0.4), interference mostly below
)
N_DEAD = 16
N_DENSE = 8
METADATA = {
    "model_name": "synthetic",
    "hook_name": "synthetic",
    "context_size": 1,
    "prepend_bos": False,
}


def _sae(
    W_enc: torch.Tensor, b_enc: torch.Tensor, W_dec: torch.Tensor, b_dec: torch.Tensor
) -> StandardSAE:
    """A StandardSAE [d_in → d_sae] with the given weights (b_dec: the true features' bias)."""
    cfg = StandardSAEConfig(d_in=W_dec.shape[1], d_sae=W_dec.shape[0])
    for key, value in METADATA.items():
        setattr(cfg.metadata, key, value)
    sae = StandardSAE(cfg)
    with torch.no_grad():
        sae.W_enc.copy_(W_enc)
        sae.b_enc.copy_(b_enc)
        sae.W_dec.copy_(W_dec)
        sae.b_dec.copy_(b_dec)
    return sae


def _oracle_weights(truth: GroundTruth):
    D = truth.dictionary
    return D.T.clone(), torch.full((D.shape[0],), -THRESHOLD), D.clone(), truth.bias.clone()


def _extra_latents(truth: GroundTruth, n: int, bias: float, seed: int):
    W_enc, b_enc, W_dec, b_dec = _oracle_weights(truth)
    generator = torch.Generator().manual_seed(seed)
    extra_dec = torch.nn.functional.normalize(
        torch.randn(n, W_dec.shape[1], generator=generator), dim=1
    )
    return (
        torch.cat([W_enc, torch.zeros(W_enc.shape[0], n)], dim=1),
        torch.cat([b_enc, torch.full((n,), bias)]),
        torch.cat([W_dec, extra_dec]),
        b_dec,
    )


REFERENCE_NAMES = (
    "oracle",
    "dead",
    "dense",
    "split",
    "absorbed",
)  # the folders write_reference_saes fills


def reference_saes(truth: GroundTruth) -> dict[str, tuple[StandardSAE, dict]]:
    """name → (SAE, expected metrics and planted structure)."""
    F = truth.n_features
    names = truth.concept_names
    saes: dict[str, tuple[StandardSAE, dict]] = {}
    saes["oracle"] = (_sae(*_oracle_weights(truth)), {"dead_rate": 0.0, "dense_rate": 0.0})
    saes["dead"] = (
        _sae(*_extra_latents(truth, N_DEAD, -1e4, seed=1)),
        {
            "dead_rate": N_DEAD / (F + N_DEAD),
            "dense_rate": 0.0,
            "dead_latents": list(range(F, F + N_DEAD)),
        },
    )
    saes["dense"] = (
        _sae(*_extra_latents(truth, N_DENSE, 1e3, seed=2)),
        {
            "dead_rate": 0.0,
            "dense_rate": N_DENSE / (F + N_DENSE),
            "dense_latents": list(range(F, F + N_DENSE)),
        },
    )
    if truth.composites:
        feature = truth.composites[0]
        W_enc, b_enc, W_dec, b_dec = _oracle_weights(truth)
        keep = [i for i in range(F) if i != feature]
        contexts = truth.context_directions[0]  # [2, d_in]
        split_dec = torch.nn.functional.normalize(
            truth.dictionary[feature] + truth.extras.context_scale * contexts, dim=1
        )
        saes["split"] = (
            _sae(
                torch.cat([W_enc[:, keep], contexts.T], dim=1),
                torch.cat([b_enc[keep], torch.full((2,), -THRESHOLD)]),
                torch.cat([W_dec[keep], split_dec]),
                b_dec,
            ),
            {
                "dead_rate": 0.0,
                "dense_rate": 0.0,
                "split_concept": names[feature],
                "split_latents": [F - 1, F],
            },
        )
    if truth.hierarchies:
        parent, child = truth.hierarchies[0]
        W_enc, b_enc, W_dec, b_dec = _oracle_weights(truth)
        # with the child: a_parent − 1.5·a_child − θ < 0 (magnitudes ~ N(1, 0.1), drawn independently);
        # a larger factor would let negative interference on the child direction fire it alone
        W_enc[:, parent] = truth.dictionary[parent] - 1.5 * truth.dictionary[child]
        W_dec[child] = torch.nn.functional.normalize(
            truth.dictionary[child] + truth.dictionary[parent], dim=0
        )
        saes["absorbed"] = (
            _sae(W_enc, b_enc, W_dec, b_dec),
            {
                "dead_rate": 0.0,
                "dense_rate": 0.0,
                "absorbed_concept": names[parent],
                "absorbing_latent": child,
                "parent_latent": parent,
            },
        )
    return saes


def write_reference_saes(truth: GroundTruth, folder: str | Path) -> list[Path]:
    """Save each reference SAE as ``folder/<name>`` (SAE-Lens) with ``expected_metrics.json``."""
    folder = Path(folder)
    written = []
    for name, (sae, expected) in reference_saes(truth).items():
        path = folder / name
        sae.save_model(path)
        (path / "expected_metrics.json").write_text(json.dumps(expected, indent=2))
        written.append(path)
    return written
