"""Files written whole or not at all: a temporary beside the target (tagged with the writing process),
renamed into place; temporaries of killed writers removed on the next write; existing targets refused
unless the user asked to replace them."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

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
