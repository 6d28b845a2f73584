"""SAE-Lens ``SAE`` subclasses that change how codes are inferred: ISTA-refined and LocA (group encoders).

Importing ``sae_bench_amortization`` registers them with ``sae_lens.registry``.
"""

from __future__ import annotations

from sae_bench_amortization.adapters.ista_refined import ISTARefinedSAE, ISTARefinedSAEConfig
from sae_bench_amortization.adapters.loca import LocASAE, LocASAEConfig
from sae_bench_amortization.loca import angular_variance

__all__ = [
    "ISTARefinedSAE",
    "ISTARefinedSAEConfig",
    "LocASAE",
    "LocASAEConfig",
    "angular_variance",
    "register",
]


def register() -> None:
    """Register this package's architectures with SAE-Lens (idempotent)."""
    from sae_lens.registry import SAE_CLASS_REGISTRY, register_sae_class

    if "ista_refined" not in SAE_CLASS_REGISTRY:
        register_sae_class("ista_refined", ISTARefinedSAE, ISTARefinedSAEConfig)
    if "loca" not in SAE_CLASS_REGISTRY:
        register_sae_class("loca", LocASAE, LocASAEConfig)


register()
