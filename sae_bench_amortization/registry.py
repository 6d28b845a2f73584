"""Eval registry: evals are discovered through Python entry points (group ``sae_bench.evals``).

Any installed package can add an eval by pointing an entry point in that group at an :class:`EvalEntry`::

    [project.entry-points."sae_bench.evals"]
    my_eval = "my_package.my_eval:EVAL"
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, Protocol

from sae_bench_amortization.errors import InputError, suggest
from sae_bench_amortization.loading import SAESpec

ENTRY_POINT_GROUP = "sae_bench.evals"


class ActivationFactory(Protocol):
    def for_sae(self, sae: Any) -> Any:
        """The activation source (``ActivationSource``) this SAE reads."""
        ...


@dataclass
class EvalRequest:
    """Everything ``saebench run`` hands an eval."""

    saes: list[SAESpec]
    output_dir: Path  # root; an eval writes into output_dir / <eval name>
    activations: ActivationFactory | None = None
    model_name: str | None = None
    device: str = "cpu"
    dtype: str = "float32"
    batch_size: int = 4096
    seed: int = 42
    force_rerun: bool = False
    n_tokens: int | None = None
    options: dict[str, Any] = field(default_factory=dict)
    inference: Any = None  # InferenceSettings: modes and λ (None: amortized only)


@dataclass
class SAEOutcome:
    """What happened to one SAE in one eval (for the summary table)."""

    sae_name: str
    status: str  # "written" or "skipped"
    path: Path | None = None
    metrics: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class EvalEntry:
    """A registered eval: a name, a one-line description and a function running it."""

    name: str
    description: str
    run: Callable[[EvalRequest], list[SAEOutcome]]
    needs: str = (
        "activations"  # "activations" (any source) or "model" (a TransformerLens model name)
    )


def discover_evals() -> dict[str, EvalEntry]:
    """Every eval registered under the entry-point group, by name (a broken plugin is reported, not fatal)."""
    found: dict[str, EvalEntry] = {}
    for point in entry_points(group=ENTRY_POINT_GROUP):
        try:
            entry = point.load()
        except Exception as exc:  # noqa: BLE001 - a broken plugin must not break the CLI
            print(f"warning: eval '{point.name}' could not be loaded: {exc}", file=sys.stderr)
            continue
        if not isinstance(entry, EvalEntry):
            print(
                f"warning: entry point '{point.name}' is not an EvalEntry; ignored", file=sys.stderr
            )
            continue
        found.setdefault(point.name, entry)
    return dict(sorted(found.items()))


def get_eval(name: str, registry: dict[str, EvalEntry] | None = None) -> EvalEntry:
    registry = discover_evals() if registry is None else registry
    if name not in registry:
        raise InputError(
            f"unknown eval '{name}'{suggest(name, list(registry))}; see 'saebench list'"
        )
    return registry[name]
