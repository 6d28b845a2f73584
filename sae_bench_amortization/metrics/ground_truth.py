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

from dataclasses import dataclass, fields, replace

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
DECODER_METRICS = ("mcc", "uniqueness", "precision", "recall", "f1", "accuracy")  # need the cosines

MetricValue = float | int | dict[str, str] | None  # a metric, or ``undefined``: {metric: reason}


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

    def result(self) -> GroundTruthResult:
        """The numbers of :data:`METRICS`, with ``undefined`` {metric: reason} for the null ones."""
        dead = self.dead.compute()
        result = GroundTruthResult(
            sae_l0=self.sae_l0.compute(),
            true_l0=self.true_l0.compute(),
            dead_latents=dead,
            dead_fraction=dead / self.d_sae,
            shrinkage=self.shrinkage.compute() if self.shrinkage.num_samples else None,
            n_true_features=self.n_features,
        )
        undefined: dict[str, str] = {}
        if self.sae_l0.num_samples == 0:
            undefined = {name: "no tokens" for name in METRICS}
            result = replace(result, **dict.fromkeys(METRICS))
        elif self.too_large or self.classification is None:
            why = (
                f"d_sae × true features = {self.d_sae} × {self.n_features} is above {MAX_PAIRS} "
                "(SAE-Lens's metrics build the full cosine matrix)"
            )
            undefined = dict.fromkeys(DECODER_METRICS, why)
        else:
            scores = self.classification.compute()
            result = replace(
                result,
                mcc=mean_correlation_coefficient(self.W_dec, self.features),
                uniqueness=feature_uniqueness(self.W_dec, self.features),
                precision=scores.precision,
                recall=scores.recall,
                f1=scores.f1_score,
                accuracy=scores.accuracy,
            )
        if result.shrinkage is None and "shrinkage" not in undefined:
            undefined["shrinkage"] = "every input has zero norm"
        return replace(result, undefined=undefined or None)

    def metrics(self) -> dict[str, MetricValue]:
        """:meth:`result` as a dict: the numbers of :data:`METRICS`, ``n_true_features`` and
        ``undefined``."""
        return self.result().as_dict()


@dataclass(frozen=True)
class GroundTruthResult:
    """SAE-Lens's metrics of one mode's codes (``undefined``: {metric: why it is null})."""

    sae_l0: float | None
    true_l0: float | None
    dead_latents: int | None
    dead_fraction: float | None
    shrinkage: float | None
    n_true_features: int
    mcc: float | None = None
    uniqueness: float | None = None
    precision: float | None = None
    recall: float | None = None
    f1: float | None = None
    accuracy: float | None = None
    undefined: dict[str, str] | None = None

    def as_dict(self) -> dict[str, MetricValue]:
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
        return self.sums.result()
