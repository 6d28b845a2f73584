"""A results folder read for ``saebench report``: every result file that parses, and every one that does
not, with why. Unlike :func:`.compare.load_results` (which refuses a folder with a bad file), a page lists
what it skipped and shows the rest."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from sae_bench_amortization.errors import InputError
from sae_bench_amortization.modes import mode_order
from sae_bench_amortization.registry import EvalEntry
from sae_bench_amortization.reports.compare import (
    EVIDENCE,
    KEY_COLUMNS,
    MalformedResult,
    iter_result_files,
    read_result_file,
)


@dataclass(frozen=True)
class ResultFile:
    """One readable result: its path (relative to the folder), its JSON and its rows (sae, eval, mode,
    metrics; :func:`.compare.rows_of_result`)."""

    path: str
    data: dict[str, Any]
    rows: list[dict[str, Any]]


@dataclass(frozen=True)
class Scan:
    results_dir: Path
    files: list[ResultFile] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, why)

    def frame(self, evidence: bool = False) -> pd.DataFrame:
        """Every row: KEY_COLUMNS, ``path``, then the metrics (sorted), SAEs and modes in report order;
        ``evidence``: each row's per-concept values kept (:data:`.compare.EVIDENCE`, as ``regress`` uses)."""
        rows = [
            {k: v for k, v in row.items() if evidence or k != EVIDENCE} | {"path": result.path}
            for result in self.files
            for row in result.rows
        ]
        frame = pd.DataFrame(rows)
        if frame.empty:
            return frame
        keys = [*KEY_COLUMNS, "path"]
        frame = frame.loc[:, [*keys, *sorted(c for c in frame.columns if c not in keys)]]
        frame["_order"] = frame["mode"].map(mode_order)
        frame = frame.sort_values(["sae", "eval", "_order"], kind="stable")
        return frame.drop(columns="_order").reset_index(drop=True)


def scan_results(results_dir: str | Path, registry: Mapping[str, EvalEntry]) -> Scan:
    """Every ``*_eval_results.json`` under ``results_dir``: read, or skipped with the reason (malformed,
    foreign, or a second result for an SAE, eval and mode already read). InputError when the folder does
    not exist or holds no result file at all."""
    results_dir = Path(results_dir)
    if not results_dir.is_dir():
        raise InputError(f"results folder not found: {results_dir}")
    scan = Scan(results_dir)
    seen: dict[tuple[str, str, str], str] = {}
    paths = list(iter_result_files(results_dir))
    if not paths:
        raise InputError(f"no result files (*_eval_results.json) under {results_dir}")
    for path in paths:
        shown = str(path.relative_to(results_dir))
        try:
            data, rows = read_result_file(path, registry)
        except MalformedResult as exc:
            scan.skipped.append((shown, str(exc)))
            continue
        twice = [
            seen[key] for key in ((r["sae"], r["eval"], r["mode"]) for r in rows) if key in seen
        ]
        if twice:
            scan.skipped.append((shown, f"a second result for what {twice[0]} already holds"))
            continue
        seen.update({(r["sae"], r["eval"], r["mode"]): shown for r in rows})
        scan.files.append(ResultFile(shown, data, rows))
    return scan
