"""Inference modes, defined once: how each is written, where it sorts, whether it needs λ, and which SAE
implements it on a decoder. File names, the evals, ``compare``, ``regress`` and the plots all read this
registry.

A mode kind is one file in this folder defining ``KIND = ModeKind(...)`` plus one entry in ``_KIND_MODULES``
below. Layers point down: ``modes`` builds on ``adapters`` and ``inference``, which never import it.
"""

from __future__ import annotations

import importlib
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from sae_bench_amortization.errors import InputError, suggest
from sae_bench_amortization.inference import check_l1_coefficient

# each module defines KIND; adding a mode kind = a new module + its name here
_KIND_MODULES = ("amortized", "semi", "non_amortized", "loca")

# what a mode's codes are, for the reports that compare modes: an encoder's own codes (amortized, a
# LocA-SAE's), a refinement of the encoder's codes along a step axis (semi:T), or the optimum the others
# are measured against (non_amortized)
Role = Literal["encoder", "refinement", "optimum"]
ROLES: tuple[Role, ...] = ("encoder", "refinement", "optimum")


@dataclass(frozen=True)
class ModeKind:
    """One kind of inference mode.

    ``pattern`` matches the written name in full; its first group, when there is one, is the step count.
    ``build(sae, mode, l1_coefficient, settings)`` returns the SAE whose ``encode`` implements the mode on
    ``sae``'s decoder; None for modes that are not a solver run on that decoder (``loca``: a LocA-SAE's
    own encoder), which cannot be asked for with ``--inference``.
    """

    name: str
    syntax: str  # as shown to users: "semi:T"
    pattern: str
    rank: int  # order in tables and plots (then by step count)
    needs_lambda: bool
    help: str
    role: Role
    build: Callable[[Any, InferenceMode, float | None, InferenceSettings], Any] | None = None

    @property
    def requestable(self) -> bool:
        return self.build is not None

    @property
    def step_axis(self) -> bool:
        """True when the written name carries a step count (``semi:T``): plots draw it along T."""
        return re.compile(self.pattern).groups > 0


KINDS: dict[str, ModeKind] = {}


def register(kind: ModeKind) -> ModeKind:
    """Add a mode kind to the registry (its name must be new)."""
    if kind.name in KINDS:
        raise ValueError(f"inference mode kind {kind.name!r} is already registered")
    KINDS[kind.name] = kind
    return kind


@dataclass(frozen=True)
class InferenceMode:
    """One inference mode as written: ``amortized``, ``semi:5``, ``non_amortized``, ``loca``."""

    name: str
    n_steps: int | None = None  # semi:T → T

    @property
    def kind(self) -> str:
        return self.name.split(":")[0]

    @property
    def spec(self) -> ModeKind:
        return KINDS[self.kind]

    @property
    def file_tag(self) -> str:
        """The mode in a file name: ':' written as '-'."""
        return self.name.replace(":", "-")

    @property
    def order(self) -> tuple[float, int]:
        return (self.spec.rank, self.n_steps or 0)

    @property
    def role(self) -> Role:
        return self.spec.role


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


def parse_written(name: Any) -> InferenceMode | None:
    """The mode a written name (a result's ``mode``) stands for; None for names no kind matches."""
    return _match(name) if isinstance(name, str) else None


def role_of(name: Any) -> Role | None:
    """The role of a written mode name (None: not a mode name)."""
    mode = parse_written(name)
    return None if mode is None else mode.role


def steps_of(name: Any) -> int | None:
    """The step count of a written mode name on a step axis (``semi:5`` → 5), else None."""
    mode = parse_written(name)
    return mode.n_steps if mode is not None and mode.spec.step_axis else None


def is_mode_name(name: Any) -> bool:
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


# one λ per SAE (non-amortized L0 matched), or each semi mode its own (its L0 matched to the encoder's)
LAMBDA_CALIBRATIONS = ("shared", "per_mode")


MAX_STEPS = 1000  # semi:T above this needs --allow-many-steps (minutes per chunk at width)


@dataclass
class InferenceSettings:
    """Which modes to run and how λ is chosen (given, or calibrated to the amortized L0 per SAE)."""

    modes: list[InferenceMode] = field(default_factory=lambda: [AMORTIZED])
    l1_coefficient: float | None = None
    method: str = "ista"  # semi:T steps: the paper's ISTA update (fista: accelerated)
    tol: float = 1e-4  # non_amortized: KKT tolerance, relative to λ
    calibration_tokens: int = 4096
    modes_given: bool = False  # False: the user named no mode, so an eval may use its own defaults
    lambda_calibration: str | None = None  # "shared" | "per_mode"; None: the eval's default
    allow_many_steps: bool = False  # semi:T above MAX_STEPS only when asked for

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

    @property
    def needs_lambda(self) -> bool:
        return any(mode.spec.needs_lambda for mode in self.modes)


def mode_sae(sae, mode: InferenceMode, l1_coefficient: float | None, settings: InferenceSettings):
    """The SAE whose ``encode`` implements ``mode`` on ``sae``'s decoder."""
    if mode.spec.build is None:
        raise InputError(f"inference mode '{mode.name}' is not built on a decoder")
    return mode.spec.build(sae, mode, l1_coefficient, settings)


def calibration_record(calibration: Any) -> dict[str, Any]:
    return {} if calibration is None else dict(calibration.__dict__)


def first_tokens(source, n_tokens: int, batch_size: int = 4096):
    """The first n_tokens activations [n, d_in] of a source (for λ calibration)."""
    import torch

    chunks, seen = [], 0
    for batch in source.iter_batches(batch_size):
        chunks.append(batch.acts[: n_tokens - seen])
        seen += chunks[-1].shape[0]
        if seen >= n_tokens:
            break
    return torch.cat(chunks)


for _module in _KIND_MODULES:
    register(importlib.import_module(f"{__name__}.{_module}").KIND)

AMORTIZED = parse_mode("amortized")
MODE_NAMES = tuple(kind.syntax for kind in KINDS.values() if kind.requestable)
