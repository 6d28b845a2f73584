"""SAE-Lens's ground-truth metrics (``sae_lens.synthetic.evals``) for the codes of any inference mode.

``eval_sae_on_synthetic_data`` reads SAE-Lens's own sampler and ``sae.encode``; here the same calculators
take the codes a mode produced on the tokens of the benchmark, so amortized, semi-amortized,
non-amortized and LocA codes are scored alike against the planted features:

* ``mcc``: mean |cos| of the Hungarian matching between decoder rows and true features (the decoder's);
* ``uniqueness``: distinct true features matched by the latents / latents (the decoder's);
* ``dead_latents``: latents these codes never fire; ``sae_l0`` / ``true_l0``: mean active per token;
* ``shrinkage``: mean ‖x̂‖ / ‖x‖;
* ``precision`` / ``recall`` / ``f1`` / ``accuracy``: each latent as a detector of its best-matching true
  feature (by decoder cosine), averaged over latents.

Both decoder metrics build a [d_sae, F] cosine matrix: above :data:`MAX_PAIRS` entries they are null
with the reason (the benchmark has hundreds of features; a 1M-latent SAE on it would not fit).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

import torch
from sae_lens.synthetic import (
    ClassificationMetricsCalculator,
    DeadLatentsCalculator,
    L0Calculator,
    ShrinkageCalculator,
    feature_uniqueness,
    mean_correlation_coefficient,
)

from sae_bench_amortization.metrics.accumulator import Step

MAX_PAIRS = 2**26  # [d_sae, F] float32 cosine matrix of at most 256 MiB
METRICS = (
    "mcc",
    "uniqueness",
    "dead_latents",
    "dead_fraction",
    "sae_l0",
    "true_l0",
    "shrinkage",
    "precision",
    "recall",
    "f1",
    "accuracy",
)


class GroundTruthAccumulator:
    """Streams (codes, x, x̂, true firings) of one mode; :meth:`metrics` gives SAE-Lens's numbers.

    W_dec [d_sae, d_in] (the decoder reading the codes), features [F, d_in] (the true dictionary)."""

    def __init__(self, W_dec: torch.Tensor, features: torch.Tensor):
        self.W_dec = W_dec.detach().float().cpu()
        self.features = features.detach().float().cpu()
        self.d_sae, self.n_features = self.W_dec.shape[0], self.features.shape[0]
        self.too_large = self.d_sae * self.n_features > MAX_PAIRS
        self.sae_l0, self.true_l0 = L0Calculator(), L0Calculator()
        self.dead = DeadLatentsCalculator(self.d_sae)
        self.shrinkage = ShrinkageCalculator()
        self.classification = (
            None if self.too_large else ClassificationMetricsCalculator(self.W_dec, self.features)
        )

    def update(
        self, codes: torch.Tensor, x: torch.Tensor, x_hat: torch.Tensor, fires: torch.Tensor
    ) -> None:
        """codes [B, d_sae]; x, x_hat [B, d_in]; fires [B, F] bool (which true features are active)."""
        codes = codes.detach().float().cpu()
        fires = fires[:, : self.n_features].cpu().float()
        self.sae_l0.add_batch(codes)
        self.true_l0.add_batch(fires)
        self.dead.add_batch(codes)
        self.shrinkage.add_batch(x_hat.detach().float().cpu(), x.detach().float().cpu())
        if self.classification is not None:
            self.classification.add_batch(codes, fires)

    def metrics(self) -> dict[str, Any]:
        """The numbers of :data:`METRICS`, plus ``undefined`` {metric: reason} for the null ones."""
        dead = self.dead.compute()
        result: dict[str, Any] = {
            "sae_l0": self.sae_l0.compute(),
            "true_l0": self.true_l0.compute(),
            "dead_latents": dead,
            "dead_fraction": dead / self.d_sae,
            "shrinkage": self.shrinkage.compute() if self.shrinkage.num_samples else None,
            "n_true_features": self.n_features,
        }
        undefined = {}
        if self.sae_l0.num_samples == 0:
            undefined = {name: "no tokens" for name in METRICS}
            result.update(dict.fromkeys(METRICS))
        elif self.too_large:
            why = (
                f"d_sae × true features = {self.d_sae} × {self.n_features} is above {MAX_PAIRS} "
                "(SAE-Lens's metrics build the full cosine matrix)"
            )
            for name in ("mcc", "uniqueness", "precision", "recall", "f1", "accuracy"):
                result[name], undefined[name] = None, why
        else:
            result["mcc"] = mean_correlation_coefficient(self.W_dec, self.features)
            result["uniqueness"] = feature_uniqueness(self.W_dec, self.features)
            assert self.classification is not None
            scores = self.classification.compute()
            result.update(
                precision=scores.precision,
                recall=scores.recall,
                f1=scores.f1_score,
                accuracy=scores.accuracy,
            )
        if result.get("shrinkage") is None and "shrinkage" not in undefined:
            undefined["shrinkage"] = "every input has zero norm"
        result["undefined"] = undefined or None
        return result


@dataclass(frozen=True)
class GroundTruthResult:
    """:meth:`GroundTruthAccumulator.metrics` as fields (``undefined``: {metric: why it is null})."""

    sae_l0: float | None
    true_l0: float | None
    dead_latents: int | None
    dead_fraction: float | None
    shrinkage: float | None
    n_true_features: int
    mcc: float | None
    uniqueness: float | None
    precision: float | None
    recall: float | None
    f1: float | None
    accuracy: float | None
    undefined: dict[str, str] | None

    def as_dict(self) -> dict[str, Any]:
        """The fields as :meth:`GroundTruthAccumulator.metrics` gives them."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


class GroundTruth:
    """Accumulator: (codes, x, x̂, the true features' firings = the first F concept columns) of each step
    against the planted dictionary → :class:`GroundTruthResult`. W_dec [d_sae, d_in], features [F, d_in]."""

    def __init__(self, W_dec: torch.Tensor, features: torch.Tensor):
        self.sums = GroundTruthAccumulator(W_dec, features)

    def update(self, step: Step) -> None:
        self.sums.update(step.codes, step.x, step.reconstruction, step.labels)

    def result(self) -> GroundTruthResult:
        return GroundTruthResult(**self.sums.metrics())
