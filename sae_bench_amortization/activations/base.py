"""What every activation source yields: fixed-size chunks of activations, with concept labels if known."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

import torch

from sae_bench_amortization.errors import InputError


@dataclass
class ActivationBatch:
    """One chunk of tokens.

    acts: [B, d_in] float activations.
    concepts: [B, C] bool concept labels (1 = concept present at that token), or None.
    """

    acts: torch.Tensor
    concepts: torch.Tensor | None = None


class ActivationSource(Protocol):
    """Anything that streams activations of one width in chunks; iterating again restarts it."""

    d_in: int
    concept_names: list[str] | None

    def describe(self) -> str:
        """One line naming the source (goes into eval_config)."""
        ...

    def iter_batches(self, batch_size: int) -> Iterator[ActivationBatch]:
        """Yield chunks of at most ``batch_size`` tokens; memory does not grow with the token count."""
        ...


def take_tokens(
    batches: Iterator[ActivationBatch], n_tokens: int | None
) -> Iterator[ActivationBatch]:
    """Truncate a stream of chunks to ``n_tokens`` tokens in total (None: no limit)."""
    if n_tokens is None:
        yield from batches
        return
    remaining = n_tokens
    for batch in batches:
        if remaining <= 0:
            return
        if batch.acts.shape[0] > remaining:
            concepts = None if batch.concepts is None else batch.concepts[:remaining]
            batch = ActivationBatch(batch.acts[:remaining], concepts)
        remaining -= batch.acts.shape[0]
        yield batch


def rechunk(chunks: Iterator[torch.Tensor], batch_size: int) -> Iterator[torch.Tensor]:
    """Re-cut a stream of [n_i, d] tensors into [batch_size, d] tensors (the last may be shorter)."""
    pending: list[torch.Tensor] = []
    n_pending = 0
    for chunk in chunks:
        pending.append(chunk)
        n_pending += chunk.shape[0]
        while n_pending >= batch_size:
            joined = torch.cat(pending)
            yield joined[:batch_size]
            rest = joined[batch_size:]
            pending, n_pending = ([rest], rest.shape[0]) if rest.shape[0] else ([], 0)
    if n_pending:
        yield torch.cat(pending)


def require_concepts(source: ActivationSource, eval_name: str) -> None:
    """One-line error when the activation source carries no concept labels."""

    if not source.concept_names:
        raise InputError(
            f"{eval_name} needs concept labels: use an activation file with 'concepts' (e.g. from "
            f"'saebench synth') or the embedded default; {source.describe()} has none"
        )
