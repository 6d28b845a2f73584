"""The eval contract and its registry. Evals are discovered through Python entry points (group
``sae_bench.evals``); an eval is one folder whose ``EVAL`` is an :class:`EvalEntry` declaring everything the
runner needs — so ``saebench run`` adds its CLI options, ``compare`` and ``regress`` read its metric
directions, and the one runner loop (``runner.loop``) skips, locks, evaluates and writes its results::

    [project.entry-points."sae_bench.evals"]
    my_eval = "my_package.my_eval:EVAL"
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any

from sae_bench_amortization.errors import InputError, suggest

ENTRY_POINT_GROUP = "sae_bench.evals"
HIGHER_IS_WORSE, LOWER_IS_WORSE = 1, -1


@dataclass(frozen=True)
class EvalOption:
    """A command-line option an eval declares. ``saebench run`` adds it (once, however many evals declare
    it); its value fills the eval config's field ``dest``: ``field``, else the flag without dashes.
    ``check(value)`` returns an error message for a bad value, or None."""

    flag: str
    help: str
    type: Callable[[str], Any] = str
    default: Any = None
    metavar: str | None = None
    choices: tuple[str, ...] | None = None
    repeatable: bool = False
    check: Callable[[Any], str | None] | None = None
    field: str | None = None

    @property
    def dest(self) -> str:
        return self.field or self.flag.lstrip("-").replace("-", "_")

    def add_to(self, parser: argparse._ActionsContainer, evals: list[str]) -> None:
        default = [] if self.repeatable else self.default
        shown = "" if self.repeatable or self.default is None else f" (default {self.default})"
        parser.add_argument(
            self.flag,
            dest=self.dest,
            type=self.type,
            default=default,
            metavar=self.metavar,
            choices=self.choices,
            action="append" if self.repeatable else "store",
            help=f"{', '.join(evals)}: {self.help}{shown}",
        )

    def validate(self, value: Any) -> None:
        problem = self.check(value) if self.check is not None and value is not None else None
        if problem:
            raise InputError(f"{self.flag} {problem}, got {value}")


@dataclass(frozen=True)
class EvalEntry:
    """A registered eval.

    name, description: as ``saebench list`` shows them.
    config_class: its SAEBench-style config (a pydantic dataclass); ``config_defaults`` override its
        defaults. The runner fills the fields it knows by name (``n_tokens``, ``batch_size``, ``seed``,
        ``modes``; per mode ``inference_mode``, ``l1_coefficient``, ``lambda_calibration``,
        ``activation_source``) and each declared option fills the field named like it.
    evaluate(context) → Evaluated: the eval on one SAE (× mode); see ``runner.loop.EvalContext``. A
        ``"module:function"`` string is imported on first use (``saebench list`` stays fast).
    options: its own CLI options.
    per_mode: one result per SAE × inference mode (the runner builds each mode's SAE), or one result per
        SAE that compares modes itself (it reads ``context.request.inference``).
    directions: metric → +1 when higher is worse, −1 when lower is worse (compare and regress read it);
        metrics not listed have no direction.
    metric_names: renames into the names ``compare`` shares across evals (e.g. ``mean_l0`` → ``l0``).
    needs: "activations" (any activation source) or "model" (it reads a TransformerLens model itself).
    result_name(spec, mode, modes) → (release, sae_id) of the result file; None: this package's naming.
    lambda_dependent: metrics only comparable at equal λ (``regress`` does not judge them across λ).
    check(requirements) → dict | None: called for every SAE of a command before any result is written
        (``runner.plan.RequirementContext``: the SAE, its source, the config); raises InputError when the
        eval cannot run there, and may return what else the eval reads (e.g. a file's hash) for the
        result's fingerprint. A ``"module:function"`` string is imported on first use.
    """

    name: str
    description: str
    evaluate: Callable[[Any], Any] | str  # (runner.loop.EvalContext) -> runner.loop.Evaluated
    config_class: type
    config_defaults: Mapping[str, Any] = field(default_factory=dict)
    options: tuple[EvalOption, ...] = ()
    per_mode: bool = True
    directions: Mapping[str, int] = field(default_factory=dict)
    metric_names: Mapping[str, str] = field(default_factory=dict)
    needs: str = "activations"
    result_name: Callable[..., tuple[str, str]] | None = None
    check: Callable[[Any], dict | None] | str | None = None
    lambda_dependent: tuple[str, ...] = ()

    def evaluate_fn(self) -> Callable[[Any], Any]:
        return _resolve(self.evaluate)

    def check_fn(self) -> Callable[[Any], dict | None] | None:
        return None if self.check is None else _resolve(self.check)

    def default_config(self) -> Any:
        return self.config_class(**self.config_defaults)


def _resolve(function: Callable | str) -> Callable:
    """A callable, or a ``"module:function"`` string imported now."""
    if not isinstance(function, str):
        return function
    module, _, name = function.partition(":")
    return getattr(importlib.import_module(module), name)


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


def eval_options(registry: dict[str, EvalEntry]) -> dict[str, tuple[EvalOption, list[str]]]:
    """Every declared option by flag, with the evals declaring it (the first declaration is kept)."""
    options: dict[str, tuple[EvalOption, list[str]]] = {}
    for entry in registry.values():
        for option in entry.options:
            options.setdefault(option.flag, (option, []))[1].append(entry.name)
    return options


def direction_of(eval_name: str, metric: str, registry: dict[str, EvalEntry]) -> int:
    """+1 higher is worse, −1 lower is worse, 0 no direction: the eval's own declaration, else the first
    eval declaring that metric (results of evals no longer installed keep their shared metrics' direction)."""
    entry = registry.get(eval_name)
    if entry is not None and metric in entry.directions:
        return entry.directions[metric]
    for other in registry.values():
        if metric in other.directions:
            return other.directions[metric]
    return 0
