"""Compact builders for SAEBench's typed result classes (``sae_bench.evals.base_eval_output``): every eval
output has the same six fields around its own config, metric categories and detail rows, so an eval
declares only what is its own."""

from __future__ import annotations

import dataclasses
import sys
import types
from typing import Any

from pydantic import ConfigDict, Field
from pydantic.dataclasses import dataclass
from sae_bench.evals.base_eval_output import (
    DEFAULT_DISPLAY,
    BaseEvalOutput,
    BaseMetricCategories,
    BaseMetrics,
)


def metric(title: str, description: str, display: bool = False) -> Any:
    """A metric field (``display``: shown by default in SAEBench's tables)."""
    return Field(
        title=title, description=description, json_schema_extra=DEFAULT_DISPLAY if display else None
    )


def optional_metric(title: str, description: str) -> Any:
    """A metric field that may be absent from a result (null; e.g. measured under one protocol only)."""
    return Field(default=None, title=title, description=description)


def setting(default: Any, title: str, description: str) -> Any:
    """A config field with its default (a list default is copied per instance)."""
    if isinstance(default, list):
        return Field(default_factory=lambda: list(default), title=title, description=description)
    return Field(default=default, title=title, description=description)


def _module() -> str:
    return sys._getframe(2).f_globals["__name__"]


def metric_categories(
    name: str, category: str, metrics: type, title: str, description: str
) -> type:
    """A ``BaseMetricCategories`` with one category ``category`` holding ``metrics``."""
    namespace = {
        "__annotations__": {category: metrics},
        category: Field(title=title, description=description, json_schema_extra=DEFAULT_DISPLAY),
        "__module__": _module(),
        "__qualname__": name,
    }
    return dataclass(type(name, (BaseMetricCategories,), namespace))


@dataclass
class GroundTruthMetrics(BaseMetrics):
    """SAE-Lens's synthetic-data metrics for one mode's codes (:mod:`..metrics.ground_truth`)."""

    mcc: float | None = optional_metric(
        "MCC", "Mean |cos| of the Hungarian matching of decoder rows to the true features"
    )
    uniqueness: float | None = optional_metric(
        "Feature Uniqueness", "Distinct true features best-matched by the latents / latents"
    )
    dead_latents: int | None = optional_metric("Dead Latents", "Latents these codes never fire")
    dead_fraction: float | None = optional_metric("Dead Fraction", "dead_latents / d_sae")
    sae_l0: float | None = optional_metric("SAE L0", "Mean active latents per token")
    true_l0: float | None = optional_metric("True L0", "Mean active true features per token")
    shrinkage: float | None = optional_metric("Shrinkage", "Mean ‖x̂‖ / ‖x‖")
    precision: float | None = optional_metric(
        "Precision", "Per latent, as a detector of its best-matching true feature; mean"
    )
    recall: float | None = optional_metric("Recall", "Same detectors: mean recall")
    f1: float | None = optional_metric("F1", "Same detectors: mean F1")
    accuracy: float | None = optional_metric("Accuracy", "Same detectors: mean accuracy")
    n_true_features: int | None = optional_metric("True Features", "Features of the benchmark")
    null_reason: str | None = optional_metric("Null Reason", "Why a metric above is null")


def per_mode_lists(name: str, metrics: type, doc: str) -> type:
    """``metrics``' fields as parallel lists (same titles, one entry per mode) beside ``modes``: SAEBench's
    metric categories are flat, so several modes' values of one metric sit in one list."""
    annotations: dict[str, Any] = {"modes": list[str]}
    namespace: dict[str, Any] = {
        "modes": setting([], "Modes", "The mode of each position in the lists below")
    }
    for field_name, info in metrics.__pydantic_fields__.items():
        annotations[field_name] = list[info.annotation]
        namespace[field_name] = setting([], info.title, "Per mode")

    def of(cls, by_mode: dict[str, Any]):
        """One instance from {mode: ``metrics`` instance}."""
        columns = {
            name: [getattr(m, name) for m in by_mode.values()]
            for name in metrics.__pydantic_fields__
        }
        return cls(modes=list(by_mode), **columns)

    namespace |= {"__annotations__": annotations, "__module__": _module(), "__qualname__": name}
    namespace |= {"__doc__": doc, "of": classmethod(of)}
    return dataclass(type(name, (BaseMetrics,), namespace))


GroundTruthByMode = per_mode_lists(
    "GroundTruthByMode",
    GroundTruthMetrics,
    ":class:`GroundTruthMetrics` of several modes as parallel lists (SAEBench's metrics are flat).",
)


def ground_truth_metrics(values: dict[str, Any]) -> GroundTruthMetrics:
    """From :meth:`GroundTruthAccumulator.metrics`: its ``undefined`` reasons as one ``null_reason``."""
    undefined = values.get("undefined") or {}
    reason = "; ".join(f"{name}: {why}" for name, why in undefined.items()) or None
    known = {f.name for f in dataclasses.fields(GroundTruthMetrics)}
    return GroundTruthMetrics(
        **{k: v for k, v in values.items() if k in known and k != "null_reason"},
        null_reason=reason,
    )


_WITH_GROUND_TRUTH: dict[tuple[type, type], type] = {}


def with_ground_truth(categories: Any, ground_truth: BaseMetrics) -> Any:
    """``categories`` plus the category ``ground_truth`` (SAEBench allows no empty category, so results
    off synthetic sources have none): an instance of a subclass of its class with that field."""
    base, kind = type(categories), type(ground_truth)
    if (base, kind) not in _WITH_GROUND_TRUTH:
        namespace = {
            "__annotations__": {"ground_truth": kind},
            "ground_truth": Field(
                title="Ground Truth (SAE-Lens synthetic metrics)",
                description="On a synthetic source: recovery of the planted features by these codes",
            ),
            "__module__": base.__module__,
            "__qualname__": f"{base.__qualname__}WithGroundTruth",
        }
        _WITH_GROUND_TRUTH[base, kind] = dataclass(
            type(namespace["__qualname__"], (base,), namespace)
        )
    fields = {f.name: getattr(categories, f.name) for f in dataclasses.fields(base)}
    return _WITH_GROUND_TRUTH[base, kind](**fields, ground_truth=ground_truth)


def eval_output(
    name: str,
    eval_type_id: str,
    title: str,
    doc: str,
    config: type,
    categories: type,
    detail: type,
    details_title: str,
    details_description: str,
) -> type:
    """The eval's ``BaseEvalOutput[config, categories, detail]`` with SAEBench's fields."""
    namespace = {
        "__annotations__": {
            "eval_config": config,
            "eval_id": str,
            "datetime_epoch_millis": int,
            "eval_result_metrics": categories,
            "eval_result_details": list[detail],
            "eval_type_id": str,
        },
        "eval_result_details": Field(
            default_factory=list, title=details_title, description=details_description
        ),
        "eval_type_id": Field(default=eval_type_id, title="Eval Type ID", description=eval_type_id),
        "__doc__": doc,
        "__module__": _module(),
        "__qualname__": name,
    }
    base = BaseEvalOutput[config, categories, detail]
    cls = types.new_class(name, (base,), exec_body=lambda body: body.update(namespace))
    return dataclass(config=ConfigDict(title=title))(cls)
