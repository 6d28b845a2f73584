"""What a run hands each eval (:class:`EvalRequest`) and what comes back per SAE (:class:`SAEOutcome`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from sae_bench_amortization.activations.base import ActivationSource
from sae_bench_amortization.activations.text import TextSettings
from sae_bench_amortization.errors import InputError
from sae_bench_amortization.modes import InferenceSettings
from sae_bench_amortization.sources.saes import SAESpec

if TYPE_CHECKING:  # annotations only: SAE-Lens loads with the SAEs
    from _typeshed import DataclassInstance
    from sae_lens import SAE


class ActivationFactory(Protocol):
    def for_sae(self, sae: SAE) -> ActivationSource:
        """The activation source this SAE reads."""
        ...


@dataclass
class EvalRequest:
    """Everything an eval is run with: the SAEs, where activations come from, inference settings, and the
    values of the evals' own options (``eval_options``, by option ``dest``) or whole configs (``configs``,
    by eval name: used as given)."""

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
    skip_tokens: int = 0  # the source's first tokens skipped (recorded in eval_config)
    inference: InferenceSettings = field(default_factory=InferenceSettings)
    text: TextSettings = field(default_factory=TextSettings)
    eval_options: dict[str, Any] = field(
        default_factory=dict
    )  # each of the type its option declares
    configs: dict[str, DataclassInstance] = field(default_factory=dict)
    work_dir: Path | None = None  # kept intermediate files (default: a temporary folder per eval)

    def __post_init__(self) -> None:
        self.output_dir = Path(self.output_dir)

    def activations_for(self, sae: SAE) -> ActivationSource:
        """The activation source ``sae`` reads (one line when the request has none)."""
        if self.activations is None:
            raise InputError("no activation source: pass --activations, --model or --hf-model")
        return self.activations.for_sae(sae)


@dataclass
class SAEOutcome:
    """What happened to one SAE (× mode) in one eval (for the summary table)."""

    sae_name: str
    status: str  # "written", "skipped", or "failed: ..." (Ray)
    path: Path | None = None
    metrics: dict[str, float | None] = field(default_factory=dict)
