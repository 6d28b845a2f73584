"""The eval contract and its registry. Evals are discovered through Python entry points (group
``sae_bench.evals``); an eval is one folder whose ``EVAL`` is an :class:`EvalEntry` declaring everything the
runner needs — so ``saebench run`` adds its CLI options, ``compare``, ``regress`` and the plots read its
metrics' facts (:class:`MetricFacts`, declared once on the fields of its output class), and the one runner
loop (``runner.loop``) skips, locks, evaluates and writes its results::

    [project.entry-points."sae_bench.evals"]
    my_eval = "my_package.my_eval:EVAL"
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import importlib
import sys
import typing
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any, Literal, TypedDict

from sae_bench_amortization.errors import InputError, suggest

ENTRY_POINT_GROUP = "sae_bench.evals"
Direction = Literal[-1, 0, 1]
HIGHER_IS_WORSE: Direction = 1
LOWER_IS_WORSE: Direction = -1
NO_DIRECTION: Direction = 0
Needs = Literal["activations", "model"]
# the figures of ``saebench compare`` a metric can be drawn in (``reports.plots``)
Plot = Literal["pathologies", "steps"]
# what a metric measures: the pathologies figure groups its panels in this order
RowPlacement = Literal["encoder", "every"]
Topic = Literal["reconstruction", "sparsity", "firing", "splitting", "absorption", "other"]
TOPICS: tuple[Topic, ...] = typing.get_args(Topic)
Bounds = tuple[float | None, float | None]


@dataclass(frozen=True)
class MetricFacts:
    """What the reports know of a metric, declared once with its field (``runner.outputs.metric``).

    direction: HIGHER_IS_WORSE, LOWER_IS_WORSE or NO_DIRECTION (compare and regress).
    bounds: (low, high) the metric can take, None where unbounded (plots draw constant panels inside).
    label: its name in plots; unit: what it counts (a share, latents, seconds, ...).
    short, fmt: its column title and number format in the eval's terminal table (None: not shown there).
    legend: what the column means, in a few words, for the legend printed under that table.
    count: the row key holding how many concepts (or other units) the value averages over: the table
    prints it beside the value, e.g. ``0.400 (5)``.
    always_shown: its terminal-table column stays when no row measured it (else such a column is dropped).
    per_mode_row: an eval-wide metric that ``compare`` copies into the per-mode table — onto the encoder's
    row ("encoder": e.g. the gap, measured from the encoder) or onto every row without its own ("every").
    column: its position in the eval's CSV and terminal table (None: in neither).
    protocol: the ``--protocol`` it is measured under only (None: every protocol).
    lambda_dependent: only comparable at equal λ (``regress`` does not judge it across λ).
    shared: the name ``compare`` gives it across evals (e.g. ``mean_l0`` → ``l0``); None: its own.
    topic, figures: what it measures, and the ``compare`` figures it is drawn in.
    """

    direction: Direction = NO_DIRECTION
    bounds: Bounds = (None, None)
    label: str | None = None
    unit: str | None = None
    short: str | None = None
    fmt: str = ".4g"
    legend: str | None = None
    count: str | None = None
    always_shown: bool = False
    per_mode_row: RowPlacement | None = None
    column: int | None = None
    protocol: str | None = None
    lambda_dependent: bool = False
    shared: str | None = None
    topic: Topic = "other"
    figures: tuple[Plot, ...] = ()


class FactArguments(TypedDict, total=False):
    """:class:`MetricFacts` as keyword arguments of ``runner.outputs.metric(...)``."""

    direction: Direction
    bounds: Bounds
    label: str
    unit: str
    short: str
    fmt: str
    legend: str
    count: str
    always_shown: bool
    per_mode_row: RowPlacement
    column: int
    protocol: str
    lambda_dependent: bool
    shared: str
    topic: Topic
    figures: tuple[Plot, ...]


def metric_facts(output_class: type) -> dict[str, MetricFacts]:
    """Every metric's facts in ``output_class`` (an eval output, a metrics category or a detail row
    class), by field name, in declaration order: the fields declared with facts, and those of the
    pydantic classes its fields hold (categories, ``list[row]``)."""
    return dict(_facts_in(output_class, set()))


def _facts_in(cls: type, seen: set[type]) -> Iterator[tuple[str, MetricFacts]]:
    if cls in seen:
        return
    seen.add(cls)
    for name, info in getattr(cls, "__pydantic_fields__", {}).items():
        facts = [item for item in info.metadata if isinstance(item, MetricFacts)]
        if facts:
            yield name, facts[0]
            continue
        for inner in _classes_in(info.annotation):
            yield from _facts_in(inner, seen)


def _classes_in(annotation: object) -> Iterator[type]:
    """The pydantic classes an annotation holds (``Row``, ``list[Row]``, ``Row | None``)."""
    if isinstance(annotation, type) and hasattr(annotation, "__pydantic_fields__"):
        yield annotation
    for argument in typing.get_args(annotation):
        yield from _classes_in(argument)


@functools.cache
def _output_facts(output: type | str) -> dict[str, MetricFacts]:
    return metric_facts(_resolve(output))


FROM_CONFIG = object()  # an option's default: its config field's (EvalEntry fills it in)


@dataclass(frozen=True)
class EvalOption:
    """A command-line option an eval declares. ``saebench run`` adds it (once, however many evals declare
    it); its value fills the eval config's field ``dest``: ``field``, else the flag without dashes. Its
    default is that field's (the entry's ``config_defaults`` first), unless given here; a repeatable
    option starts empty. ``check(value)`` returns an error message for a bad value, or None."""

    flag: str
    help: str
    type: Callable[[str], Any] = str
    default: Any = FROM_CONFIG
    metavar: str | None = None
    choices: tuple[str, ...] | None = None
    repeatable: bool = False
    check: Callable[[Any], str | None] | None = None
    field: str | None = None

    @property
    def dest(self) -> str:
        return self.field or self.flag.lstrip("-").replace("-", "_")

    def with_config_default(self, config_class: type, overrides: Mapping[str, Any]) -> EvalOption:
        """This option with its default read from the config field it fills (None when repeatable)."""
        if self.default is not FROM_CONFIG:
            return self
        if self.repeatable:
            return dataclasses.replace(self, default=None)
        if self.dest in overrides:
            return dataclasses.replace(self, default=overrides[self.dest])
        return dataclasses.replace(self, default=config_default(config_class, self.dest))

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


def config_default(config_class: type, name: str) -> object:
    """The default of field ``name`` of a config dataclass (pydantic's or the standard library's)."""
    pydantic_fields = getattr(config_class, "__pydantic_fields__", None)
    if pydantic_fields is not None and name in pydantic_fields:
        return pydantic_fields[name].get_default(call_default_factory=True)
    for item in dataclasses.fields(config_class):
        if item.name == name:
            if item.default_factory is not dataclasses.MISSING:
                return item.default_factory()
            return None if item.default is dataclasses.MISSING else item.default
    raise ValueError(f"{config_class.__name__} has no field {name!r} for its option")


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
    options: its own CLI options (defaults from the config fields they fill).
    per_mode: one result per SAE × inference mode (the runner builds each mode's SAE), or one result per
        SAE that compares modes itself (it reads ``context.request.inference``).
    output: its output class (``"module:Class"``: imported when first read), whose fields declare their
        metrics' facts (``runner.outputs.metric(..., direction=...)``); compare, regress and the plots read
        them through :attr:`facts`.
    metrics: facts of metrics of an output class this package does not own (SAEBench's evals), by name.
    needs: "activations" (any activation source) or "model" (it reads a TransformerLens model itself).
    result_name(spec, mode, modes) → (release, sae_id) of the result file; None: this package's naming.
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
    output: type | str | None = None
    metrics: Mapping[str, MetricFacts] = field(default_factory=dict)
    needs: Needs = "activations"
    result_name: Callable[..., tuple[str, str]] | None = None
    check: Callable[[Any], dict | None] | str | None = None

    def __post_init__(self) -> None:
        options = tuple(
            option.with_config_default(self.config_class, self.config_defaults)
            for option in self.options
        )
        object.__setattr__(self, "options", options)

    def evaluate_fn(self) -> Callable[[Any], Any]:
        return _resolve(self.evaluate)

    def check_fn(self) -> Callable[[Any], dict | None] | None:
        return None if self.check is None else _resolve(self.check)

    def default_config(self) -> Any:
        return self.config_class(**self.config_defaults)

    @property
    def facts(self) -> dict[str, MetricFacts]:
        """Its metrics' facts by field name: its output class's, then ``metrics``."""
        declared = {} if self.output is None else _output_facts(self.output)
        return {**declared, **self.metrics}

    @property
    def directions(self) -> dict[str, Direction]:
        """Metric → +1 when higher is worse, −1 when lower is worse, under its own and its shared name;
        metrics not listed have no direction."""
        return {
            name: facts.direction
            for own, facts in self.facts.items()
            if facts.direction != NO_DIRECTION
            for name in _names(own, facts)
        }

    @property
    def metric_names(self) -> dict[str, str]:
        """Renames into the names ``compare`` shares across evals (e.g. ``mean_l0`` → ``l0``)."""
        return {name: facts.shared for name, facts in self.facts.items() if facts.shared}

    @property
    def lambda_dependent(self) -> tuple[str, ...]:
        """Metrics only comparable at equal λ (own and shared names)."""
        return tuple(
            name
            for own, facts in self.facts.items()
            if facts.lambda_dependent
            for name in _names(own, facts)
        )


def _names(own: str, facts: MetricFacts) -> tuple[str, ...]:
    return (own,) if facts.shared is None else (own, facts.shared)


def _resolve(target: Any) -> Any:
    """A callable or class, or a ``"module:name"`` string imported now."""
    if not isinstance(target, str):
        return target
    module, _, name = target.partition(":")
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


def direction_of(eval_name: str, metric: str, registry: dict[str, EvalEntry]) -> Direction:
    """+1 higher is worse, −1 lower is worse, 0 no direction: the eval's own declaration, else the first
    eval declaring that metric (results of evals no longer installed keep their shared metrics' direction)."""
    entry = registry.get(eval_name)
    if entry is not None and metric in entry.directions:
        return entry.directions[metric]
    for other in registry.values():
        if metric in other.directions:
            return other.directions[metric]
    return NO_DIRECTION


def precedence(entry: EvalEntry) -> int:
    """Where a (SAE, mode) metric that several evals report is read from, lowest first: an eval that
    compares modes side by side on one decoder, then evals on activations, then evals reading a model."""
    return 0 if not entry.per_mode else 1 if entry.needs == "activations" else 2


def by_precedence(registry: Mapping[str, EvalEntry]) -> list[str]:
    """The registry's eval names by :func:`precedence` (then by name)."""
    return sorted(registry, key=lambda name: (precedence(registry[name]), name))


def per_mode_row_metrics(registry: Mapping[str, EvalEntry], where: RowPlacement) -> tuple[str, ...]:
    """The eval-wide metrics (own names, sorted) declared to go onto the per-mode table's rows ``where``
    (:attr:`MetricFacts.per_mode_row`)."""
    names: set[str] = set()
    for entry in registry.values():
        # every declaration, not the merged facts: a detail row's field may share the metric's name
        declared = [] if entry.output is None else list(_facts_in(_resolve(entry.output), set()))
        for own, facts in [*declared, *entry.metrics.items()]:
            if facts.per_mode_row == where:
                names.add(own)
    return tuple(sorted(names))


def facts_by_column(registry: Mapping[str, EvalEntry]) -> dict[str, MetricFacts]:
    """Facts by the name a metric has in ``compare``'s table: its shared name (or its own), the evals in
    :func:`by_precedence` order; then the own names of renamed metrics (a protocol without renames)."""
    entries = [registry[name] for name in by_precedence(registry)]
    found: dict[str, MetricFacts] = {}
    for entry in entries:
        for own, facts in entry.facts.items():
            found.setdefault(facts.shared or own, facts)
    for entry in entries:
        for own, facts in entry.facts.items():
            found.setdefault(own, facts)
    return found
