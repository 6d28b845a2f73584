"""How a run names its SAEs and its activation source (as ``saebench run`` does), and the activation
source each names; the fallbacks when none is named are the library entry point's (``api.choose``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from sae_bench_amortization.activations.file import ActivationFileWriter, truth_path
from sae_bench_amortization.activations.models import (
    HFModelActivations,
    TransformerLensActivations,
    load_transformer_lens_model,
)
from sae_bench_amortization.activations.sources import (
    FileActivations,
    HFActivationFactory,
    SkippingFactory,
    TransformerLensActivationFactory,
)
from sae_bench_amortization.activations.text import DEFAULT_DATASET, FORTUNES, TextSettings
from sae_bench_amortization.atomic import refuse_existing
from sae_bench_amortization.errors import InputError
from sae_bench_amortization.sources import saes as loading
from sae_bench_amortization.targets import check_apart, check_creatable

DEFAULT_MODEL_TOKENS = 100_000


@dataclass(frozen=True)
class SAESelection:
    """The SAEs of a run, as ``saebench run`` names them (every field repeatable and mixable)."""

    sae_release: list[str] = field(default_factory=list)  # paired with sae_id, in order
    sae_id: list[str] = field(default_factory=list)
    sae_regex: list[str] = field(default_factory=list)  # paired with sae_block_regex
    sae_block_regex: list[str] = field(default_factory=list)
    sae_path: list[str] = field(default_factory=list)
    sae_name: list[str] = field(default_factory=list)  # names for sae_path, by position

    def specs(self) -> list[loading.SAESpec]:
        if len(self.sae_release) != len(self.sae_id):
            raise InputError(
                f"--sae-release and --sae-id come in pairs: got {len(self.sae_release)} releases and "
                f"{len(self.sae_id)} ids"
            )
        if len(self.sae_regex) != len(self.sae_block_regex):
            raise InputError("--sae-regex and --sae-block-regex come in pairs")
        if len(self.sae_name) > len(self.sae_path):
            raise InputError("--sae-name names a --sae-path: give at most one per --sae-path")
        pairs = zip(self.sae_release, self.sae_id, strict=True)
        specs = [loading.spec_from_release(release, sae_id) for release, sae_id in pairs]
        for release_regex, block_regex in zip(self.sae_regex, self.sae_block_regex, strict=True):
            specs.extend(loading.specs_from_regex(release_regex, block_regex))
        names = self.sae_name + [None] * (len(self.sae_path) - len(self.sae_name))
        specs.extend(
            loading.spec_from_path(path, name)
            for path, name in zip(self.sae_path, names, strict=True)
        )
        return specs


@dataclass(frozen=True)
class SourceSettings:
    """Where activations come from, as ``saebench run`` names it: one of an activation file, a
    TransformerLens model (+ hook), or a transformers model (+ module path); models read ``text``."""

    activations: str | None = None
    model: str | None = None
    hook: str | None = None
    hf_model: str | None = None
    hf_module: str | None = None
    n_tokens: int | None = None
    text: TextSettings = field(default_factory=TextSettings)
    skip_tokens: int = 0  # read after the source's first skip_tokens tokens (a held-out span)

    def flags(self) -> list[str]:
        given = (
            ("--activations", self.activations),
            ("--model", self.model),
            ("--hf-model", self.hf_model),
        )
        return [flag for flag, value in given if value]

    def read_paths(self) -> list[tuple[str, str]]:
        """(flag, path) of every local file or folder this source reads: the activation file and its truth
        sidecar, the text file, a local transformers model folder, a local dataset folder."""

        paths = [("--activations", self.activations), ("--text-file", self.text.text_file)]
        if self.activations:
            paths.append(("--activations' truth sidecar", str(truth_path(self.activations))))
        for flag, value in (("--hf-model", self.hf_model), ("--dataset", self.text.dataset)):
            if value and Path(value).exists():
                paths.append((flag, value))
        return [(flag, path) for flag, path in paths if path]

    @property
    def model_tokens(self) -> int:
        return self.n_tokens or DEFAULT_MODEL_TOKENS

    def factory(self, device: str) -> Any | None:
        """The activation source named here (after its first ``skip_tokens`` tokens), or None when none
        was named."""
        if self.skip_tokens < 0:
            raise InputError(f"--skip-tokens must be >= 0, got {self.skip_tokens}")
        return self.skipped(self._factory(device, self.read_tokens(file=bool(self.activations))))

    def read_tokens(self, file: bool) -> int | None:
        """Tokens the underlying source must yield: the span asked for plus the skipped ones (a file:
        all of it when skipping, the skip-and-take applied after)."""
        if not self.skip_tokens:
            return self.n_tokens if file else self.model_tokens
        return None if file else self.model_tokens + self.skip_tokens

    def skipped(self, factory: Any | None) -> Any | None:
        """``factory`` after its first ``skip_tokens`` tokens (unchanged without a skip)."""

        if factory is None or not self.skip_tokens:
            return factory
        return SkippingFactory(factory, self.skip_tokens, self.n_tokens)

    def _factory(self, device: str, n_tokens: int | None) -> Any | None:

        flags = self.flags()
        if len(flags) > 1:
            raise InputError(f"give one activation source, got {' and '.join(flags)}")
        if self.hf_module and not self.hf_model:
            raise InputError("--hf-module needs --hf-model")
        if self.activations:
            return FileActivations(self.activations, n_tokens)
        if self.hf_model:
            if not self.hf_module:
                raise InputError("--hf-model needs --hf-module (e.g. encoder.layer.3)")
            return HFActivationFactory(
                self.hf_model,
                self.hf_module,
                self.text.texts(FORTUNES),
                n_tokens or self.model_tokens,
                context_size=self.text.context_size,
                device=device,
            )
        if self.model or self.text.dataset or self.text.text_file or self.hook:
            return self.transformer_lens(device, n_tokens)
        return None

    def transformer_lens(self, device: str, n_tokens: int | None = None) -> Any:
        """A TransformerLens source: ``model`` (else each SAE's metadata.model_name) at ``hook`` (else
        each SAE's metadata.hook_name)."""

        return TransformerLensActivationFactory(
            self.model,
            self.text.texts(DEFAULT_DATASET),
            n_tokens or self.model_tokens,
            self.hook,
            self.text.context_size,
            device,
            torch.float32,
        )


def as_spec(item: Any) -> loading.SAESpec:
    """An SAE in any form a library user may hold: an SAESpec, (release, sae_id), (name, SAE), a saved
    folder or ``ae.pt`` path, or an SAE object."""
    if isinstance(item, str | Path):
        return loading.spec_from_path(item)
    if isinstance(item, loading.SAESpec | tuple):
        return loading.as_specs([item])[0]
    if hasattr(item, "cfg") and hasattr(item, "encode"):
        return loading.spec_from_object(item, "custom_sae")
    raise InputError(
        f"cannot select SAE {item!r}: expected a path, (release, sae_id) or (name, SAE)"
    )


def export_activations(
    source: SourceSettings,
    out: Path,
    dtype: str,
    device: str,
    *,
    overwrite: bool = False,
    concepts: bool = True,
) -> tuple[int, int]:
    """Write the activations a model source reads to an activation file (``saebench activations``),
    with the reader's concept labels (``concepts`` [N, C], names in the metadata) unless ``concepts``
    is False; returns (tokens, d_in)."""

    if source.activations:
        raise InputError(
            "'saebench activations' reads a model: use --model or --hf-model, not --activations"
        )
    if len(source.flags()) != 1:
        raise InputError("give exactly one of --model or --hf-model")
    if out.is_dir():
        raise InputError(f"--out is a folder, expected a file path: {out}")
    check_apart({"--out": out}, dict(source.read_paths()))
    check_creatable(out, "--out")
    refuse_existing(out, "--out", overwrite)
    text, n_tokens = source.text, source.model_tokens
    if source.hf_model:
        if not source.hf_module:
            raise InputError("--hf-model needs --hf-module (e.g. encoder.layer.3)")
        reader = HFModelActivations(
            source.hf_model,
            source.hf_module,
            text.texts(FORTUNES),
            n_tokens,
            context_size=text.context_size,
            device=device,
        )
        metadata = {"hf_model": source.hf_model, "hf_module": source.hf_module}
    else:
        if not source.hook:
            raise InputError("--model needs --hook (e.g. blocks.4.hook_resid_post)")
        assert source.model is not None  # one of --model and --hf-model, checked above
        model = load_transformer_lens_model(source.model, device, torch.float32)
        reader = TransformerLensActivations(
            model,
            source.hook,
            text.texts(DEFAULT_DATASET),
            n_tokens,
            context_size=text.context_size,
            model_name=source.model,
        )
        metadata = {"model_name": source.model, "hook_name": source.hook}
    names = reader.concept_names if concepts else None
    with ActivationFileWriter(out, reader.d_in, getattr(torch, dtype), names, metadata) as writer:
        for batch in reader.iter_batches(8192):
            writer.write(batch.acts, batch.concepts if names is not None else None)
    return writer.n_tokens, reader.d_in
