"""The activation file: a safetensors file, read and written in chunks (memory does not grow with N).

Public format:
  tensor ``activations``  float16 / bfloat16 / float32, shape [N, d_in]
  tensor ``concepts``     optional, bool / uint8 / int, shape [N, C]; 1 = concept present at that token
  metadata ``concept_names``  optional, JSON list of C strings
"""

from __future__ import annotations

import json
import os
import struct
import tempfile
from collections.abc import Iterator
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open

from sae_bench_amortization.activations.base import ActivationBatch
from sae_bench_amortization.atomic import clean_stale_temporaries, temporary_prefix
from sae_bench_amortization.digest import file_digest
from sae_bench_amortization.errors import InputError

ACTIVATION_DTYPES = {"F16": torch.float16, "BF16": torch.bfloat16, "F32": torch.float32}
CONCEPT_DTYPES = {"BOOL", "U8", "I8", "I16", "I32", "I64"}
_ST_DTYPE = {torch.float16: "F16", torch.bfloat16: "BF16", torch.float32: "F32", torch.bool: "BOOL"}


class ActivationFile:
    """A validated activation file that streams :class:`ActivationBatch` chunks.

    Opening checks the structure only (names, shapes, dtypes, concept names);
    :meth:`check_finite` scans the values.
    """

    def __init__(self, path: str | os.PathLike[str]):
        self.path = Path(path)
        if not self.path.exists():
            raise InputError(f"activation file not found: {self.path}")
        if not self.path.is_file():
            raise InputError(f"activation file is not a file: {self.path}")
        try:
            with safe_open(str(self.path), framework="pt") as handle:
                keys = set(handle.keys())
                metadata = handle.metadata() or {}
                shapes = {key: handle.get_slice(key).get_shape() for key in keys}
                dtypes = {key: handle.get_slice(key).get_dtype() for key in keys}
        except (SafetensorError, OSError, ValueError) as exc:
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise InputError(f"{self.path}: not a readable safetensors file ({reason})") from None
        self.metadata: dict[str, str] = dict(metadata)
        self._validate(keys, shapes, dtypes, metadata)

    def _validate(self, keys, shapes, dtypes, metadata) -> None:
        where = str(self.path)
        if "activations" not in keys:
            raise InputError(
                f"{where}: no tensor named 'activations' (found: {sorted(keys) or 'none'})"
            )
        shape = shapes["activations"]
        if len(shape) != 2:
            raise InputError(
                f"{where}: 'activations' must be 2-D [N, d_in], got shape {list(shape)}"
            )
        if dtypes["activations"] not in ACTIVATION_DTYPES:
            raise InputError(
                f"{where}: 'activations' has dtype {dtypes['activations']}; expected float16, bfloat16 or float32"
            )
        self.n_tokens, self.d_in = int(shape[0]), int(shape[1])
        if self.n_tokens == 0 or self.d_in == 0:
            raise InputError(f"{where}: 'activations' is empty (shape {list(shape)})")
        self.has_concepts = "concepts" in keys
        self._concept_dtype = None
        self.concept_names: list[str] | None = None
        if not self.has_concepts:
            return
        c_shape = shapes["concepts"]
        if len(c_shape) != 2 or c_shape[0] != self.n_tokens:
            raise InputError(
                f"{where}: 'concepts' must have shape [{self.n_tokens}, C] like 'activations', got {list(c_shape)}"
            )
        if dtypes["concepts"] not in CONCEPT_DTYPES:
            raise InputError(
                f"{where}: 'concepts' has dtype {dtypes['concepts']}; expected bool or integer"
            )
        self._concept_dtype = dtypes["concepts"]
        n_concepts = int(c_shape[1])
        raw_names = metadata.get("concept_names")
        if raw_names is None:
            self.concept_names = [f"concept_{i}" for i in range(n_concepts)]
            return
        try:
            names = json.loads(raw_names)
        except json.JSONDecodeError:
            raise InputError(f"{where}: metadata 'concept_names' is not valid JSON") from None
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise InputError(f"{where}: metadata 'concept_names' must be a JSON list of strings")
        if len(names) != n_concepts:
            raise InputError(
                f"{where}: 'concept_names' has {len(names)} names but 'concepts' has {n_concepts} columns"
            )
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise InputError(
                f"{where}: 'concept_names' repeats {', '.join(repr(n) for n in repeated[:3])}: each "
                "concept needs its own name"
            )
        self.concept_names = names

    def describe(self) -> str:
        return f"activation file {self.path} ({self.n_tokens} tokens, d_in {self.d_in})"

    def identity(self) -> dict:
        """The file's content (SHA-256) and token count: what results read from it depend on."""

        return {"activation_file_sha256": file_digest(self.path), "n_tokens": self.n_tokens}

    def _chunks(
        self, batch_size: int, first: int = 0
    ) -> Iterator[tuple[int, torch.Tensor, torch.Tensor | None]]:
        """(first row, float32 activations [b, d_in], concept labels as stored [b, C] or None), from
        row ``first`` on."""
        with safe_open(str(self.path), framework="pt") as handle:
            acts = handle.get_slice("activations")
            concepts = handle.get_slice("concepts") if self.has_concepts else None
            for start in range(first, self.n_tokens, batch_size):
                stop = min(start + batch_size, self.n_tokens)
                labels = None if concepts is None else concepts[start:stop]
                yield start, acts[start:stop].to(torch.float32), labels

    def iter_batches(self, batch_size: int) -> Iterator[ActivationBatch]:
        """Yield float32 activation chunks (and bool concept chunks) of ``batch_size`` rows."""
        return self.iter_batches_from(0, batch_size)

    def iter_batches_from(self, first: int, batch_size: int) -> Iterator[ActivationBatch]:
        """:meth:`iter_batches` from row ``first`` on: rows before it are never read."""
        for _, chunk, labels in self._chunks(batch_size, first):
            yield ActivationBatch(chunk, None if labels is None else labels.to(torch.bool))

    def check_finite(self, batch_size: int = 8192) -> None:
        """Raise InputError naming how many values are NaN/Inf and where the first one is, or naming a
        concept label other than 0/1 (one pass over the file)."""
        n_nan = n_inf = 0
        first: tuple[int, int] | None = None
        for start, acts, labels in self._chunks(batch_size):
            if labels is not None and self._concept_dtype != "BOOL":
                self._check_binary(start, labels)
            bad = ~torch.isfinite(acts)
            if bad.any():
                n_nan += int(torch.isnan(acts).sum())
                n_inf += int(torch.isinf(acts).sum())
                if first is None:
                    r, c = (int(i) for i in bad.nonzero()[0])
                    first = (start + r, c)
        if first is not None:
            raise InputError(
                f"{self.path}: activations contain {n_nan} NaN and {n_inf} Inf values; "
                f"first at token {first[0]}, dimension {first[1]}"
            )

    def _check_binary(self, start: int, labels: torch.Tensor) -> None:
        bad = (labels != 0) & (labels != 1)
        if bool(bad.any()):
            row, column = (int(i) for i in bad.nonzero()[0])
            raise InputError(
                f"{self.path}: concept labels must be 0 or 1, found {int(labels[row, column])} at "
                f"token {start + row}, concept '{(self.concept_names or [])[column]}'"
            )


class ActivationFileWriter:
    """Write an activation file chunk by chunk, atomically (temporary files, then one rename).

    Usage::

        with ActivationFileWriter(path, d_in=384) as writer:
            for acts in chunks:
                writer.write(acts)            # acts [B, d_in]; concepts [B, C] if concept_names given
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        d_in: int,
        dtype: torch.dtype = torch.float32,
        concept_names: list[str] | None = None,
        metadata: dict[str, str] | None = None,
    ):
        if dtype not in (torch.float16, torch.bfloat16, torch.float32):
            raise InputError(f"activation dtype must be float16, bfloat16 or float32, got {dtype}")
        self.path = Path(path)
        self.d_in, self.dtype, self.concept_names = d_in, dtype, concept_names
        self.metadata = dict(metadata or {})
        self.n_tokens = 0
        folder = self.path.parent if str(self.path.parent) else Path(".")
        if not folder.is_dir():
            raise InputError(f"output folder does not exist: {folder}")
        try:
            clean_stale_temporaries(self.path)
            self._acts = _temporary(self.path, "acts-")
            self._concepts = (
                _temporary(self.path, "concepts-") if concept_names is not None else None
            )
        except OSError as exc:
            raise InputError(f"cannot write into {folder}: {exc.strerror}") from None

    def write(self, acts: torch.Tensor, concepts: torch.Tensor | None = None) -> None:
        """Append acts [B, d_in] (and concepts [B, C] when the file has concept names)."""
        if acts.ndim != 2 or acts.shape[1] != self.d_in:
            raise ValueError(f"expected activations [B, {self.d_in}], got {list(acts.shape)}")
        if (concepts is None) != (self._concepts is None):
            raise ValueError("concepts must be given exactly when the writer has concept_names")
        self._acts.write(_raw_bytes(acts.detach().to("cpu", self.dtype)))
        if concepts is not None:
            assert self.concept_names is not None and self._concepts is not None  # checked above
            if concepts.shape != (acts.shape[0], len(self.concept_names)):
                raise ValueError(f"expected concepts [{acts.shape[0]}, {len(self.concept_names)}]")
            self._concepts.write(_raw_bytes(concepts.detach().to("cpu", torch.bool)))
        self.n_tokens += acts.shape[0]

    def close(self) -> Path:
        """Assemble header + data into the final file and rename it into place."""
        tensors = {"activations": (self.dtype, [self.n_tokens, self.d_in], self._acts)}
        if self._concepts is not None:
            assert self.concept_names is not None
            tensors["concepts"] = (
                torch.bool,
                [self.n_tokens, len(self.concept_names)],
                self._concepts,
            )
            self.metadata["concept_names"] = json.dumps(self.concept_names)
        header: dict[str, object] = {"__metadata__": self.metadata} if self.metadata else {}
        offset = 0
        for name, (dtype, shape, handle) in tensors.items():
            handle.flush()
            size = handle.tell()
            header[name] = {
                "dtype": _ST_DTYPE[dtype],
                "shape": shape,
                "data_offsets": [offset, offset + size],
            }
            offset += size
        header_bytes = json.dumps(header, separators=(",", ":")).encode()
        header_bytes += b" " * (-len(header_bytes) % 8)
        final = _temporary(self.path, "st-")
        try:
            with final:
                final.write(struct.pack("<Q", len(header_bytes)) + header_bytes)
                for _, _, handle in tensors.values():
                    handle.seek(0)
                    while block := handle.read(1 << 24):
                        final.write(block)
            os.replace(final.name, self.path)
        except BaseException:
            Path(final.name).unlink(missing_ok=True)
            raise
        finally:
            self._discard_temporaries()
        return self.path

    def abort(self) -> None:
        """Drop everything written so far; the target path is left untouched."""
        self._discard_temporaries()

    def _discard_temporaries(self) -> None:
        for handle in (self._acts, self._concepts):
            if handle is not None:
                handle.close()
                Path(handle.name).unlink(missing_ok=True)

    def __enter__(self) -> ActivationFileWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def _temporary(target: Path, part: str):
    """A named temporary file beside ``target``, kept until closed and removed by the writer."""
    folder = target.parent if str(target.parent) else Path(".")
    return tempfile.NamedTemporaryFile(
        dir=folder, prefix=temporary_prefix(target, part), delete=False
    )  # noqa: SIM115


def _raw_bytes(tensor: torch.Tensor) -> bytes:
    return tensor.contiguous().view(torch.uint8).numpy().tobytes()


def truth_path(activation_file: str | Path) -> Path:
    """The planted-truth sidecar beside an activation file: ``<file>.truth.safetensors`` (written by
    ``saebench synth``, read by the evals that report ground truth)."""
    return Path(f"{activation_file}.truth.safetensors")
