"""Compact builders for SAEBench's typed result classes (``sae_bench.evals.base_eval_output``): every eval
output has the same six fields around its own config, metric categories and detail rows, so an eval
declares only what is its own."""

from __future__ import annotations

import sys
import types
from typing import Any

from pydantic import ConfigDict, Field
from pydantic.dataclasses import dataclass
from sae_bench.evals.base_eval_output import DEFAULT_DISPLAY, BaseEvalOutput, BaseMetricCategories


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
