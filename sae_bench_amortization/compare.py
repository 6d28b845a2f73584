"""Result files → one table: one row per SAE × eval × inference mode, one column per metric.

Reads this package's evals (dead_dense, amortization_gap, splitting, absorption_rate) and SAEBench's ``core``
and first-letter ``absorption`` results. Metric names are shared across evals where they mean the same thing
(``dead_rate``, ``nmse``, ``delta_f1``, ``absorption_rate``, ...); :data:`WORSE_WHEN_HIGHER` says which way
is worse for regressions.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd

from sae_bench_amortization.errors import InputError

KEY_COLUMNS = ("sae", "eval", "mode")
# +1: a higher value is worse; -1: a lower value is worse. Metrics not listed are reported, never gated.
WORSE_WHEN_HIGHER: dict[str, int] = {
    "nmse": 1,
    "dead_rate": 1,
    "dense_rate": 1,
    "delta_f1": 1,
    "absorption_rate": 1,
    "full_absorption_rate": 1,
    "mean_gap": 1,
    "mean_relative_gap": 1,
    "objective": 1,
    "mean_absorption_fraction_score": 1,
    "mean_full_absorption_score": 1,
    "explained_variance": -1,
    "cossim": -1,
    "ce_loss_score": -1,
    "kl_div_score": -1,
}
_MODE_SUFFIX = re.compile(r"__(amortized|non_amortized|semi-\d+|loca)(?=$|_custom_sae$)")


_MODE = re.compile(r"amortized|non_amortized|loca|semi:\d{1,6}")


class MalformedResult(ValueError):
    """A result file whose content does not have the shape of a SAEBench result."""


def _mode(value: Any) -> str:
    if not isinstance(value, str) or not _MODE.fullmatch(value):
        raise MalformedResult(
            f"inference mode {value!r} is not amortized, semi:T, non_amortized or loca"
        )
    return value


def _mode_of(data: dict, stem: str) -> str:
    config = data.get("eval_config")
    mode = config.get("inference_mode") if isinstance(config, dict) else None
    if mode:
        return _mode(mode)
    match = _MODE_SUFFIX.search(stem)
    return match.group(1).replace("semi-", "semi:") if match else "amortized"


def _sae_of(data: dict, stem: str) -> str:
    """The SAE's name without the mode: ``<release>_<sae_id>`` (SAEBench's file stem) minus ``__<mode>``."""
    name = _MODE_SUFFIX.sub("", stem)
    return name.removesuffix("_custom_sae") if name != stem else name


def _number(value: Any) -> float | None:
    """A metric value as float (NaN/±inf kept), or None when it is not a number (text, lists, null)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        return float(value)
    except OverflowError:  # an integer beyond float range
        return math.inf if value > 0 else -math.inf


def _metric_values(items: dict) -> dict[str, float]:
    """Numeric entries of a dict, key columns (sae, eval, mode) never overwritten."""
    out = {}
    for key, value in items.items():
        number = _number(value)
        if number is not None and key not in KEY_COLUMNS:
            out[str(key)] = number
    return out


def _numbers(metrics: dict) -> dict[str, float]:
    """Leaf numbers of SAEBench's eval_result_metrics (category → metric → value)."""
    out: dict[str, float] = {}
    for category in metrics.values():
        if isinstance(category, dict):
            out.update(_metric_values(category))
    return out


def rows_of_result(data: dict, stem: str) -> list[dict[str, Any]]:
    """One result JSON → rows (dicts with sae, eval, mode and metric columns); MalformedResult when the
    content does not have a SAEBench result's shape."""
    eval_type = data.get("eval_type_id")
    metrics = data.get("eval_result_metrics")
    if not isinstance(eval_type, str) or not isinstance(metrics, dict):
        raise MalformedResult("not a SAEBench result file (no eval_type_id / eval_result_metrics)")
    sae = _sae_of(data, stem)
    numbers = _numbers(metrics)
    if eval_type == "amortization_gap":
        details = data.get("eval_result_details")
        if not isinstance(details, list) or not all(isinstance(d, dict) for d in details):
            raise MalformedResult("amortization_gap result without a list of per-mode rows")
        modes = [_mode(d.get("mode")) for d in details]
        if len(set(modes)) != len(modes):
            raise MalformedResult(f"amortization_gap result lists a mode twice: {modes}")
        encoder = "loca" if "loca" in modes and "amortized" not in modes else "amortized"
        rows = []
        for mode, detail in zip(modes, details, strict=True):
            row = {"sae": sae, "eval": eval_type, "mode": mode, **_metric_values(detail)}
            if mode == encoder:  # the gap is the encoder's excess objective
                row["mean_gap"] = numbers.get("mean_gap")
                row["mean_relative_gap"] = numbers.get("mean_relative_gap")
            row["l1_coefficient"] = numbers.get("l1_coefficient")
            rows.append(row)
        return rows
    renames = {
        "dead_dense": {"mean_l0": "l0"},
        "splitting": {"mean_delta_f1": "delta_f1"},
    }.get(eval_type, {})
    row = {"sae": sae, "eval": eval_type, "mode": _mode_of(data, stem)}
    row.update(
        {renames.get(k, k): v for k, v in numbers.items() if renames.get(k, k) not in KEY_COLUMNS}
    )
    return [row]


def iter_result_files(results_dir: Path) -> Iterator[Path]:
    yield from sorted(results_dir.rglob("*_eval_results.json"))


def load_results(results_dir: str | Path) -> pd.DataFrame:
    """Every result file under ``results_dir`` → DataFrame (KEY_COLUMNS first, then metrics, sorted)."""
    results_dir = Path(results_dir)
    if not results_dir.is_dir():
        raise InputError(f"results folder not found: {results_dir}")
    rows: list[dict[str, Any]] = []
    source: dict[tuple[str, str, str], Path] = {}
    for path in iter_result_files(results_dir):
        try:
            data = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
            raise InputError(f"{path}: unreadable result file ({type(exc).__name__})") from None
        if not isinstance(data, dict):
            raise InputError(f"{path}: not a SAEBench result file")
        try:
            found = rows_of_result(data, path.name.removesuffix("_eval_results.json"))
        except MalformedResult as exc:
            raise InputError(f"{path}: {exc}") from None
        for row in found:
            key = (row["sae"], row["eval"], row["mode"])
            if key in source:
                raise InputError(
                    f"two results for SAE {key[0]}, eval {key[1]}, mode {key[2]}: {source[key]} and {path} "
                    "(remove or move one)"
                )
            source[key] = path
        rows.extend(found)
    if not rows:
        raise InputError(f"no result files (*_eval_results.json) under {results_dir}")
    frame = pd.DataFrame(rows)
    metrics = sorted(c for c in frame.columns if c not in KEY_COLUMNS)
    frame = frame[[*KEY_COLUMNS, *metrics]]
    frame["mode_order"] = frame["mode"].map(mode_order)
    frame = frame.sort_values(["sae", "eval", "mode_order"]).drop(columns="mode_order")
    return frame.reset_index(drop=True)


def mode_order(mode: str) -> float:
    """amortized, semi:T by T, non_amortized, loca."""
    if mode == "amortized":
        return -1.0
    if mode.startswith("semi:"):
        try:
            return float(mode.split(":", 1)[1])
        except ValueError:
            return math.inf
    return {"non_amortized": 1e9, "loca": 1e9 + 1}.get(mode, 1e9 + 2)


def markdown_table(frame: pd.DataFrame, digits: int = 4) -> str:
    """A GitHub-markdown table of ``frame`` (numbers to ``digits`` significant digits, blanks for NaN)."""

    def cell(value: Any) -> str:
        if isinstance(value, float):
            return "" if math.isnan(value) else f"{value:.{digits}g}"
        return str(value).replace("|", "\\|")

    columns = list(frame.columns)
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for record in frame.itertuples(index=False):
        lines.append("| " + " | ".join(cell(v) for v in record) + " |")
    return "\n".join(lines) + "\n"
