"""The sparse-coding objective of the codes, and the time it took to compute them, streamed."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from sae_bench_amortization.inference.solver import objective
from sae_bench_amortization.metrics.accumulator import Step
from sae_bench_amortization.metrics.reconstruction import MeanAccumulator


@dataclass(frozen=True)
class ObjectiveResult:
    """mean: the mean over tokens of F(z) = ½‖r − z·D‖² + λ‖z‖₁ (r the sparse-coding targets);
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
        values = objective(dictionary, targets, step.codes, step.lam)
        self.total.update(values)
        if self.per_token is not None:
            self.per_token.append(values.cpu())

    def result(self) -> ObjectiveResult:
        per_token = None
        if self.per_token is not None:
            per_token = torch.cat(self.per_token) if self.per_token else None
        return ObjectiveResult(self.total.mean, per_token)


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
