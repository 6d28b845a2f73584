"""The sparse-coding objective of the codes, and the time it took to compute them, streamed."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from sae_bench_amortization.inference.dictionary import Dictionary
from sae_bench_amortization.inference.nnls import refit_on_support
from sae_bench_amortization.inference.objectives import objective_value
from sae_bench_amortization.inference.support_fit import lasso_on_support, too_wide
from sae_bench_amortization.metrics.accumulator import Step
from sae_bench_amortization.metrics.reconstruction import MeanAccumulator


@dataclass(frozen=True)
class ObjectiveResult:
    """mean: the mean over tokens of F(z) = ½‖r − z·D‖² + λ Σ_j w_j z_j (r the sparse-coding targets, w the
    step's weights: 1 for l1, decoder norms for l1_decoder_norm; λ = 0 for k_sparse);
    per_token [N] (float64, CPU): every token's F(z), when kept."""

    mean: float
    per_token: torch.Tensor | None


class Objective:
    """Accumulator: F(z) per token from the step's dictionary, targets and λ → :class:`ObjectiveResult`
    (``keep_per_token``: also every token's value, N float64s)."""

    def __init__(self, keep_per_token: bool = False):
        self.total = MeanAccumulator()
        self.per_token: list[torch.Tensor] | None = [] if keep_per_token else None

    def update(self, step: Step) -> None:
        dictionary, targets = step.sparse_coding()
        values = objective_value(dictionary, targets, step.codes, step.lam, step.weights)
        self.total.update(values)
        if self.per_token is not None:
            self.per_token.append(values.cpu())

    def result(self) -> ObjectiveResult:
        per_token = None
        if self.per_token is not None:
            per_token = torch.cat(self.per_token) if self.per_token else None
        return ObjectiveResult(self.total.mean, per_token)


class ObjectiveOnSupport:
    """Accumulator: the mean over tokens of F at the best codes on each token's own support
    (:mod:`~sae_bench_amortization.inference.support_fit`; the step's problem: ``k_sparse`` NNLS, else the
    restricted lasso, decoder-norm weighted when the step has weights) → :class:`ObjectiveResult`. A
    mode's objective minus this is its coefficient gap."""

    def __init__(self, k_sparse: bool = False):
        self.k_sparse = k_sparse
        self.total = MeanAccumulator()
        self.too_wide = False  # some token's support is wider than 1,024 latents: not measured

    def update(self, step: Step) -> None:
        D, targets = step.sparse_coding()
        codes, weights = step.codes.to(D.dtype), step.weights
        if self.too_wide or (not self.k_sparse and too_wide(codes)):
            self.too_wide = True
            return
        if self.k_sparse:
            best = refit_on_support(D, targets, codes)
        elif weights is None:
            best = lasso_on_support(
                Dictionary(D, targets.new_zeros(D.shape[1])), targets, codes, step.lam
            )
        else:  # l1_decoder_norm: the plain lasso on unit rows, codes scaled by the row norms
            w = weights.to(D.dtype)
            unit = D / torch.where(w > 0, w, 1).unsqueeze(1)
            solved = lasso_on_support(
                Dictionary(unit, targets.new_zeros(D.shape[1])), targets, codes * w, step.lam
            )
            best = torch.where(w > 0, solved / torch.where(w > 0, w, 1), 0)
        self.total.update(objective_value(D, targets, best, step.lam, weights))

    def result(self) -> ObjectiveResult | None:
        """None when some support was too wide to fit (the split is null there)."""
        return None if self.too_wide else ObjectiveResult(self.total.mean, None)


@dataclass(frozen=True)
class TimingResult:
    seconds_per_1k_tokens: float


class Timing:
    """Accumulator: the steps' ``seconds`` per 1,000 tokens → :class:`TimingResult`."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.n_tokens = 0

    def update(self, step: Step) -> None:
        self.seconds += step.seconds
        self.n_tokens += step.n_tokens

    def result(self) -> TimingResult:
        return TimingResult(1000 * self.seconds / max(self.n_tokens, 1))
