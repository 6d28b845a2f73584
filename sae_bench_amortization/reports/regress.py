"""``saebench regress``: compare result metrics with a committed baseline, direction-aware.

Baseline file (JSON)::

    {"format": "sae-bench-amortization-baseline", "version": 1,
     "results": {"<sae>": {"<eval>": {"<mode>": {"<metric>": value, ...}}}}}

A metric is *worse* when it moved in its bad direction (each eval's declared ``directions``) by more than
``atol + rtol·|baseline|``; improvements never fail. Metrics without a direction (L0, timings) are only
checked when named with ``--metric``, and then a change either way beyond the tolerance fails.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from sae_bench_amortization.atomic import refuse_existing, write_text_atomic
from sae_bench_amortization.errors import InputError
from sae_bench_amortization.metrics.pairing import common_concept_means
from sae_bench_amortization.registry import direction_of, discover_evals
from sae_bench_amortization.reports.compare import (
    EVIDENCE,
    KEY_COLUMNS,
    OBJECTIVE_COLUMN,
    iter_result_files,
    load_results,
)
from sae_bench_amortization.reports.tables import aligned
from sae_bench_amortization.targets import check_apart, named

FORMAT = "sae-bench-amortization-baseline"


@dataclass(frozen=True)
class Check:
    sae: str
    eval: str
    mode: str
    metric: str
    baseline: float
    current: float | None  # None: missing from the results
    status: str  # worse, better, within tolerance, changed (no direction), missing, not judged (λ changed)


NOT_IN_BASELINE = {"seconds_per_1k_tokens"}  # timings depend on the machine


def baseline_from_results(frame: pd.DataFrame) -> dict[str, Any]:
    """The baseline document of a results table (every finite metric but timings; the metric protocol of
    each SAE × eval that has one under "protocols")."""
    results: dict[str, Any] = {}
    protocols: dict[str, dict[str, str]] = {}
    objectives: dict[
        str, dict[str, str]
    ] = {}  # the problem the modes solved (eval_config.objective)
    for record in frame.to_dict("records"):
        for key, value in record.items():
            if isinstance(value, float) and math.isinf(value):
                raise InputError(
                    f"{record['eval']} result for SAE {record['sae']} ({record['mode']}) has {key} = {value}: "
                    "fix the results before writing a baseline"
                )
        values = {
            key: float(value)
            for key, value in record.items()
            if key not in KEY_COLUMNS
            and key not in NOT_IN_BASELINE
            and isinstance(value, int | float)
            and not isinstance(value, bool)
            and math.isfinite(value)
        }
        results.setdefault(record["sae"], {}).setdefault(record["eval"], {})[record["mode"]] = (
            values
        )
        if isinstance(record.get("protocol"), str):
            protocols.setdefault(record["sae"], {})[record["eval"]] = record["protocol"]
        if isinstance(solved := _solved(record), str):
            objectives.setdefault(record["sae"], {})[record["eval"]] = solved
    document = {"format": FORMAT, "version": 1, "results": results}
    concepts = concept_values(frame)
    return (
        document
        | ({"protocols": protocols} if protocols else {})
        | ({"objectives": objectives} if objectives else {})
        | ({"concepts": concepts} if concepts else {})
    )


def concept_values(frame: pd.DataFrame) -> dict[str, Any]:
    """sae → eval → mode → metric → {concept: value}: the per-concept values behind each concept-averaged
    metric of the rows that carry them (``load_results(..., evidence=True)``), so that a later run is
    judged on the concepts both define."""
    out: dict[str, Any] = {}
    if EVIDENCE not in frame.columns:
        return out
    for record in frame.to_dict("records"):
        evidence = record.get(EVIDENCE)
        if isinstance(evidence, dict):
            by_metric = {metric: values for (metric, _), values in evidence.items()}
            out.setdefault(record["sae"], {}).setdefault(record["eval"], {})[record["mode"]] = (
                by_metric
            )
    return out


def paired_means(
    baseline: dict[str, float], current: dict[str, float]
) -> tuple[float, float, int] | None:
    """(baseline mean, current mean, n) over the concepts both define; None when they share none."""
    means, n_common = common_concept_means({"baseline": baseline, "current": current})
    if not n_common:
        return None
    before, now = means["baseline"], means["current"]
    assert before is not None and now is not None
    return before, now, n_common


def read_baseline_concepts(path: str | Path) -> dict[str, Any]:
    """The baseline's per-concept values (sae → eval → mode → metric → {concept: value}); {} for a
    baseline without them; a malformed section is an InputError."""
    document = json.loads(Path(path).read_text())
    concepts = document.get("concepts", {})
    for sae, evals in concepts.items() if isinstance(concepts, dict) else [(None, None)]:
        for modes in evals.values() if isinstance(evals, dict) else [None]:
            for metrics in modes.values() if isinstance(modes, dict) else [None]:
                for values in metrics.values() if isinstance(metrics, dict) else [None]:
                    if not isinstance(values, dict) or not all(
                        isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
                        for v in values.values()
                    ):
                        raise InputError(
                            f'baseline {path}: "concepts" must map sae → eval → mode → metric → '
                            f"{{concept: number}} (at SAE {sae!r})"
                        )
    return concepts if isinstance(concepts, dict) else {}


def read_baseline(path: str | Path) -> dict[str, dict[str, dict[str, dict[str, float]]]]:
    """The baseline's results; any malformation is an InputError naming the file and what is wrong."""
    return read_baseline_document(path)[0]


def read_baseline_document(
    path: str | Path,
) -> tuple[dict[str, Any], dict[str, dict[str, str]], dict[str, dict[str, str]]]:
    """(results, protocols: sae → eval → metric protocol, objectives: sae → eval → the problem the modes
    solved) of a baseline file."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"baseline not found: {path}")
    try:
        document = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise InputError(f"baseline {path} is not readable JSON ({type(exc).__name__})") from None
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise InputError(f'baseline {path} is not a {FORMAT} file (no "format": "{FORMAT}")')
    if document.get("version") != 1:
        raise InputError(f"baseline {path}: unsupported version {document.get('version')!r}")
    results = document.get("results")
    if not isinstance(results, dict) or not results:
        raise InputError(f'baseline {path}: "results" must be a non-empty object')
    for sae, evals in results.items():
        if not isinstance(evals, dict):
            raise InputError(f"baseline {path}: results[{sae!r}] must be an object of evals")
        for eval_name, modes in evals.items():
            if not isinstance(modes, dict):
                raise InputError(
                    f"baseline {path}: results[{sae!r}][{eval_name!r}] must be an object of modes"
                )
            for mode, metrics in modes.items():
                where = f"results[{sae!r}][{eval_name!r}][{mode!r}]"
                if not isinstance(metrics, dict):
                    raise InputError(f"baseline {path}: {where} must be an object of metrics")
                for metric, value in metrics.items():
                    if (
                        isinstance(value, bool)
                        or not isinstance(value, int | float)
                        or not math.isfinite(value)
                    ):
                        raise InputError(
                            f"baseline {path}: {where}[{metric!r}] must be a finite number"
                        )
    protocols = document.get("protocols", {})
    if not isinstance(protocols, dict) or not all(
        isinstance(evals, dict) and all(isinstance(p, str) for p in evals.values())
        for evals in protocols.values()
    ):
        raise InputError(f'baseline {path}: "protocols" must map SAE → eval → protocol name')
    objectives = document.get("objectives", {})
    if not isinstance(objectives, dict) or not all(
        isinstance(evals, dict) and all(isinstance(o, str) for o in evals.values())
        for evals in objectives.values()
    ):
        raise InputError(f'baseline {path}: "objectives" must map SAE → eval → objective name')
    return results, protocols, objectives


def status_of(
    metric: str,
    baseline: float,
    current: float,
    rtol: float,
    atol: float,
    *,
    direction: int | None = None,
) -> str:
    """How a checked metric moved: worse / better / within tolerance, or changed (no direction).
    ``direction``: +1 higher is worse, −1 lower is worse, 0 none; None: as the registered evals declare."""
    if direction is None:
        direction = direction_of("", metric, discover_evals())
    if not math.isfinite(current):
        return "worse"
    diff = current - baseline
    if abs(diff) <= atol + rtol * abs(baseline):
        return "within tolerance"
    if direction == 0:
        return "changed"
    return "worse" if direction * diff > 0 else "better"


def check_tolerances(rtol: float, atol: float) -> None:
    if not (rtol >= 0 and atol >= 0 and math.isfinite(rtol) and math.isfinite(atol)):
        raise InputError(f"--rtol and --atol must be non-negative numbers, got {rtol} and {atol}")


def compare_with_baseline(
    frame: pd.DataFrame,
    baseline: dict[str, Any],
    *,
    rtol: float = 0.05,
    atol: float = 0.01,
    metrics: list[str] | None = None,
    registry: dict | None = None,
    protocols: dict[str, dict[str, str]] | None = None,
    objectives: dict[str, dict[str, str]] | None = None,
    concepts: dict[str, Any] | None = None,
) -> tuple[list[Check], list[str]]:
    """(every baseline metric — or only ``metrics`` — against the results, notes to report first).

    A metric, mode or SAE the results lack is a check with status "missing". Where λ differs from the
    baseline's, the metrics the eval declares λ-dependent (``lambda_dependent``: objective, gaps) are
    "not judged" and a note says so. Results computed under another metric protocol than the baseline's
    (``protocols``), or whose modes solved another problem (``objectives``; a baseline without the entry
    was made when every mode solved l1), are refused (InputError), as is a ``--metric`` the baseline
    lacks. A concept-averaged metric with per-concept values in the baseline (``concepts``) and in the
    results is judged on the concepts both define: both means re-taken over them, with a note when that
    is fewer than either side's."""
    registry = discover_evals() if registry is None else registry
    check_tolerances(rtol, atol)
    wanted = set(metrics or [])
    known = {
        m
        for evals in baseline.values()
        for modes in evals.values()
        for ms in modes.values()
        for m in ms
    }
    unknown = sorted(wanted - known)
    if unknown:
        raise InputError(
            f"--metric {unknown[0]} is not in the baseline (it has: {', '.join(sorted(known))})"
        )
    indexed = {(r["sae"], r["eval"], r["mode"]): r for r in frame.to_dict("records")}
    checks, notes = [], []
    for sae, evals in baseline.items():
        for eval_name, modes in evals.items():
            entry = registry.get(eval_name)
            dependent = set(entry.lambda_dependent) if entry is not None else set()
            for mode, values in modes.items():
                record = indexed.get((sae, eval_name, mode))
                if record is not None:
                    _check_protocol(
                        record, (protocols or {}).get(sae, {}).get(eval_name, "default")
                    )
                    _check_objective(record, (objectives or {}).get(sae, {}).get(eval_name, "l1"))
                moved = _lambda_moved(values, record)
                if moved and dependent & set(values):
                    notes.append(
                        f"λ changed for {sae} {eval_name} {mode}: {moved} — "
                        f"{', '.join(sorted(dependent & set(values)))} not judged across different λ"
                    )
                per_concept = (concepts or {}).get(sae, {}).get(eval_name, {}).get(mode, {})
                evidence = None if record is None else record.get(EVIDENCE)
                now_per_concept = (
                    {metric: values for (metric, _), values in evidence.items()}
                    if isinstance(evidence, dict)
                    else {}
                )
                for metric, base_value in values.items():
                    direction = direction_of(eval_name, metric, registry)
                    if not (metric in wanted if wanted else direction != 0):
                        continue
                    current = None if record is None else record.get(metric)
                    if metric in per_concept and metric in now_per_concept:
                        paired = paired_means(per_concept[metric], now_per_concept[metric])
                        if paired is None:
                            current = None
                            notes.append(
                                f"{metric} of {sae} {eval_name} {mode}: no concept defined both in "
                                "the baseline and now: not compared"
                            )
                        else:
                            base_value, current, n = paired
                            sides = (len(per_concept[metric]), len(now_per_concept[metric]))
                            if n < max(sides):
                                notes.append(
                                    f"{metric} of {sae} {eval_name} {mode}: judged on the {n} "
                                    f"concepts both define (baseline {sides[0]}, now {sides[1]})"
                                )
                    if current is None or (isinstance(current, float) and math.isnan(current)):
                        status, current = "missing", None
                    elif moved and metric in dependent:
                        status = "not judged (λ changed)"
                    else:
                        status = status_of(
                            metric,
                            float(base_value),
                            float(current),
                            rtol,
                            atol,
                            direction=direction,
                        )
                    value = None if current is None else float(current)
                    checks.append(
                        Check(sae, eval_name, mode, metric, float(base_value), value, status)
                    )
    if not checks:
        raise InputError(
            "the baseline holds no metric to check (none with a direction; name some with --metric)"
        )
    return checks, notes


def _check_protocol(record: dict, expected: str) -> None:
    found = record.get("protocol")
    if isinstance(found, str) and found != expected:
        raise InputError(
            f"{record['eval']} results for SAE {record['sae']} were computed with --protocol {found}, the "
            f"baseline with --protocol {expected}: compare like with like"
        )


def _solved(record: dict) -> str | None:
    """The problem a record's mode solved (its ``objective``); None for a mode that solves none — the
    encoder, LocA — whose own result file (evals that write one per mode) records only a default."""
    from sae_bench_amortization.modes import role_of

    return None if role_of(record["mode"]) == "encoder" else record.get(OBJECTIVE_COLUMN)


def _check_objective(record: dict, expected: str) -> None:
    found = _solved(record)
    if isinstance(found, str) and found != expected:
        raise InputError(
            f"{record['eval']} results for SAE {record['sae']} solved the {found} problem (--objective), "
            f"the baseline the {expected} problem: compare like with like (rerun with --objective "
            f"{expected}, or write a new baseline)"
        )


def _lambda_moved(values: dict, record: dict | None) -> str | None:
    """'old → new' when the row's λ differs from the baseline's (relative 1e-6), else None."""
    old = values.get("l1_coefficient")
    new = None if record is None else record.get("l1_coefficient")
    if old is None or new is None or (isinstance(new, float) and math.isnan(new)):
        return None
    if abs(float(new) - float(old)) <= 1e-6 * max(abs(float(old)), 1e-30):
        return None
    return f"{float(old):.4g} → {float(new):.4g}"


STATUS_ORDER = (
    "worse",
    "changed",
    "missing",
    "not judged (λ changed)",
    "better",
    "within tolerance",
)


def format_checks(checks: list[Check], notes: Sequence[str] = ()) -> str:
    """Notes first (λ changes), then every check whose value moved or could not be made, as a table, then
    one summary line."""
    shown = [c for c in checks if c.current != c.baseline]
    lines = list(notes)
    if shown:
        rows = [
            [c.sae, c.eval, c.mode, c.metric, f"{c.baseline:.4g}",
             "missing" if c.current is None else f"{c.current:.4g}", c.status]
            for c in sorted(shown, key=lambda c: STATUS_ORDER.index(c.status))
        ]  # fmt: skip
        header = ["sae", "eval", "mode", "metric", "baseline", "current", "status"]
        lines += aligned(header, rows, left=4)
    counts = {status: sum(c.status == status for c in checks) for status in STATUS_ORDER}
    lines.append(
        f"{len(checks)} metrics checked: {counts['worse']} worse, {counts['changed']} changed (no direction), "
        f"{counts['better']} better, {counts['within tolerance']} within tolerance, "
        f"{counts['missing']} missing, {counts['not judged (λ changed)']} not judged (λ changed)"
    )
    return "\n".join(lines)


def regress(
    results: str | Path,
    baseline: str | Path,
    *,
    rtol: float = 0.05,
    atol: float = 0.01,
    metrics: list[str] | None = None,
    registry: dict | None = None,
    require_all: bool = False,
) -> tuple[str, bool]:
    """``saebench regress``: (the report, whether it fails: something got worse or changed; something is
    missing with ``require_all``; or nothing of the baseline was found at all)."""
    if baseline == "":
        raise InputError("--baseline / --write-baseline must name a file")
    check_tolerances(rtol, atol)
    frame = load_results(results, registry, evidence=True)
    expected, protocols, objectives = read_baseline_document(baseline)
    checks, notes = compare_with_baseline(
        frame,
        expected,
        rtol=rtol,
        atol=atol,
        metrics=metrics,
        registry=registry,
        protocols=protocols,
        objectives=objectives,
        concepts=read_baseline_concepts(baseline),
    )
    missing = [c for c in checks if c.status == "missing"]
    failed = (
        any(c.status in ("worse", "changed") for c in checks)
        or (require_all and bool(missing))
        or len(missing) == len(checks)
    )
    return format_checks(checks, notes), failed


def write_baseline(
    results: str | Path, target: str | Path, registry: dict | None = None, overwrite: bool = False
) -> str:
    """``saebench regress --write-baseline``: the results as a baseline file; returns what was done."""

    if target == "":
        raise InputError("--baseline / --write-baseline must name a file")
    frame = load_results(results, registry, evidence=True)
    target = Path(target)
    if not target.parent.is_dir():
        raise InputError(f"--write-baseline folder not found: {target.parent}")
    if target.is_dir():
        raise InputError(f"--write-baseline is a folder, expected a file path: {target}")

    read = named(("--results", str(path)) for path in iter_result_files(Path(results)))
    check_apart({"--write-baseline": target}, read)
    refuse_existing(target, "--write-baseline", overwrite)
    write_text_atomic(
        target, json.dumps(baseline_from_results(frame), indent=1, sort_keys=True) + "\n"
    )
    return f"wrote a baseline of {frame['sae'].nunique()} SAEs ({len(frame)} rows) to {target}"
