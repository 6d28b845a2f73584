"""Files written whole or not at all: a temporary beside the target (tagged with the writing process),
renamed into place; temporaries of killed writers removed on the next write; existing targets refused
unless the user asked to replace them."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

from sae_bench_amortization.errors import InputError


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_FILE_MODE = 0o666 & ~_umask()  # what open() would give: mkstemp's files are owner-only (0600)


def temporary_prefix(target: Path, part: str = "") -> str:
    """``.<target name>.<pid>.<part>``: temporaries beside ``target``, tagged with the writing process."""
    return f".{target.name}.{os.getpid()}.{part}"


def clean_stale_temporaries(target: Path) -> list[Path]:
    """Remove temporaries of ``target`` left by processes that no longer run (a killed writer's);
    returns what was removed."""
    removed = []
    for candidate in target.parent.glob(f".{target.name}.*.*"):
        pid = candidate.name[len(target.name) + 2 :].split(".", 1)[0]
        if not pid.isdigit() or int(pid) == os.getpid() or _alive(int(pid)):
            continue
        candidate.unlink(missing_ok=True)
        removed.append(candidate)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def refuse_existing(target: Path, flag: str, overwrite: bool) -> None:
    """One line when ``target`` (a file, or a non-empty folder) exists and ``overwrite`` was not given."""
    exists = target.is_file() or (target.is_dir() and any(target.iterdir()))
    if exists and not overwrite:
        raise InputError(f"{flag} {target} exists: pass --overwrite to replace it")


def write_file_atomic(path: Path, write: Callable[[str], None]) -> None:
    """``write(temporary_path)`` then rename into ``path``; an OSError is one line, the temporary removed.
    Temporaries of ``path`` left by killed writers are removed first."""
    clean_stale_temporaries(path)
    handle, temporary = tempfile.mkstemp(
        dir=path.parent, prefix=temporary_prefix(path), suffix=".tmp"
    )
    os.close(handle)
    try:
        write(temporary)
        os.chmod(temporary, _FILE_MODE)  # shared output folders: readable as any other file
        os.replace(temporary, path)
    except OSError as exc:
        Path(temporary).unlink(missing_ok=True)
        raise InputError(f"cannot write {path}: {exc.strerror or exc}") from None
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def write_text_atomic(path: Path, text: str) -> None:
    """``text`` (UTF-8), flushed to disk before it takes ``path``'s place."""

    def write(temporary: str) -> None:
        with open(temporary, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())

    write_file_atomic(path, write)


def write_json_atomic(path: Path, value: Any, indent: int | None = 2) -> None:
    """``value`` as JSON text (a trailing newline), written whole or not at all."""
    write_text_atomic(path, json.dumps(value, indent=indent) + "\n")


def write_safetensors_atomic(
    path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None
) -> None:
    """``tensors`` (made contiguous) and string ``metadata`` as one safetensors file."""
    from safetensors.torch import save_file  # torch loads only for the writers that need it

    write_file_atomic(
        path,
        lambda temporary: save_file(
            {k: v.contiguous() for k, v in tensors.items()}, temporary, metadata
        ),
    )


def ensure_output_dir(path: str | Path) -> Path:
    """Create the folder (and parents) or fail with one line if it cannot be written."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"cannot create output folder {path}: {exc.strerror}") from None
    if not os.access(path, os.W_OK):
        raise InputError(f"output folder is not writable: {path}")
    return path


def check_output_dir(path: str | Path) -> Path:
    """One line when ``path`` could not be created or written; creates nothing (folders are made at the
    first write, so a refused command leaves none behind)."""
    path = Path(path)
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise InputError(f"cannot create output folder {path}: {existing} is not a folder")
    if not os.access(existing, os.W_OK):
        raise InputError(f"output folder is not writable: {existing}")
    return path


def make_folder(path: Path) -> list[Path]:
    """Create ``path`` (and parents) if missing; the folders it created, deepest first."""
    created = []
    missing = path
    while not missing.exists():
        created.append(missing)
        missing = missing.parent
    ensure_output_dir(path)
    return created


def remove_if_empty(folders: list[Path]) -> None:
    """Remove the folders a run created that it left empty (deepest first)."""
    for folder in folders:
        with contextlib.suppress(OSError):
            folder.rmdir()
