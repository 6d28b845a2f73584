"""Support quality without shrinkage: each token's codes refitted by non-negative least squares on their own
support (same decoder; :func:`~sae_bench_amortization.inference.nnls.refit_on_support`), so that modes can
be compared on *which* latents they pick, apart from how much an L1 penalty shrinks the coefficients."""

from __future__ import annotations

from collections.abc import Callable

import torch

from sae_bench_amortization.inference.nnls import refit_on_support
from sae_bench_amortization.metrics.accumulator import Step
from sae_bench_amortization.metrics.reconstruction import (
    ReconstructionAccumulator,
    ReconstructionResult,
)

__all__ = ["RefitReconstruction", "refit_on_support"]


class RefitReconstruction:
    """Accumulator: the reconstruction of each step's codes refitted on their support (the step's
    dictionary and targets) → :class:`ReconstructionResult`. ``decode``: codes [n, d_sae] → x̂ [n, d_in]
    (the decoder of the codes). Refitted codes are built and decoded ``token_budget`` bytes of dense
    [group, d_sae] float32 codes at a time: no second chunk-sized code buffer."""

    def __init__(
        self,
        decode: Callable[[torch.Tensor], torch.Tensor],
        d_sae: int,
        token_budget: int = 256 * 2**20,
    ):
        self.decode, self.sums = decode, ReconstructionAccumulator()
        self.group = max(1, token_budget // (4 * d_sae))

    def update(self, step: Step) -> None:
        dictionary, targets = step.sparse_coding()
        for start in range(0, step.n_tokens, self.group):
            rows = slice(start, start + self.group)
            refit = refit_on_support(dictionary, targets[rows], step.codes[rows])
            self.sums.update(step.x[rows], self.decode(refit))

    def result(self) -> ReconstructionResult:
        return ReconstructionResult.of(self.sums)
