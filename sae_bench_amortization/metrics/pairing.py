"""Concept-averaged metrics compared like with like: each side's mean over the concepts every side
defines the metric on, never over different concept sets (pure math, no I/O)."""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping
from typing import TypeGuard, TypeVar

Side = TypeVar("Side", bound=Hashable)

# concept-averaged metrics of a mode row: (key, the concept rows it comes from, its count, its name)
PAIRED_METRICS = (
    ("delta_f1", "splitting", "n_concepts_delta_f1", "ΔF1"),
    ("absorption_rate", "absorption", "n_concepts_absorption", "the conditional absorption rate"),
    ("full_absorption_rate", "absorption", "n_concepts_full_absorption", "full absorption"),
)


def is_defined(value: object) -> TypeGuard[int | float]:
    """A measured number: not None, not NaN (a metric that cannot be measured is undefined, not 0)."""
    if value is None or isinstance(value, bool):
        return False
    return isinstance(value, int | float) and not math.isnan(value)


def defined_only(values: Mapping[str, object]) -> dict[str, float]:
    """{concept: value} keeping only the concepts with a measured value."""
    return {concept: float(v) for concept, v in values.items() if is_defined(v)}


def common_concept_means(
    values_by_side: Mapping[Side, Mapping[str, object]],
) -> tuple[dict[Side, float | None], int]:
    """Per side (a mode, a result, a baseline), the mean of its {concept: value} over the concepts where
    every side defines it, and how many concepts that is; a side's mean is None when there are none.
    None and NaN values count as undefined."""
    defined = {side: defined_only(values) for side, values in values_by_side.items()}
    common = set.intersection(*(set(v) for v in defined.values())) if defined else set()
    # sorted: the same sum whatever order the concepts came in
    ordered = sorted(common)
    means: dict[Side, float | None] = {
        side: (sum(values[c] for c in ordered) / len(ordered) if ordered else None)
        for side, values in defined.items()
    }
    return means, len(ordered)
