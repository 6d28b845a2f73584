"""Content hashes (SHA-256, hex) of files, folders and tensors: what a stored result's fingerprint names its
inputs by. A file's hash is computed once per process for a given (path, size, modification time)."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from pathlib import Path

import torch

_BLOCK = 1 << 20
_FILE_CACHE: dict[tuple[str, int, int], str] = {}


def file_digest(path: str | os.PathLike[str]) -> str:
    """SHA-256 of a file's bytes, streamed in 1 MiB blocks."""
    path = Path(path).resolve()
    stat = path.stat()
    key = (str(path), stat.st_size, stat.st_mtime_ns)
    if key not in _FILE_CACHE:
        digest = hashlib.sha256()
        with path.open("rb") as handle:
            while block := handle.read(_BLOCK):
                digest.update(block)
        _FILE_CACHE[key] = digest.hexdigest()
    return _FILE_CACHE[key]


def folder_digest(path: str | os.PathLike[str]) -> str:
    """SHA-256 over a folder's files (relative names and contents, sorted; hidden files skipped)."""
    root = Path(path)
    digest = hashlib.sha256()
    for file in sorted(p for p in root.rglob("*") if p.is_file()):
        relative = file.relative_to(root)
        if any(part.startswith(".") for part in relative.parts):
            continue
        digest.update(str(relative).encode())
        digest.update(file_digest(file).encode())
    return digest.hexdigest()


def path_digest(path: str | os.PathLike[str]) -> str:
    """:func:`file_digest` of a file, :func:`folder_digest` of a folder."""
    return folder_digest(path) if Path(path).is_dir() else file_digest(path)


def tensors_digest(tensors: Mapping[str, torch.Tensor]) -> str:
    """SHA-256 over named tensors (sorted by name): each name, dtype, shape and raw bytes."""
    digest = hashlib.sha256()
    for name in sorted(tensors):
        tensor = tensors[name].detach()
        digest.update(f"{name}|{tensor.dtype}|{list(tensor.shape)}|".encode())
        flat = tensor.reshape(-1)
        for start in range(0, flat.numel(), 1 << 24):  # 16M elements at a time off the device
            piece = flat[start : start + (1 << 24)].contiguous().cpu()
            digest.update(piece.view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()
