"""Activation sources per SAE: one object gives each SAE the activations it reads.

A file gives every SAE the same tokens; a model source reads the hook each SAE was trained on
(``--hook`` or the SAE's ``metadata.hook_name``) and keeps loaded models for the next SAE.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from sae_bench_amortization.activations.base import ActivationBatch, ActivationSource, take_tokens
from sae_bench_amortization.activations.file import ActivationFile
from sae_bench_amortization.activations.models import (
    HFModelActivations,
    TextFactory,
    TransformerLensActivations,
    load_transformer_lens_model,
)
from sae_bench_amortization.digest import tensors_digest
from sae_bench_amortization.errors import InputError


class TruncatedSource:
    """The first ``n_tokens`` tokens of another source."""

    def __init__(self, source: ActivationSource, n_tokens: int):
        self.source, self.n_tokens = source, n_tokens
        self.d_in, self.concept_names = source.d_in, source.concept_names

    def describe(self) -> str:
        return f"{self.source.describe()}, first {self.n_tokens} tokens"

    def identity(self) -> dict:
        return {**source_identity(self.source), "n_tokens": self.n_tokens}

    def iter_batches(self, batch_size: int) -> Iterator[ActivationBatch]:
        return take_tokens(self.source.iter_batches(batch_size), self.n_tokens)


class SkippedSource:
    """Another source after its first ``skip`` tokens (a held-out span), at most ``n_tokens`` of them."""

    def __init__(self, source: ActivationSource, skip: int, n_tokens: int | None = None):
        self.source, self.skip, self.limit = source, skip, n_tokens
        self.d_in, self.concept_names = source.d_in, source.concept_names
        total = getattr(source, "n_tokens", None)
        if total is not None:
            if skip >= total:
                raise InputError(f"--skip-tokens {skip} skips every token of {source.describe()}")
            self.n_tokens = total - skip if n_tokens is None else min(n_tokens, total - skip)
        elif n_tokens is not None:
            self.n_tokens = n_tokens

    def describe(self) -> str:
        return f"{self.source.describe()}, after its first {self.skip} tokens"

    def identity(self) -> dict:
        return {**source_identity(self.source), "skip_tokens": self.skip, "n_tokens": self.limit}

    def iter_batches(self, batch_size: int) -> Iterator[ActivationBatch]:
        def after_skip() -> Iterator[ActivationBatch]:
            seek = getattr(self.source, "iter_batches_from", None)
            if seek is not None:  # a file: start at the first kept row, read nothing before it
                yield from seek(self.skip, batch_size)
                return
            seen = 0
            for batch in self.source.iter_batches(batch_size):
                n = batch.acts.shape[0]
                if seen + n > self.skip:
                    keep = max(self.skip - seen, 0)
                    concepts = None if batch.concepts is None else batch.concepts[keep:]
                    yield ActivationBatch(batch.acts[keep:], concepts)
                seen += n

        return take_tokens(after_skip(), self.limit)  # chunks of at most batch_size tokens


class SkippingFactory:
    """A factory's sources after their first ``skip`` tokens (``n_tokens`` of them at most)."""

    def __init__(self, factory: Any, skip: int, n_tokens: int | None = None):
        self.factory, self.skip, self.n_tokens = factory, skip, n_tokens
        self._sources: dict[int, SkippedSource] = {}

    def for_sae(self, sae: Any) -> ActivationSource:
        inner = self.factory.for_sae(sae)
        if id(inner) not in self._sources:
            self._sources.clear()
            self._sources[id(inner)] = SkippedSource(inner, self.skip, self.n_tokens)
        return self._sources[id(inner)]

    def unload(self) -> None:
        self._sources.clear()
        if hasattr(self.factory, "unload"):
            self.factory.unload()


class CountingSource:
    """Another source, counting what each pass over it yields: ``tokens_read`` is the longest pass (what an
    eval recorded as its ``n_tokens`` read). With ``progress`` a bar over the tokens (on a terminal)."""

    def __init__(self, source: ActivationSource, progress: str | None = None):
        self.source, self.progress, self.tokens_read = source, progress, 0
        self.d_in, self.concept_names = source.d_in, source.concept_names

    def __getattr__(
        self, name: str
    ) -> Any:  # the wrapped source's own attributes (model, hook_name, ...)
        return getattr(self.__dict__["source"], name)

    def describe(self) -> str:
        return self.source.describe()

    def identity(self) -> dict:
        return source_identity(self.source)

    def iter_batches(self, batch_size: int) -> Iterator[ActivationBatch]:
        seen = 0
        total = getattr(self.source, "n_tokens", None)
        with tqdm(total=total, desc=self.progress, unit="tok", leave=False,
                  disable=None if self.progress else True) as bar:  # fmt: skip
            for batch in self.source.iter_batches(batch_size):
                seen += batch.acts.shape[0]
                self.tokens_read = max(self.tokens_read, seen)
                bar.update(batch.acts.shape[0])
                yield batch


@dataclass
class FileActivations:
    """``--activations FILE``: the same tokens for every SAE."""

    path: str
    n_tokens: int | None = None

    def __post_init__(self) -> None:
        if self.n_tokens is not None and self.n_tokens <= 0:
            raise InputError(f"--n-tokens must be positive, got {self.n_tokens}")
        file = ActivationFile(self.path)
        file.check_finite()
        self.source: ActivationSource = file
        if self.n_tokens is not None and self.n_tokens < file.n_tokens:
            self.source = TruncatedSource(file, self.n_tokens)
        elif self.n_tokens is not None and self.n_tokens > file.n_tokens:
            print(
                f"note: --n-tokens {self.n_tokens} asks for more than {self.path} holds: reading its "
                f"{file.n_tokens} tokens",
                file=sys.stderr,
            )

    def for_sae(self, sae: Any) -> ActivationSource:
        return self.source


def _sae_meta(sae: Any, key: str) -> Any:
    return getattr(sae.cfg.metadata, key, None)


@dataclass
class TransformerLensActivationFactory:
    """``--model NAME [--hook HOOK]``: a TransformerLens model read at each SAE's hook."""

    model_name: str | None
    texts: TextFactory
    n_tokens: int
    hook: str | None = None
    context_size: int = 128
    device: str = "cpu"
    dtype: torch.dtype = torch.float32
    _models: dict[str, Any] = field(default_factory=dict)
    _sources: dict[tuple, Any] = field(default_factory=dict)

    def model(self, name: str) -> Any:
        if name not in self._models:
            self._models.clear()  # one model in memory at a time
            self._sources.clear()
            self._models[name] = load_transformer_lens_model(name, self.device, self.dtype)
        return self._models[name]

    def unload(self) -> None:
        """Drop the models loaded so far (before this factory is sent to Ray workers)."""
        self._models.clear()
        self._sources.clear()

    def for_sae(self, sae: Any) -> ActivationSource:
        name = self.model_name or _sae_meta(sae, "model_name")
        hook = self.hook or _sae_meta(sae, "hook_name")
        if not name:
            raise InputError("the SAE names no model (metadata.model_name): pass --model NAME")
        if not hook:
            raise InputError("the SAE names no hook (metadata.hook_name): pass --hook HOOK")
        context = min(int(_sae_meta(sae, "context_size") or self.context_size), self.context_size)
        key = (name, hook, context)
        if (
            key not in self._sources
        ):  # one reader per model/hook: evals ask for it several times per SAE
            self._sources[key] = self._reader(name, hook, context)
        return self._sources[key]

    def _reader(self, name: str, hook: str, context: int) -> ActivationSource:
        return TransformerLensActivations(
            self.model(name),
            hook,
            self.texts,
            self.n_tokens,
            context_size=context,
            model_name=name,
        )


class HFActivationFactory:
    """``--hf-model PATH --hf-module MODULE``: one transformers model at one module for every SAE
    (arguments as :class:`HFModelActivations`)."""

    def __init__(self, *args: Any, **kwargs: Any):
        self.source = HFModelActivations(*args, **kwargs)

    def for_sae(self, sae: Any) -> ActivationSource:
        return self.source


def source_identity(source: ActivationSource) -> dict:
    """What determines the activations a source yields (``identity()``; else its one-line description)."""
    identity = getattr(source, "identity", None)
    found = identity() if callable(identity) else None
    return found if isinstance(found, dict) else {"describe": source.describe()}


def check_width(sae: Any, source: ActivationSource) -> None:
    """One-line error when the SAE's d_in is not the activation width."""
    if int(sae.cfg.d_in) != int(source.d_in):
        raise InputError(
            f"SAE d_in is {sae.cfg.d_in} but the activations have width {source.d_in} ({source.describe()})"
        )


class TensorActivations:
    """An in-memory activation tensor [N, d_in] as an activation source."""

    concept_names: list[str] | None = None

    def __init__(self, acts: torch.Tensor):
        if acts.ndim != 2:
            raise InputError(
                f"activations must be a [N, d_in] tensor, got shape {tuple(acts.shape)}"
            )
        self.acts, self.d_in = acts, int(acts.shape[1])

    def describe(self) -> str:
        return f"in-memory tensor ({self.acts.shape[0]} tokens)"

    def identity(self) -> dict:

        return {
            "tensor_sha256": tensors_digest({"activations": self.acts}),
            "n_tokens": self.acts.shape[0],
        }

    def iter_batches(self, batch_size: int) -> Iterator[ActivationBatch]:
        for start in range(0, self.acts.shape[0], batch_size):
            yield ActivationBatch(self.acts[start : start + batch_size])


def as_source(activations: Any, sae: Any = None, n_tokens: int | None = None):
    """A tensor [N, d_in], an activation-file path, an activation source or a factory (``for_sae``)
    → an activation source (its first ``n_tokens`` tokens when given)."""
    if isinstance(activations, torch.Tensor):
        source = TensorActivations(activations)
    elif isinstance(activations, str | Path):
        source = FileActivations(str(activations)).source
    elif hasattr(activations, "for_sae"):
        source = activations.for_sae(sae)
    elif hasattr(activations, "iter_batches"):
        source = activations
    else:
        raise InputError(
            f"activations must be a tensor, a file path or an activation source, got {type(activations).__name__}"
        )
    if sae is not None and source.d_in != sae.cfg.d_in:
        raise InputError(f"activations have d_in {source.d_in} but the SAE has d_in {sae.cfg.d_in}")
    return source if n_tokens is None else TruncatedSource(source, n_tokens)
