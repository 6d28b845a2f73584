"""``amortized``: the SAE's own encoder."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sae_bench_amortization.modes.kind import InferenceMode, ModeKind, NoSettings

if TYPE_CHECKING:  # annotations only: SAE-Lens loads with the SAE
    from sae_lens import SAE


def build(sae: SAE, mode: InferenceMode, l1_coefficient: float | None, settings: NoSettings) -> SAE:
    return sae


KIND = ModeKind(
    name="amortized", syntax="amortized", pattern=r"amortized", rank=0, needs_lambda=False,
    role="encoder", help="the SAE's encoder", build=build,
)  # fmt: skip
