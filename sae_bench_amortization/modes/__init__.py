"""Inference modes, defined once: how each is written, where it sorts, whether it needs λ, which SAE
implements it on a decoder, how it calibrates its own λ, and its own settings. File names, the evals,
``compare``, ``regress``, the plots and the CLI all read this registry.

A mode kind is a module defining ``KIND = ModeKind(...)`` (:mod:`.kind`) and one line in its
distribution's entry points (group ``sae_bench.modes``), as evals register: another package adds a kind
the same way. Layers point down: ``modes`` builds on ``adapters`` and ``inference``, which never import it.
"""

from __future__ import annotations

import dataclasses
import importlib
import math
import pkgutil
import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib.metadata import EntryPoint, entry_points
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from sae_bench_amortization.errors import InputError, suggest
from sae_bench_amortization.inference import (
    OBJECTIVE_CHOICES,
    ObjectiveChoice,
    check_l1_coefficient,
)
from sae_bench_amortization.modes.kind import (
    KINDS,
    ROLES,
    InferenceMode,
    ModeKind,
    ModeOption,
    NoSettings,
    Role,
    register,
)

if TYPE_CHECKING:  # annotations only: torch and SAE-Lens load when a mode is built
    import torch
    from sae_lens import SAE

    from sae_bench_amortization.activations.base import ActivationSource
    from sae_bench_amortization.inference.calibration import Calibration

__all__ = [
    "KINDS", "ROLES", "InferenceMode", "ModeKind", "ModeOption", "NoSettings", "Role", "register",
]  # fmt: skip

ENTRY_POINT_GROUP = "sae_bench.modes"
DISTRIBUTION = "sae-bench-amortization"


def discover_kinds() -> list[ModeKind[Any]]:
    """Every kind registered under the entry-point group, in rank order (then by name); a broken plugin
    is reported, not fatal. An install of this package made before the group existed (an editable
    install not reinstalled) has no such entry points: its own kind modules are read instead."""
    points = list(entry_points(group=ENTRY_POINT_GROUP))
    loaders: list[tuple[str, Callable[[], object]]] = [(point.name, point.load) for point in points]
    if not any(_is_own(point) for point in points):
        loaders += [(name, _kind_of_module(name)) for name in _own_kind_modules()]
    found: dict[str, ModeKind[Any]] = {}
    for name, load in loaders:
        try:
            kind = load()
        except Exception as exc:  # noqa: BLE001 - a broken plugin must not break the CLI
            print(f"warning: mode kind '{name}' could not be loaded: {exc}", file=sys.stderr)
            continue
        if not isinstance(kind, ModeKind):
            print(f"warning: entry point '{name}' is not a ModeKind; ignored", file=sys.stderr)
            continue
        if kind.name in found and found[kind.name] is not kind:
            print(
                f"warning: mode kind '{kind.name}' is registered twice; the first kept",
                file=sys.stderr,
            )
            continue
        found[kind.name] = kind
    return sorted(found.values(), key=lambda kind: (kind.rank, kind.name))


def _is_own(point: EntryPoint) -> bool:
    dist = getattr(point, "dist", None)
    return dist is not None and dist.metadata["Name"] == DISTRIBUTION


def _own_kind_modules() -> list[str]:
    return [info.name for info in pkgutil.iter_modules(__path__) if info.name != "kind"]


def _kind_of_module(name: str) -> Callable[[], object]:
    return lambda: importlib.import_module(f"{__name__}.{name}").KIND


def _match(text: str) -> InferenceMode | None:
    for kind in KINDS.values():
        found = re.fullmatch(kind.pattern, text)
        if found:
            steps = int(found.group(1)) if found.groups() else None
            name = kind.syntax.split(":")[0] + ("" if steps is None else f":{steps}")
            return InferenceMode(name, steps)
    return None


def parse_mode(text: str, requestable: bool = True) -> InferenceMode:
    """A mode from its written name (``requestable``: only modes ``--inference`` can ask for); anything
    else is an InputError naming the text and the choices."""
    if not isinstance(text, str):
        raise InputError(f"inference mode must be a string, got {text!r}")
    mode = _match(text)
    if mode is not None and (mode.spec.requestable or not requestable):
        return mode
    kind = KINDS.get(text.split(":")[0])
    if kind is not None and ":" in kind.syntax and mode is None:
        steps = text.split(":", 1)[1] if ":" in text else ""
        raise InputError(
            f"inference mode '{text}': T in {kind.syntax} must be a non-negative integer, got '{steps}'"
        )
    choices = [k.syntax for k in KINDS.values() if k.requestable or not requestable]
    examples = [c.replace(":T", ":5") for c in choices]
    raise InputError(
        f"unknown inference mode '{text}'{suggest(text, examples)}; choose from {', '.join(choices)}"
    )


def parse_modes(texts: list[str] | None) -> list[InferenceMode]:
    """Modes in the order given, duplicates dropped; none given: amortized."""
    modes = [parse_mode(t) for t in (texts or ["amortized"])]
    return list(dict.fromkeys(modes))


def mode_order(name: str) -> tuple[float, int]:
    """Sort key of a written mode name (unknown names last)."""
    mode = _match(name) if isinstance(name, str) else None
    return mode.order if mode is not None else (math.inf, 0)


def parse_written(name: object) -> InferenceMode | None:
    """The mode a written name (a result's ``mode``) stands for; None for names no kind matches."""
    return _match(name) if isinstance(name, str) else None


def role_of(name: object) -> Role | None:
    """The role of a written mode name (None: not a mode name)."""
    mode = parse_written(name)
    return None if mode is None else mode.role


def steps_of(name: object) -> int | None:
    """The step count of a written mode name on a step axis (``semi:5`` → 5), else None."""
    mode = parse_written(name)
    return mode.n_steps if mode is not None and mode.spec.step_axis else None


def is_mode_name(name: object) -> bool:
    return isinstance(name, str) and _match(name) is not None


MODE_SEPARATOR = "__"


def result_sae_id(sae_id: str, mode: InferenceMode, modes: list[InferenceMode]) -> str:
    """sae_id for a mode's result file: unchanged for amortized alone, else ``<sae_id>__<mode>``."""
    if modes == [AMORTIZED]:
        return sae_id
    return with_mode(sae_id, mode)


def with_mode(name: str, mode: InferenceMode) -> str:
    """``<name>__<mode file tag>``: how a mode is named beside an SAE (files, SAEBench SAE names)."""
    return f"{name}{MODE_SEPARATOR}{mode.file_tag}"


def split_mode(stem: str) -> tuple[str, str | None]:
    """The inverse of :func:`with_mode` on a file stem: (SAE name, mode name or None). SAEBench appends
    ``_custom_sae`` to SAE objects' names: ``<name>__<tag>_custom_sae`` is understood too."""
    base, tail = stem, ""
    if stem.endswith("_custom_sae"):
        base, tail = stem.removesuffix("_custom_sae"), "_custom_sae"
    if MODE_SEPARATOR in base:
        name, tag = base.rsplit(MODE_SEPARATOR, 1)
        written = tag.replace("-", ":", 1) if re.fullmatch(r"[a-z_]+-\d+", tag) else tag
        if is_mode_name(written):
            return name, written
    return stem if not tail else base + tail, None


# one λ per SAE (non-amortized L0 matched), or each mode whose kind calibrates its own λ its own (its L0
# matched to the encoder's)
LambdaCalibration = Literal["shared", "per_mode"]
LAMBDA_CALIBRATIONS: tuple[LambdaCalibration, ...] = ("shared", "per_mode")
Method = Literal["ista", "fista"]  # the solver's step: ISTA (the paper's update) or FISTA

MAX_STEPS = 1000  # a step count above this needs --allow-many-steps (minutes per chunk at width)

S = TypeVar("S")


@dataclass
class InferenceSettings:
    """Which modes to run and how λ is chosen (given, or calibrated to the amortized L0 per SAE).

    ``method`` and ``tol`` are the built-in kinds' settings (semi:T's and non_amortized's), kept here for
    Python users; another kind's settings are ``kind_settings[kind name][field]`` (its CLI options' values).
    A kind reads its own through :meth:`settings_for`.
    """

    modes: list[InferenceMode] = field(default_factory=lambda: [AMORTIZED])
    l1_coefficient: float | None = None
    method: Method = "ista"  # semi:T steps: the paper's ISTA update (fista: accelerated)
    tol: float = 1e-4  # non_amortized: KKT tolerance, relative to λ
    calibration_tokens: int = 4096
    modes_given: bool = False  # False: the user named no mode, so an eval may use its own defaults
    lambda_calibration: LambdaCalibration | None = None  # None: the eval's default
    allow_many_steps: bool = False  # step counts above MAX_STEPS only when asked for
    kind_settings: dict[str, dict[str, object]] = field(default_factory=dict)
    # the problem semi:T and non_amortized solve (inference.objectives); auto: per SAE, its architecture's.
    # Built by hand, l1 unless given; a run from mode names or the command line: run_objective's default
    objective: ObjectiveChoice = "l1"
    k: int | None = (
        None  # k_sparse: at most k actives (None: the SAE's own k, else its encoder's L0)
    )

    def __post_init__(self) -> None:
        many = [mode for mode in self.modes if (mode.n_steps or 0) > MAX_STEPS]
        if many and not self.allow_many_steps:
            raise InputError(
                f"{many[0].name} runs {many[0].n_steps} solver steps on every token (the paper's relief "
                f"comes by 5-50): pass --allow-many-steps to run more than {MAX_STEPS}"
            )
        if self.lambda_calibration not in (None, *LAMBDA_CALIBRATIONS):
            raise InputError(
                f"--lambda-calibration must be one of {', '.join(LAMBDA_CALIBRATIONS)}, "
                f"got {self.lambda_calibration!r}"
            )
        if self.l1_coefficient is not None:
            check_l1_coefficient(self.l1_coefficient, "--l1-coefficient")
        if self.objective not in OBJECTIVE_CHOICES:
            raise InputError(
                f"--objective must be one of {', '.join(OBJECTIVE_CHOICES)}, got {self.objective!r}"
            )
        if self.objective == "k_sparse":
            given = [flag for flag, value in (("--l1-coefficient", self.l1_coefficient),
                     ("--lambda-calibration", self.lambda_calibration)) if value is not None]  # fmt: skip
            if given:
                raise InputError(
                    f"--objective k_sparse has no λ (at most k actives, no penalty): drop {' and '.join(given)}"
                )
        if self.k is not None and not (isinstance(self.k, int) and self.k >= 1):
            raise InputError(f"k of the k-sparse problem must be an integer >= 1, got {self.k!r}")

    @property
    def needs_lambda(self) -> bool:
        return any(mode.spec.needs_lambda for mode in self.modes)

    def settings_for(self, kind: ModeKind[S]) -> S | NoSettings:
        """``kind``'s settings: each field from ``kind_settings[kind.name]``, else from this object's field
        of that name, else the settings class's default."""
        given = self.kind_settings.get(kind.name, {})
        values = {
            name: given[name] if name in given else getattr(self, name)
            for name in _field_names(kind.settings)
            if name in given or name in _field_names(InferenceSettings)
        }
        return kind.settings(**values)

    def own_settings(self, kind: ModeKind[Any]) -> dict[str, object]:
        """The settings of ``kind`` that this object holds no field for (another distribution's kind's),
        JSON-ready, for the results' fingerprints."""
        settings = self.settings_for(kind)
        shared = _field_names(InferenceSettings)
        return {
            name: getattr(settings, name)
            for name in _field_names(kind.settings)
            if name not in shared
        }


def run_objective(given: ObjectiveChoice | None, protocol: object) -> ObjectiveChoice:
    """A run's objective: the one given, else ``auto`` (each SAE's own training problem), or the paper's
    ``l1`` under ``--protocol paper``."""
    if given is not None:
        return given
    return "l1" if protocol == "paper" else "auto"


def _field_names(cls: type) -> list[str]:
    return [f.name for f in dataclasses.fields(cls)] if dataclasses.is_dataclass(cls) else []


def inference_settings(parsed: Mapping[str, object], **values: Any) -> InferenceSettings:
    """InferenceSettings from parsed command-line values (``vars(args)``): each field from its value of
    the same name (``values`` first), each kind option's value into its kind's settings."""
    own = set(_field_names(InferenceSettings))
    values = {name: parsed[name] for name in own if name in parsed} | values
    kind_settings: dict[str, dict[str, object]] = {}
    for kind in KINDS.values():
        for option in kind.options:
            if option.dest not in parsed:
                continue
            if option.field in own:
                values.setdefault(option.field, parsed[option.dest])
            else:
                kind_settings.setdefault(kind.name, {})[option.field] = parsed[option.dest]
    return InferenceSettings(**values, kind_settings=kind_settings)


def option_default(kind: ModeKind[Any], option: ModeOption) -> object:
    """The default of a kind's option: its settings field's (as :meth:`InferenceSettings.settings_for`
    gives it when nothing is set)."""
    return getattr(InferenceSettings().settings_for(kind), option.field)


def mode_sae(
    sae: SAE, mode: InferenceMode, l1_coefficient: float | None, settings: InferenceSettings
) -> SAE:
    """The SAE whose ``encode`` implements ``mode`` on ``sae``'s decoder."""
    build = mode.spec.build
    if build is None:
        raise InputError(f"inference mode '{mode.name}' is not built on a decoder")
    return build(sae, mode, l1_coefficient, settings.settings_for(mode.spec))


def calibrates_own_lambda(mode: InferenceMode) -> bool:
    """True when ``mode``'s kind can calibrate its own λ (``--lambda-calibration per_mode``)."""
    return mode.spec.calibrate is not None


def calibrate_mode(
    sae: SAE, tokens: torch.Tensor, mode: InferenceMode, settings: InferenceSettings
) -> Calibration:
    """``mode``'s own λ on tokens [N, d_in] (its mean L0 matched to the encoder's), by its kind's hook."""
    calibrate = mode.spec.calibrate
    if calibrate is None:
        raise InputError(f"inference mode '{mode.name}' does not calibrate its own λ")
    return calibrate(sae, tokens, mode, settings.settings_for(mode.spec))


def calibration_record(calibration: Calibration | None) -> dict[str, Any]:
    return {} if calibration is None else dataclasses.asdict(calibration)


def first_tokens(source: ActivationSource, n_tokens: int, batch_size: int = 4096) -> torch.Tensor:
    """The first n_tokens activations [n, d_in] of a source (for λ calibration)."""
    import torch  # here: `saebench run --help` reads the kinds without loading torch

    chunks, seen = [], 0
    for batch in source.iter_batches(batch_size):
        chunks.append(batch.acts[: n_tokens - seen])
        seen += chunks[-1].shape[0]
        if seen >= n_tokens:
            break
    return torch.cat(chunks)


for _kind in discover_kinds():
    register(_kind)

AMORTIZED = parse_mode("amortized")
MODE_NAMES = tuple(kind.syntax for kind in KINDS.values() if kind.requestable)
