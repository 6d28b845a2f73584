"""SAE-Lens ``SAE`` subclasses that change how codes are inferred (ISTA-refined; LocA to come).

Importing ``sae_bench_amortization`` registers them with ``sae_lens.registry``.
"""

from __future__ import annotations

from sae_bench_amortization.adapters.ista_refined import ISTARefinedSAE, ISTARefinedSAEConfig

__all__ = ["ISTARefinedSAE", "ISTARefinedSAEConfig", "register"]


def register() -> None:
    """Register this package's architectures with SAE-Lens (idempotent)."""
    from sae_lens.registry import SAE_CLASS_REGISTRY, register_sae_class

    if "ista_refined" not in SAE_CLASS_REGISTRY:
        register_sae_class("ista_refined", ISTARefinedSAE, ISTARefinedSAEConfig)
