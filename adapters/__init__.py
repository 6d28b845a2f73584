"""SAE-Lens ``SAE`` subclasses that change how codes are inferred: ISTA-refined and LocA (group encoders).

Importing ``sae_bench_amortization`` registers them with ``sae_lens.registry``.
"""

from __future__ import annotations

from sae_bench_amortization.adapters.ista_refined import ISTARefinedSAE, ISTARefinedSAEConfig
from sae_bench_amortization.adapters.loca import LocASAE, LocASAEConfig
from sae_bench_amortization.adapters.loca_grouping import angular_variance

__all__ = [
    "ISTARefinedSAE",
    "ISTARefinedSAEConfig",
    "LocASAE",
    "ARCHITECTURES",
    "LocASAEConfig",
    "angular_variance",
    "register",
]


# architecture name (cfg.json's "architecture") → (SAE class, config class); a new adapter is one file
# in this folder plus one line here
ARCHITECTURES = {
    "ista_refined": (ISTARefinedSAE, ISTARefinedSAEConfig),
    "loca": (LocASAE, LocASAEConfig),
}


def register() -> None:
    """Register this package's architectures with SAE-Lens (idempotent)."""
    from sae_lens.registry import SAE_CLASS_REGISTRY, register_sae_class

    for name, (sae_class, config_class) in ARCHITECTURES.items():
        if name not in SAE_CLASS_REGISTRY:
            register_sae_class(name, sae_class, config_class)


register()
