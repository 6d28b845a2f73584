"""The contract of an inference mode kind: what a kind module declares as ``KIND = ModeKind(...)`` — how its
modes are written and ordered, its role, whether it needs λ, the SAE implementing it on a decoder, how it
calibrates its own λ, and its own settings and command-line options. Imports nothing heavy: ``saebench
run --help`` reads every kind."""

from __future__ import annotations

import argparse
import dataclasses
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, Literal, TypeVar

if TYPE_CHECKING:  # annotations only: SAE-Lens and torch load when a mode is built
    import torch
    from sae_lens import SAE

    from sae_bench_amortization.inference.calibration import Calibration

# what a mode's codes are, for the reports that compare modes: an encoder's own codes (amortized, a
# LocA-SAE's), a refinement of the encoder's codes along a step axis (semi:T), or the optimum the others
# are measured against (non_amortized)
Role = Literal["encoder", "refinement", "optimum"]
ROLES: tuple[Role, ...] = ("encoder", "refinement", "optimum")


@dataclass(frozen=True)
class NoSettings:
    """The settings of a kind that has none."""


S = TypeVar("S")


@dataclass(frozen=True)
class ModeOption:
    """A command-line option of a kind's settings: ``saebench run`` adds it, its value fills the settings
    field ``field``, whose default is the option's default (one default, in one place)."""

    flag: str
    help: str
    field: str
    choices: tuple[str, ...] | None = None
    type: Callable[[str], object] | None = None
    metavar: str | None = None

    def add_to(self, parser: argparse._ActionsContainer, default: object) -> None:
        """The option, with the default of the settings field it fills; parsed into ``self.dest``."""
        extra: dict[str, Any] = {} if self.type is None else {"type": self.type}
        parser.add_argument(
            self.flag, help=self.help, choices=self.choices, default=default,
            metavar=self.metavar, dest=self.dest, **extra,
        )  # fmt: skip

    @property
    def dest(self) -> str:
        """Where argparse puts the value (the flag's own name, as argparse would)."""
        return self.flag.lstrip("-").replace("-", "_")


@dataclass(frozen=True)
class ModeKind(Generic[S]):
    """One kind of inference mode.

    ``pattern`` matches the written name in full; its first group, when there is one, is the step count
    (the kind then has a step axis). ``rank`` orders kinds in tables, plots and the CLI help (then the step
    count). ``build(sae, mode, l1_coefficient, settings)`` returns the SAE whose ``encode`` implements the
    mode on ``sae``'s decoder; None for modes that are not a solver run on that decoder (``loca``: a
    LocA-SAE's own encoder), which cannot be asked for with ``--inference``. ``calibrate(sae, tokens, mode,
    settings)`` finds the mode's own λ (its L0 matched to the encoder's on tokens [N, d_in]) for
    ``--lambda-calibration per_mode``; None: the mode uses the SAE's shared λ. ``settings`` is the kind's
    settings dataclass (``build`` and ``calibrate`` get an instance), ``options`` its CLI options.
    """

    name: str
    syntax: str  # as shown to users: "semi:T"
    pattern: str
    rank: int
    needs_lambda: bool
    help: str
    role: Role
    build: Callable[[SAE, InferenceMode, float | None, S], SAE] | None = None
    calibrate: Callable[[SAE, torch.Tensor, InferenceMode, S], Calibration] | None = None
    settings: type[S] | type[NoSettings] = NoSettings
    options: tuple[ModeOption, ...] = ()

    def __post_init__(self) -> None:
        settings = self.settings
        fields = (
            {f.name for f in dataclasses.fields(settings)}
            if dataclasses.is_dataclass(settings)
            else set()
        )
        unknown = [option.flag for option in self.options if option.field not in fields]
        if unknown:
            raise ValueError(f"mode kind {self.name!r}: {unknown} fill no field of its settings")

    @property
    def requestable(self) -> bool:
        return self.build is not None

    @property
    def step_axis(self) -> bool:
        """True when the written name carries a step count (``semi:T``): plots draw it along T."""
        return re.compile(self.pattern).groups > 0

    def written(self, n_steps: int | None = None) -> str:
        """A mode's written name: ``semi:5``, ``amortized``."""
        return self.syntax.split(":")[0] + ("" if n_steps is None else f":{n_steps}")


# every kind, by name, in rank order (filled by ``modes`` from the entry-point group)
KINDS: dict[str, ModeKind[Any]] = {}


def register(kind: ModeKind[Any]) -> ModeKind[Any]:
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
    def spec(self) -> ModeKind[Any]:
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
