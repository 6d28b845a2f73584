"""Result files → one table: one row per SAE × eval × inference mode, one column per metric.

Reads any registered eval's results (this package's, SAEBench's ``core`` and first-letter ``absorption``,
plugins'). Metric names are shared across evals where they mean the same thing (``dead_rate``, ``nmse``,
``delta_f1``, ``absorption_rate``, ...: each metric's ``shared`` name, declared with its field); which way
is worse is each metric's declared direction (``registry.direction_of``). Modes are read with the mode
registry.
"""

from __future__ import annotations

import json
import math
import numbers
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from sae_bench_amortization.errors import InputError
from sae_bench_amortization.metrics.pairing import PAIRED_METRICS, common_concept_means
from sae_bench_amortization.modes import KINDS, is_mode_name, mode_order, role_of, split_mode
from sae_bench_amortization.registry import EvalEntry, discover_evals, per_mode_row_metrics

KEY_COLUMNS = ("sae", "eval", "mode")
OBJECTIVE_COLUMN = (
    "objective_solved"  # eval_config.objective (the column "objective" is its mean value)
)


class MalformedResult(ValueError):
    """A result file whose content does not have the shape of a SAEBench result."""


def _mode(value: Any) -> str:
    if not is_mode_name(value):
        kinds = ", ".join(kind.syntax for kind in KINDS.values())
        raise MalformedResult(f"inference mode {value!r} is not one of {kinds}")
    return value


def _mode_of(data: dict, stem: str) -> str:
    config = data.get("eval_config")
    mode = config.get("inference_mode") if isinstance(config, dict) else None
    if mode:
        return _mode(mode)
    return split_mode(stem)[1] or "amortized"


def _sae_of(data: dict, stem: str) -> str:
    """The SAE's name without the mode: ``<release>_<sae_id>`` (SAEBench's file stem) minus ``__<mode>``."""
    name, mode = split_mode(stem)
    return name if mode is not None else stem


def _protocol_of(data: dict) -> str | None:
    """The metric protocol a result was computed under (``eval_config.protocol``), None for evals without."""
    return _config_name(data, "protocol")


def _objective_of(data: dict) -> str | None:
    """The problem a result's modes solved (``eval_config.objective``, auto resolved), None for evals
    without modes."""
    return _config_name(data, "objective")


def _config_name(data: dict, key: str) -> str | None:
    config = data.get("eval_config")
    value = config.get(key) if isinstance(config, dict) else None
    if value is not None and not isinstance(value, str):
        raise MalformedResult(f"{key} {value!r} is not a name")
    return value


def check_one_protocol(frame: pd.DataFrame, where: str) -> None:
    """One-line error when results computed under different metric protocols meet in one table."""
    protocols = sorted(set(frame["protocol"].dropna())) if "protocol" in frame else []
    if len(protocols) > 1:
        mixed = frame.dropna(subset=["protocol"]).groupby("protocol")["sae"].first()
        detail = ", ".join(f"{protocol} (e.g. {sae})" for protocol, sae in mixed.items())
        raise InputError(
            f"{where} mixes metric protocols: {detail}; compare results of one --protocol at a time"
        )


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


def _entry(eval_type: str, registry: Mapping[str, EvalEntry] | None) -> EvalEntry | None:
    return (registry if registry is not None else discover_evals()).get(eval_type)


def _renames(eval_type: str, registry: Mapping[str, EvalEntry] | None) -> dict[str, str]:
    entry = _entry(eval_type, registry)
    return dict(entry.metric_names) if entry is not None else {}


def rows_of_result(
    data: dict, stem: str, registry: Mapping[str, EvalEntry] | None = None
) -> list[dict[str, Any]]:
    """One result JSON → rows (dicts with sae, eval, mode and metric columns); MalformedResult when the
    content does not have a SAEBench result's shape. An eval comparing modes (details with a ``mode`` per
    row) gives one row per mode; metric names are shared as the eval's entry declares
    (``metric_names``); a mode row with per-concept evidence carries it (:data:`EVIDENCE`) for
    :func:`pair_across_results`."""
    eval_type = data.get("eval_type_id")
    metrics = data.get("eval_result_metrics")
    if not isinstance(eval_type, str) or not isinstance(metrics, dict):
        raise MalformedResult("not a SAEBench result file (no eval_type_id / eval_result_metrics)")
    sae = _sae_of(data, stem)
    numbers = _numbers(metrics)
    details = data.get("eval_result_details")
    per_mode_rows = isinstance(details, list) and any(
        isinstance(d, dict) and "mode" in d for d in details
    )
    entry = _entry(eval_type, registry)
    if (entry is not None and not entry.per_mode) or per_mode_rows:
        if not isinstance(details, list) or not all(isinstance(d, dict) for d in details):
            raise MalformedResult(f"{eval_type} result without a list of per-mode rows")
        modes = [_mode(d.get("mode")) for d in details]
        if len(set(modes)) != len(modes):
            raise MalformedResult(f"{eval_type} result lists a mode twice: {modes}")
        encoder = encoder_of(modes)
        protocol = _protocol_of(data)
        # renames name this eval's definitions apart (the paper protocol's are its own: one protocol a table)
        renames = _renames(eval_type, registry) if protocol in (None, "default") else {}
        known = registry if registry is not None else discover_evals()
        on_encoder = per_mode_row_metrics(
            known, "encoder"
        )  # e.g. the gap: measured from the encoder
        on_every = per_mode_row_metrics(known, "every")  # e.g. the shared λ, where a row has none
        rows = []
        for mode, detail in zip(modes, details, strict=True):
            values = {renames.get(k, k): v for k, v in _metric_values(detail).items()}
            row = {"sae": sae, "eval": eval_type, "mode": mode, **values}
            if mode == encoder:
                row.update({name: numbers.get(name) for name in on_encoder})
            for name in on_every:
                row.setdefault(name, numbers.get(name))
            row["protocol"] = protocol
            row[OBJECTIVE_COLUMN] = _objective_of(data)
            evidence = _evidence_of(detail, renames)
            if evidence is not None:
                row[EVIDENCE] = evidence
            rows.append(row)
        return rows
    renames = _renames(eval_type, registry)
    row = {
        "sae": sae,
        "eval": eval_type,
        "mode": _mode_of(data, stem),
        "protocol": _protocol_of(data),
        OBJECTIVE_COLUMN: _objective_of(data),
    }
    row.update(
        {renames.get(k, k): v for k, v in numbers.items() if renames.get(k, k) not in KEY_COLUMNS}
    )
    return [row]


EVIDENCE = "_concept_values"  # a row's per-concept values (dropped once the rows are paired)


def _evidence_of(detail: dict, renames: dict[str, str]) -> dict[tuple[str, str], dict] | None:
    """(metric column, its count column) → {concept: value} from a mode row's per-concept evidence
    (``concepts``, amortization_gap's), for the concept-averaged metrics; None without it."""
    concepts = detail.get("concepts")
    if not isinstance(concepts, list):
        return None
    return {
        (renames.get(key, key), renames.get(count, count)): {
            str(c["concept"]): float(c[key])
            for c in concepts
            if isinstance(c, dict) and "concept" in c and _number(c.get(key)) is not None
        }
        for key, _, count, _ in PAIRED_METRICS
    }


def pair_across_results(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows of one eval and protocol from several results (SAEs) side by side: each concept-averaged
    metric re-taken over the concepts every one of those rows defines it on (their per-concept
    evidence), its count column set to that number — no mean over different concept sets beside
    another. Groups where some row lacks the evidence are left as they are."""
    groups: dict[tuple[object, object], list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault((row["eval"], row.get("protocol")), []).append(row)
    for group in groups.values():
        with_evidence = [row for row in group if EVIDENCE in row]
        if len(with_evidence) < len(group) or len({row["sae"] for row in group}) < 2:
            continue
        for metric, count in with_evidence[0][EVIDENCE]:
            means, n_common = common_concept_means(
                {i: row[EVIDENCE][(metric, count)] for i, row in enumerate(group)}
            )
            for i, row in enumerate(group):
                row[metric] = means[i]
                row[count] = n_common
    return rows


def encoder_of(modes: list[str]) -> str | None:
    """The encoder the gap is measured from: the first mode with the role "encoder" in mode order (the
    SAE's own encoder, else a LocA-SAE's given as the SAE); None without one."""
    encoders = sorted((mode for mode in modes if role_of(mode) == "encoder"), key=mode_order)
    return encoders[0] if encoders else None


def source_of(data: dict) -> str | None:
    """The activations a result was computed on, short: an activation file's SHA-256 (first 12 hex), else
    the source's description; None for results that read a model themselves (or record neither)."""
    made_of = data.get("fingerprint")
    activations = made_of.get("activations") if isinstance(made_of, dict) else None
    if isinstance(activations, dict):
        digest = activations.get("activation_file_sha256")
        if isinstance(digest, str):
            return digest[:12]
    config = data.get("eval_config")
    described = config.get("activation_source") if isinstance(config, dict) else None
    return described if isinstance(described, str) and described else None


def note_sources(frame: pd.DataFrame) -> str | None:
    """One line naming the activation sources when the results were computed on more than one."""
    known = frame.dropna(subset=["activation_source"])
    if known["activation_source"].nunique() < 2:
        return None
    users = known.groupby("activation_source", sort=True)
    parts = [
        f"{source}: "
        + ", ".join(
            f"{sae}/{name}" for sae, name in group[["sae", "eval"]].drop_duplicates().values
        )
        for source, group in users
    ]
    return (
        f"these results were computed on {len(parts)} activation sources ({'; '.join(parts)}); "
        "see the activation_source column"
    )


def read_result_file(
    path: Path, registry: Mapping[str, EvalEntry] | None = None
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """One ``*_eval_results.json`` → (its JSON, its rows: :func:`rows_of_result`); MalformedResult saying
    why when it is not a readable SAEBench result (``load_results`` refuses the folder with it, ``report``
    lists the file as skipped)."""
    try:
        data = json.loads(path.read_text())
    except UnicodeDecodeError:
        raise MalformedResult("unreadable result file (not UTF-8 text)") from None
    except json.JSONDecodeError as exc:
        raise MalformedResult(
            f"unreadable result file (not JSON: {exc.msg} at line {exc.lineno})"
        ) from None
    except (OSError, RecursionError) as exc:
        raise MalformedResult(f"unreadable result file ({type(exc).__name__})") from None
    if not isinstance(data, dict):
        raise MalformedResult("not a SAEBench result file (a JSON object is expected)")
    stem = path.name.removesuffix("_eval_results.json")
    try:
        return data, rows_of_result(data, stem, registry)
    except MalformedResult:
        raise
    except (TypeError, ValueError, AttributeError, KeyError) as exc:  # a foreign JSON's shape
        raise MalformedResult(f"not a SAEBench result file ({type(exc).__name__}: {exc})") from None


def iter_result_files(results_dir: Path) -> Iterator[Path]:
    yield from sorted(results_dir.rglob("*_eval_results.json"))


def load_results(
    results_dir: str | Path,
    registry: Mapping[str, EvalEntry] | None = None,
    sources: bool = False,
    paired: bool = False,
    evidence: bool = False,
) -> pd.DataFrame:
    """Every result file under ``results_dir`` → DataFrame (KEY_COLUMNS first, then metrics, sorted);
    ``sources``: an ``activation_source`` column after the keys (:func:`source_of`); ``paired``: the
    concept-averaged metrics of rows from several results re-taken over the concepts all of them define
    (:func:`pair_across_results`; ``compare``'s side-by-side table, not ``regress``, which holds each SAE
    to its own baseline); ``evidence``: each row's per-concept values kept in the :data:`EVIDENCE` column
    ((metric column, count column) → {concept: value}; NaN for rows without)."""
    registry = discover_evals() if registry is None else registry
    results_dir = Path(results_dir)
    if not results_dir.is_dir():
        raise InputError(f"results folder not found: {results_dir}")
    rows: list[dict[str, Any]] = []
    source: dict[tuple[str, str, str], Path] = {}
    for path in iter_result_files(results_dir):
        try:
            data, found = read_result_file(path, registry)
        except MalformedResult as exc:
            raise InputError(f"{path}: {exc}") from None
        for row in found:
            if sources:
                row["activation_source"] = source_of(data)
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
    if paired:
        rows = pair_across_results(rows)
    frame = pd.DataFrame(
        [{k: v for k, v in row.items() if evidence or k != EVIDENCE} for row in rows]
    )
    for column in ("protocol", OBJECTIVE_COLUMN):  # no eval with one: the table as before
        if bool(frame[column].isna().all()):
            frame = frame.drop(columns=column)
    check_one_protocol(frame, str(results_dir))
    keys = [*KEY_COLUMNS, *(["activation_source"] if sources else [])]
    metrics = sorted(c for c in frame.columns if c not in keys)  # EVIDENCE, if kept, among them
    frame = frame.loc[:, [*keys, *metrics]]
    frame["mode_order"] = frame["mode"].map(mode_order)
    frame = frame.sort_values(["sae", "eval", "mode_order"]).drop(columns="mode_order")
    return frame.reset_index(drop=True)


def format_number(value: Any, digits: int = 4) -> str:
    """A number as a table shows it: integers, and floats that are whole (token counts, n_concepts), in
    full (``20000``); other floats to ``digits`` significant digits in plain notation (``0.1235``),
    scientific only below 1e-4 or from 1e6 on (``1.5e-05``); "" for null/NaN; inf as ``inf``."""
    if value is None or isinstance(value, bool | np.bool_):
        return "" if value is None else str(bool(value))
    if isinstance(value, numbers.Integral):
        return str(int(value))
    number = float(value)
    if math.isnan(number):
        return ""
    if math.isinf(number):
        return "inf" if number > 0 else "-inf"
    magnitude = abs(number)
    if number.is_integer() and magnitude < 1e15:
        return str(int(number))
    if magnitude < 1e-4 or magnitude >= 1e6:
        return f"{number:.{digits}g}"
    decimals = digits - 1 - math.floor(math.log10(magnitude))  # to ``digits`` significant digits
    text = f"{round(number, decimals):.{max(decimals, 0)}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def markdown_table(frame: pd.DataFrame, digits: int = 4) -> str:
    """A GitHub-markdown table of ``frame``: numbers as :func:`format_number` writes them (integral
    values as integers, others to ``digits`` significant digits), empty cells for null/NaN."""

    def cell(value: Any) -> str:
        if value is None or value is pd.NA or value is pd.NaT:
            return ""
        if isinstance(value, numbers.Real | np.bool_):
            return format_number(value, digits)
        return _escape(str(value))

    columns = [_escape(str(column)) for column in frame.columns]
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for record in frame.itertuples(index=False):
        lines.append("| " + " | ".join(cell(v) for v in record) + " |")
    return "\n".join(lines) + "\n"


def _escape(text: str) -> str:
    """Text safe inside a markdown table cell (no column breaks, one line)."""
    return " ".join(text.splitlines()).replace("|", "\\|")
