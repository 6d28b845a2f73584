"""Result files exactly where SAEBench puts them, written atomically.

``<output-dir>/<eval>/<sae_name>_eval_results.json`` with ``sae_name = <release>_<sae_id>`` ('/' → '_',
SAEBench's own sanitising). A file is written to a temporary name in the same folder and renamed into
place, so a killed run never leaves a half-written result.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from sae_bench.sae_bench_utils import get_eval_uuid, get_sae_bench_version, get_sae_lens_version


def result_path(output_dir: str | Path, release: str, sae_id: str) -> Path:
    """SAEBench's result path for one SAE inside one eval's folder."""
    from sae_bench.sae_bench_utils.general_utils import get_results_filepath

    return Path(get_results_filepath(str(output_dir), release, sae_id))


def artifact_path(result: Path, suffix: str) -> Path:
    """A file beside a result JSON: ``<sae_name>_<suffix>``."""
    return result.with_name(f"{result.name.removesuffix('_eval_results.json')}_{suffix}")


def run_metadata() -> dict[str, Any]:
    """The fields every SAEBench result carries about the run itself."""
    return {
        "eval_id": get_eval_uuid(),
        "datetime_epoch_millis": int(time.time() * 1000),
        "sae_bench_commit_hash": get_sae_bench_version(),
        "sae_lens_version": get_sae_lens_version(),
    }


class ResultLock:
    """An exclusive lock on one result (``.<result name>.lock`` beside it), so concurrent runs into one
    output folder never compute the same SAE × eval × mode twice. The holder writes the fingerprint of
    what it computes into the lock file (:meth:`holder` reads it back). The lock is an OS advisory lock
    (``fcntl.flock``), released when the holder exits or is killed."""

    def __init__(self, result: Path):
        self.path = result.with_name(f".{result.name}.lock")
        self._handle = None

    def acquire(self, holder: dict | None = None, blocking: bool = False) -> bool:
        """True when this process holds the lock now (``holder`` written into it); False when another
        process does (never with ``blocking``: it waits for the lock instead)."""
        import fcntl

        flags = fcntl.LOCK_EX if blocking else fcntl.LOCK_EX | fcntl.LOCK_NB
        while True:
            handle = open(self.path, "a")  # noqa: SIM115 - held until release()
            try:
                fcntl.flock(handle, flags)
            except BlockingIOError:
                handle.close()
                return False
            try:  # the holder unlinks the file on release: a lock on an unlinked file guards nothing
                current = os.stat(self.path).st_ino
            except FileNotFoundError:
                current = None
            if current == os.fstat(handle.fileno()).st_ino:
                self._handle = handle
                os.ftruncate(handle.fileno(), 0)  # a killed holder's record goes
                if holder is not None:
                    handle.write(json.dumps(holder))
                    handle.flush()
                return True
            handle.close()  # raced with a release: try again on the file now at the path

    def holder(self, attempts: int = 20, pause: float = 0.05) -> dict | None:
        """The fingerprint the holder wrote; None when none can be read within ``attempts`` tries (just
        acquired and not written yet, released, or a holder that writes none)."""
        for _ in range(attempts):
            try:
                record = json.loads(self.path.read_text(encoding="utf-8"))
            except FileNotFoundError:  # released meanwhile
                return None
            except (OSError, UnicodeDecodeError, json.JSONDecodeError):
                record = None
            if isinstance(record, dict):
                return record
            time.sleep(pause)
        return None

    def release(self) -> None:
        if self._handle is not None:
            self.path.unlink(missing_ok=True)
            self._handle.close()  # closing drops the flock
            self._handle = None

    def __enter__(self) -> ResultLock:
        return self

    def __exit__(self, *exc) -> None:
        self.release()
