"""The shared pieces of SAEBench's typed result classes (``sae_bench.evals.base_eval_output``): field
helpers for metrics (with their facts), settings, categories and the six fields every eval output has, and
the ground-truth metrics a synthetic source adds. Each eval writes its own classes out with them."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, Unpack

from pydantic import Field
from pydantic.dataclasses import dataclass
from pydantic.fields import FieldInfo
from sae_bench.evals.base_eval_output import DEFAULT_DISPLAY, BaseMetricCategories, BaseMetrics

from sae_bench_amortization.registry import FactArguments, MetricFacts


def _fields(cls: type) -> dict[str, FieldInfo]:
    """A pydantic dataclass's fields (none for another class)."""
    return getattr(cls, "__pydantic_fields__", {})


def _with_facts(info: object, facts: FactArguments) -> Any:
    """``info`` (a pydantic FieldInfo) carrying the metric's facts; they do not enter the JSON schema."""
    if not isinstance(info, FieldInfo):
        raise TypeError(f"pydantic's Field() made a {type(info).__name__}")
    if facts:
        info.metadata.append(MetricFacts(**facts))
    return info


def metric(
    title: str, description: str, display: bool = False, **facts: Unpack[FactArguments]
) -> Any:
    """A metric field (``display``: shown by default in SAEBench's tables); ``facts``: what the reports
    know of it (:class:`~sae_bench_amortization.registry.MetricFacts`: direction, bounds, label, ...)."""
    info = Field(
        title=title, description=description, json_schema_extra=DEFAULT_DISPLAY if display else None
    )
    return _with_facts(info, facts)


def optional_metric(title: str, description: str, **facts: Unpack[FactArguments]) -> Any:
    """A metric field that may be absent from a result (null; e.g. measured under one protocol only)."""
    return _with_facts(Field(default=None, title=title, description=description), facts)


def setting(default: Any, title: str, description: str) -> Any:
    """A config field with its default (a list default is copied per instance)."""
    if isinstance(default, list):
        return Field(default_factory=lambda: list(default), title=title, description=description)
    return Field(default=default, title=title, description=description)


def category(title: str, description: str) -> Any:
    """A metric category of a ``BaseMetricCategories`` (shown by default in SAEBench's tables)."""
    return Field(title=title, description=description, json_schema_extra=DEFAULT_DISPLAY)


def details_field(title: str, description: str) -> Any:
    """An eval output's ``eval_result_details`` (a list of detail rows, empty by default)."""
    return Field(default_factory=list, title=title, description=description)


def type_id_field(name: str) -> Any:
    """An eval output's ``eval_type_id``: the eval's name."""
    return Field(default=name, title="Eval Type ID", description=name)


def ground_truth_category() -> Any:
    """The category ``ground_truth`` of a ``<Categories>WithGroundTruth`` class (:func:`with_ground_truth`)."""
    return Field(
        title="Ground Truth (SAE-Lens synthetic metrics)",
        description="On a synthetic source: recovery of the planted features by these codes",
    )


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


def _per_mode(metric_name: str) -> Any:
    """A field of :class:`GroundTruthByMode`: the list of ``metric_name``'s values, one per mode."""
    return setting([], _fields(GroundTruthMetrics)[metric_name].title or metric_name, "Per mode")


@dataclass
class GroundTruthByMode(BaseMetrics):
    """:class:`GroundTruthMetrics` of several modes as parallel lists (SAEBench's metrics are flat)."""

    modes: list[str] = setting([], "Modes", "The mode of each position in the lists below")
    mcc: list[float | None] = _per_mode("mcc")
    uniqueness: list[float | None] = _per_mode("uniqueness")
    dead_latents: list[int | None] = _per_mode("dead_latents")
    dead_fraction: list[float | None] = _per_mode("dead_fraction")
    sae_l0: list[float | None] = _per_mode("sae_l0")
    true_l0: list[float | None] = _per_mode("true_l0")
    shrinkage: list[float | None] = _per_mode("shrinkage")
    precision: list[float | None] = _per_mode("precision")
    recall: list[float | None] = _per_mode("recall")
    f1: list[float | None] = _per_mode("f1")
    accuracy: list[float | None] = _per_mode("accuracy")
    n_true_features: list[int | None] = _per_mode("n_true_features")
    null_reason: list[str | None] = _per_mode("null_reason")

    @classmethod
    def of(cls, by_mode: dict[str, GroundTruthMetrics]) -> GroundTruthByMode:
        """One instance from {mode: :class:`GroundTruthMetrics`}."""
        columns = {
            f.name: [getattr(metrics, f.name) for metrics in by_mode.values()]
            for f in dataclasses.fields(GroundTruthMetrics)
        }
        return cls(modes=list(by_mode), **columns)


def ground_truth_metrics(values: dict[str, Any]) -> GroundTruthMetrics:
    """From :meth:`GroundTruthAccumulator.metrics`: its ``undefined`` reasons as one ``null_reason``."""
    undefined = values.get("undefined") or {}
    reason = "; ".join(f"{name}: {why}" for name, why in undefined.items()) or None
    known = {f.name for f in dataclasses.fields(GroundTruthMetrics)}
    return GroundTruthMetrics(
        **{k: v for k, v in values.items() if k in known and k != "null_reason"},
        null_reason=reason,
    )


def with_ground_truth(
    categories: BaseMetricCategories, ground_truth: BaseMetrics
) -> BaseMetricCategories:
    """``categories`` plus the category ``ground_truth`` (SAEBench allows no empty category, so results
    off synthetic sources have none): an instance of the subclass of its class that the eval writes out
    as ``<Categories>WithGroundTruth``, with ``ground_truth: <type of ground_truth>``."""
    base, kind = type(categories), type(ground_truth)
    variants: list[Callable[..., BaseMetricCategories]] = [
        cls
        for cls in base.__subclasses__()
        if "ground_truth" in _fields(cls) and _fields(cls)["ground_truth"].annotation is kind
    ]
    if not variants:
        raise TypeError(
            f"{base.__qualname__} has no subclass with a field ground_truth: {kind.__qualname__}; "
            f"declare {base.__qualname__}WithGroundTruth beside it (see runner.outputs)"
        )
    values = {f.name: getattr(categories, f.name) for f in dataclasses.fields(base)}
    return variants[0](**values, ground_truth=ground_truth)
