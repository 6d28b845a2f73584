"""The one interface of the streaming metrics: a batch step in, a typed result out.

Every metric is an :class:`Accumulator`: ``update(step)`` once per batch (a :class:`Step`: one batch of one
mode's codes), then ``result()`` gives its typed result (a dataclass per accumulator). An eval composes
accumulators per mode; a protocol is a set of them. Pure tensor math: no file or model access.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar

import torch

R = TypeVar("R", covariant=True)
B = TypeVar("B", bound="Batch")


@dataclass(frozen=True)
class Step:
    """One batch of one mode's codes.

    x [B, d_in]: the activations as the codes' decoder reads them (its device and dtype); codes [B, d_sae];
    x_hat [B, d_in]: the decoder's reading of the codes (None when no accumulator of the set needs it);
    concepts [B, C] bool: the tokens' concept labels, or None; inputs [B, d_in]: the activations as the
    source gave them (None: the same as x). For an objective: targets [B, d_in] (the sparse-coding targets
    of x), dictionary [d_sae, d_in] (the decoder's rows as a sparse-coding dictionary), lam (λ) and
    weights [d_sae] (the L1 penalty's per-latent weights: decoder norms for l1_decoder_norm; None: all 1).
    seconds: the time it took to compute the codes.
    """

    x: torch.Tensor
    codes: torch.Tensor
    x_hat: torch.Tensor | None = None
    concepts: torch.Tensor | None = None
    inputs: torch.Tensor | None = None
    targets: torch.Tensor | None = None
    dictionary: torch.Tensor | None = None
    lam: float = 0.0
    weights: torch.Tensor | None = None
    seconds: float = 0.0

    @property
    def n_tokens(self) -> int:
        return self.codes.shape[0]

    @property
    def reconstruction(self) -> torch.Tensor:
        """x̂ [B, d_in]; an error when the step was built without it."""
        if self.x_hat is None:
            raise ValueError("this accumulator needs x_hat, and the step has none")
        return self.x_hat

    @property
    def labels(self) -> torch.Tensor:
        """concepts [B, C] bool; an error when the tokens carry no labels."""
        if self.concepts is None:
            raise ValueError("this accumulator needs concept labels, and the tokens have none")
        return self.concepts

    @property
    def raw_inputs(self) -> torch.Tensor:
        """The activations as the source gave them [B, d_in]."""
        return self.x if self.inputs is None else self.inputs

    def sparse_coding(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(dictionary [d_sae, d_in], targets [B, d_in]); an error when the step has none."""
        if self.dictionary is None or self.targets is None:
            raise ValueError("this accumulator needs the sparse-coding targets and dictionary")
        return self.dictionary, self.targets


class Accumulator(Protocol[R]):
    """A streaming metric: ``update`` once per batch, then ``result``."""

    def update(self, step: Step) -> None: ...

    def result(self) -> R: ...


class Batch(Protocol):
    """What a source yields: acts [B, d_in] and concept labels [B, C] bool or None."""

    acts: torch.Tensor
    concepts: torch.Tensor | None


def encode_stream(
    batches: Iterable[B],
    encode: Callable[[torch.Tensor], torch.Tensor],
    accumulators: Sequence[Accumulator[object]],
    on_codes: Callable[[torch.Tensor, B], None] | None = None,
) -> None:
    """Every batch's codes ``encode(acts)`` into each accumulator (x = the source's acts, no x̂);
    ``on_codes(codes, batch)`` is also told each batch's codes."""
    for batch in batches:
        codes = encode(batch.acts)
        step = Step(x=batch.acts, codes=codes, concepts=batch.concepts)
        for accumulator in accumulators:
            accumulator.update(step)
        if on_codes is not None:
            on_codes(codes, batch)
