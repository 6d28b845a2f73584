"""The ground-truth tap: on a synthetic source, an eval hands each batch's codes to it and the result gets
SAE-Lens's synthetic metrics for those codes (``eval_result_metrics["ground_truth"]``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from sae_bench_amortization.activations.base import ActivationBatch, ActivationSource
from sae_bench_amortization.digest import file_digest
from sae_bench_amortization.inference.dictionary import decode
from sae_bench_amortization.metrics.ground_truth import GroundTruthAccumulator
from sae_bench_amortization.synthetic.generator import GroundTruth, ground_truth_of, truth_path

if TYPE_CHECKING:  # annotations only: SAE-Lens loads with the SAE
    from sae_lens import SAE


class GroundTruthTap:
    """Codes of one SAE (× mode) against the planted truth; ``sae`` decodes them."""

    def __init__(self, sae: SAE, features: torch.Tensor):
        self.sae = sae
        self.accumulator = GroundTruthAccumulator(sae.W_dec, features)

    def __call__(self, codes: torch.Tensor, batch: ActivationBatch) -> None:
        """codes [B, d_sae] of ``batch`` (an ActivationBatch whose first F concept columns are the true
        features' firings)."""
        if batch.concepts is None:  # never: a tap is made only for a source with concept labels
            raise ValueError("the ground-truth tap needs the batch's concept labels")
        x = batch.acts.to(device=codes.device, dtype=codes.dtype)
        with torch.no_grad():
            x_hat = decode(self.sae, codes)  # zero decoder rows: no 0/0 (inference.dictionary)
        self.accumulator.update(codes, x, x_hat, batch.concepts)

    @property
    def used(self) -> bool:
        return self.accumulator.sae_l0.num_samples > 0

    def metrics(self) -> dict[str, Any]:
        return self.accumulator.metrics()


def truth_for(sae: SAE, source: ActivationSource) -> GroundTruth | None:
    """The planted truth behind ``source`` when it has one of ``sae``'s width and the source carries its
    concept labels; None otherwise."""
    truth = ground_truth_of(source)
    if truth is None or truth.d_in != sae.W_dec.shape[1] or not source.concept_names:
        return None
    return truth


def tap_for(sae: SAE, source: ActivationSource) -> GroundTruthTap | None:
    """A tap when ``source`` has planted truth of ``sae``'s width (None otherwise)."""
    truth = truth_for(sae, source)
    return None if truth is None else GroundTruthTap(sae, truth.dictionary)


def truth_identity(sae: SAE, source: ActivationSource) -> dict[str, str] | None:
    """What the ground-truth metrics of ``sae`` on ``source`` are read from, for the fingerprint: the truth
    sidecar's SHA-256 beside an activation file (a synthetic stream's truth is in its own identity);
    None when there is no truth to use."""
    if truth_for(sae, source) is None:
        return None
    inner: object = (
        source  # wrappers keep the source they wrap in ``source`` (as ground_truth_of reads it)
    )
    while "source" in vars(inner):
        inner = vars(inner)["source"]
    path = getattr(inner, "path", None)
    return None if path is None else {"truth_sha256": file_digest(truth_path(path))}
