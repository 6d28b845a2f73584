"""What an adapter SAE takes over from the SAE it is built on."""

from __future__ import annotations

from typing import Any


def inherited_cfg_fields(sae) -> dict[str, Any]:
    """The SAE-Lens ``SAEConfig`` fields an adapter copies from its base SAE (shape, dtype, device, input
    processing, metadata), as keyword arguments for the adapter's own config."""
    cfg = sae.cfg
    return {
        "d_in": cfg.d_in,
        "d_sae": cfg.d_sae,
        "dtype": cfg.dtype,
        "device": str(sae.W_dec.device),
        "apply_b_dec_to_input": cfg.apply_b_dec_to_input,
        "normalize_activations": cfg.normalize_activations,
        "reshape_activations": cfg.reshape_activations,
        "metadata": cfg.metadata,
    }
