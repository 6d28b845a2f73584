"""What a command may write: its outputs never touch what it reads, and ``--overwrite`` replaces only what the
command itself wrote before.

Every writer calls, before any work and before it writes anything:

- :func:`check_apart` with every path it writes and every path it reads: an output that *is*, *contains*
  or *lies inside* an input is one line (exit 2) — ``train-loca --sae-path base --out base --overwrite``
  would otherwise delete the SAE it is asked to read;
- :func:`check_replaceable` for a folder it fills: a non-empty folder needs ``--overwrite``, and even then
  only a folder holding nothing but this command's own files (``own``) is replaced; a folder with other
  files needs another target.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

from sae_bench_amortization.errors import InputError

PathLike = str | os.PathLike | None


def resolved(path: str | os.PathLike) -> Path:
    """``path`` absolute, ``~`` expanded, symbolic links followed (also for parts that do not exist yet)."""
    return Path(path).expanduser().resolve()


def _same(a: Path, b: Path) -> bool:
    if a == b:
        return True
    try:  # hard links, bind mounts: one file under two names
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def overlap(output: str | os.PathLike, read: str | os.PathLike) -> str | None:
    """How ``output`` overlaps ``read`` ("is", "contains", "lies inside"), or None when they are apart."""
    out, source = resolved(output), resolved(read)
    if _same(out, source):
        return "is"
    if source.is_relative_to(out):
        return "contains"
    if out.is_relative_to(source):
        return "lies inside"
    return None


def check_apart(outputs: Mapping[str, PathLike], inputs: Mapping[str, PathLike]) -> None:
    """One-line :class:`InputError` when an output path (flag → path) equals, contains or lies inside a
    path the command reads (flag → path); ``None`` paths are skipped."""
    for out_flag, output in outputs.items():
        if output is None or output == "":
            continue
        for in_flag, read in inputs.items():
            if read is None or read == "":
                continue
            how = overlap(output, read)
            if how is not None:
                raise InputError(
                    f"{out_flag} {output} {how} {in_flag} {read}, which this command reads: write "
                    "somewhere else (nothing a command reads is ever replaced)"
                )


def foreign_entries(folder: Path, own: Callable[[str], bool]) -> list[str]:
    """The names in ``folder`` that ``own`` does not recognise as the command's (sorted)."""
    return sorted(p.name for p in folder.iterdir() if not own(p.name))


def check_replaceable(
    folder: str | os.PathLike,
    flag: str,
    overwrite: bool,
    *,
    own: Callable[[str], bool],
    is_ours: Callable[[Path], bool] = lambda folder: True,
    what: str = "this command",
) -> None:
    """``folder`` may be (re)filled: absent or empty; or, with ``overwrite``, holding only names ``own``
    accepts and recognised by ``is_ours`` as an earlier output of ``what``. One line otherwise."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise InputError(f"{flag} exists and is not a folder: {folder}")
    if not folder.is_dir() or not any(folder.iterdir()):
        return
    if not overwrite:
        raise InputError(f"{flag} {folder} exists: pass --overwrite to replace it")
    foreign = foreign_entries(folder, own)
    if foreign or not is_ours(folder):
        shown = ", ".join(foreign[:3]) + (
            f" and {len(foreign) - 3} more" if len(foreign) > 3 else ""
        )
        held = (
            f"holds files {what} did not write ({shown})"
            if foreign
            else f"is not an output of {what}"
        )
        raise InputError(
            f"{flag} {folder} {held}: --overwrite replaces only {what}'s own output; choose another {flag}"
        )


def check_creatable(path: str | os.PathLike, flag: str) -> None:
    """One line when ``path`` (a file or folder to create) could not be created: a parent that is a file,
    or an existing ancestor that cannot be written. Creates nothing."""
    path = Path(path)
    if path.is_dir() and not os.access(path, os.W_OK | os.X_OK):
        raise InputError(f"cannot write into {flag} {path}: it is not writable")
    ancestor = path.parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise InputError(f"cannot create {flag} {path}: {ancestor} is not a folder")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise InputError(f"cannot create {flag} {path}: {ancestor} is not writable")


def named(pairs: Iterable[tuple[str, PathLike]]) -> dict[str, PathLike]:
    """A flag → path mapping from pairs, numbering repeated flags (``--sae-path``, ``--sae-path #2``)."""
    result: dict[str, PathLike] = {}
    for flag, path in pairs:
        key, n = flag, 1
        while key in result:
            n += 1
            key = f"{flag} #{n}"
        result[key] = path
    return result
