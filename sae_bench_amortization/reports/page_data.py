"""What ``saebench report``'s page shows, as plain JSON-ready data (no HTML here): the overview table with
each value's direction against the SAE's encoder, the per-concept evidence, the ground truth and each
result's provenance."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from sae_bench_amortization.metrics.pairing import is_defined
from sae_bench_amortization.registry import (
    HIGHER_IS_WORSE,
    TOPICS,
    EvalEntry,
    MetricFacts,
    facts_by_column,
)
from sae_bench_amortization.reports.compare import KEY_COLUMNS, OBJECTIVE_COLUMN, encoder_of
from sae_bench_amortization.reports.plots import per_sae_and_mode
from sae_bench_amortization.reports.scan import ResultFile, Scan

# beside each row, not among the metrics
SETTING_COLUMNS = ("protocol", OBJECTIVE_COLUMN, "l1_coefficient")
# per-concept values shown side by side per mode (key in a concept row, its title)
CONCEPT_VALUES = (
    ("delta_f1", "ΔF1"),
    ("full_absorption_rate", "absorbed share of tokens"),
    ("absorption_rate", "absorbed share of misses"),
)
# per concept and mode, as the result stores them: token counts, then the latents they concern
COUNT_KEYS = ("n_concept_tokens", "n_probe_fires", "n_main_silent", "n_absorbed", "main_latents",
              "absorbing_latents", "top_latents")  # fmt: skip
RELATIVE_SAME = 1e-9  # |a − b| ≤ this × max(|a|, |b|, 1): the same value, no colour


def _setting(value: Any) -> Any:
    """A row's setting (protocol, objective, λ) as JSON: None where missing or NaN."""
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else value


def _json_number(value: Any) -> float | None:
    return float(value) if is_defined(value) and math.isfinite(float(value)) else None


def judgement(value: float | None, encoder: float | None, direction: int) -> str:
    """'better', 'worse' or 'same' for ``value`` against the encoder's, by the metric's direction (+1:
    higher is worse, −1: lower is worse); '' when either is undefined or the metric has no direction."""
    if value is None or encoder is None or direction == 0:
        return ""
    if abs(value - encoder) <= RELATIVE_SAME * max(abs(value), abs(encoder), 1.0):
        return "same"
    worse = value > encoder if direction == HIGHER_IS_WORSE else value < encoder
    return "worse" if worse else "better"


def _direction(facts: MetricFacts | None) -> int:
    return 0 if facts is None else int(facts.direction)


def _column_order(facts: MetricFacts | None, name: str) -> tuple:
    """The eval's own table order first (its declared column), then by topic, then by name."""
    if facts is None:
        return (2, 0, len(TOPICS), name)
    if facts.column is not None:
        return (0, facts.column, 0, name)
    return (1, 0, TOPICS.index(facts.topic), name)


def null_reasons(files: list[ResultFile]) -> dict[tuple[str, str], dict[str, str]]:
    """(sae, mode) → {metric: why it is null}, from the results' per-mode ``undefined`` maps."""
    reasons: dict[tuple[str, str], dict[str, str]] = {}
    for result in files:
        details = result.data.get("eval_result_details")
        sae = result.rows[0]["sae"] if result.rows else ""
        for detail in details if isinstance(details, list) else []:
            undefined = detail.get("undefined") if isinstance(detail, dict) else None
            if isinstance(undefined, dict) and "mode" in detail:
                found = reasons.setdefault((sae, str(detail["mode"])), {})
                found.update({str(k): str(v) for k, v in undefined.items()})
    return reasons


def overview(scan: Scan, registry: Mapping[str, EvalEntry]) -> dict[str, Any]:
    """The overview: ``columns`` (key, label, direction, legend) and ``rows`` (one per SAE × mode: its
    settings, and per metric the value, its judgement against the SAE's encoder and, when null, why)."""
    frame = scan.frame()
    facts = facts_by_column(registry)
    table = per_sae_and_mode(frame.drop(columns=["path"]), registry)
    metrics = [c for c in table.columns if c not in (*KEY_COLUMNS, *SETTING_COLUMNS)]
    metrics = [c for c in metrics if c in facts or bool(table[c].map(is_defined).any())]
    metrics.sort(key=lambda name: _column_order(facts.get(name), name))
    columns = [
        {
            "key": name,
            "label": (facts[name].short or facts[name].label or name) if name in facts else name,
            "title": (facts[name].legend or facts[name].label or name) if name in facts else name,
            "direction": _direction(facts.get(name)),
        }
        for name in metrics
    ]
    reasons = null_reasons(scan.files)
    rows = []
    for sae, rows_of_sae in table.groupby("sae", sort=False):
        encoder = encoder_of([str(m) for m in rows_of_sae["mode"]])
        records = rows_of_sae.to_dict("records")
        base = next((r for r in records if r["mode"] == encoder), {})
        for record in records:
            why = reasons.get((str(sae), str(record["mode"])), {})
            cells = {}
            for column in columns:
                key = column["key"]
                value = _json_number(record.get(key))
                cells[key] = {
                    "value": value,
                    "judged": ""
                    if record["mode"] == encoder
                    else judgement(value, _json_number(base.get(key)), column["direction"]),
                    "why": None if value is not None else why.get(key, "not measured in this mode"),
                }
            rows.append(
                {
                    "sae": str(sae),
                    "mode": str(record["mode"]),
                    "encoder": record["mode"] == encoder,
                    "settings": {
                        name: _setting(record.get(name))
                        for name in SETTING_COLUMNS
                        if name in record
                    },
                    "cells": cells,
                }
            )
    return {"columns": columns, "rows": rows}


def concept_tables(scan: Scan) -> list[dict[str, Any]]:
    """Per result with per-concept evidence (amortization_gap's ``concepts`` per mode): one table per SAE
    and eval, a row per concept: its tokens, main and absorbing latents (from the encoder's row), the
    splitting probe's top latents, each mode's values side by side, and whether every mode defines each
    value (only those concepts enter a paired mean)."""
    tables = []
    for result in scan.files:
        details = result.data.get("eval_result_details")
        per_mode = {
            str(d["mode"]): d["concepts"]
            for d in (details if isinstance(details, list) else [])
            if isinstance(d, dict) and isinstance(d.get("concepts"), list) and "mode" in d
        }
        if not per_mode or not result.rows:
            continue
        modes = list(per_mode)
        encoder = encoder_of(modes) or modes[0]
        by_mode = {
            mode: {str(c.get("concept")): c for c in concepts if isinstance(c, dict)}
            for mode, concepts in per_mode.items()
        }
        concepts = list(dict.fromkeys(name for mode in modes for name in by_mode[mode]))
        rows = []
        for name in concepts:
            first = by_mode[encoder].get(name) or next(
                by_mode[m][name] for m in modes if name in by_mode[m]
            )
            values = {
                key: {mode: _json_number(by_mode[mode].get(name, {}).get(key)) for mode in modes}
                for key, _ in CONCEPT_VALUES
            }
            rows.append(
                {
                    "concept": name,
                    "n_tokens": first.get("n_tokens") or first.get("n_positives"),
                    "main_latents": first.get("main_latents"),
                    "absorbing_latents": first.get("absorbing_latents"),
                    "top_latents": first.get("top_latents"),
                    "counts": {
                        mode: {key: by_mode[mode].get(name, {}).get(key) for key in COUNT_KEYS}
                        for mode in modes
                    },
                    "values": values,
                    "in_every_mode": {
                        key: all(v is not None for v in values[key].values())
                        for key, _ in CONCEPT_VALUES
                    },
                }
            )
        tables.append(
            {
                "sae": result.rows[0]["sae"],
                "eval": result.rows[0]["eval"],
                "path": result.path,
                "modes": modes,
                "encoder": encoder,
                "values": [{"key": k, "title": t} for k, t in CONCEPT_VALUES],
                "concepts": rows,
            }
        )
    return tables


def ground_truth(scan: Scan) -> list[dict[str, Any]]:
    """Per result on a source with planted truth: each mode's MCC and per-latent detector scores."""
    blocks = []
    for result in scan.files:
        metrics = result.data.get("eval_result_metrics")
        truth = metrics.get("ground_truth") if isinstance(metrics, dict) else None
        if not isinstance(truth, dict) or not isinstance(truth.get("modes"), list):
            continue
        keys = [k for k in ("mcc", "uniqueness", "precision", "recall", "f1", "dead_fraction")
                if isinstance(truth.get(k), list)]  # fmt: skip
        modes = [str(m) for m in truth["modes"]]
        blocks.append(
            {
                "sae": result.rows[0]["sae"] if result.rows else "",
                "eval": result.rows[0]["eval"] if result.rows else "",
                "keys": keys,
                "rows": [
                    {"mode": mode, **{k: _json_number(truth[k][i]) for k in keys}}
                    for i, mode in enumerate(modes)
                ],
            }
        )
    return blocks


def provenance(scan: Scan) -> list[dict[str, Any]]:
    """Per result: where it came from (its fingerprint's fields, the SAE, the config's source, the
    package version), as flat key → text pairs."""
    out = []
    for result in scan.files:
        data = result.data
        fields: dict[str, str] = {}
        for key in ("sae_lens_release_id", "sae_lens_id", "sae_lens_version", "sae_bench_commit_hash",
                    "eval_id", "datetime_epoch_millis"):  # fmt: skip
            if data.get(key) is not None:
                fields[key] = str(data[key])
        config = data.get("eval_config")
        if isinstance(config, dict):
            for key in ("activation_source", "n_tokens", "protocol", "objective", "definition"):
                if config.get(key) is not None:
                    fields[f"eval_config.{key}"] = str(config[key])
        fingerprint = data.get("fingerprint")
        if isinstance(fingerprint, dict):
            for key, value in _flatten(fingerprint, "fingerprint"):
                fields[key] = value
        out.append({"path": result.path, "sae": result.rows[0]["sae"] if result.rows else "",
                    "eval": result.rows[0]["eval"] if result.rows else "", "fields": fields})  # fmt: skip
    return out


def _flatten(value: Any, prefix: str, depth: int = 0) -> list[tuple[str, str]]:
    if isinstance(value, dict) and depth < 3:
        return [
            pair
            for key, inner in value.items()
            for pair in _flatten(inner, f"{prefix}.{key}", depth + 1)
        ]
    text = value if isinstance(value, str) else repr(value)
    return [(prefix, text if len(text) <= 300 else text[:297] + "...")]
