"""An SAE's decoder as a sparse-coding dictionary, and its inputs as sparse-coding targets.

The problem solved per token is  min_{z ≥ 0} ½‖r − z·D‖² + λ‖z‖₁  with
  D = the SAE's decoder rows in the SAE's own code units [d_sae, d_in] (rows divided by their norm when
      the SAE rescales activations by decoder norm, as SAE-Lens TopK SAEs may), so decode(z) = z·D + b_dec;
  r = (the input after the SAE's own input processing: dtype, hooks, activation normalization) − b_dec.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass, field

import torch


@dataclass
class Dictionary:
    """D [d_sae, d_in] and b_dec [d_in], with the Lipschitz constant and Gram matrix computed lazily."""

    D: torch.Tensor
    b_dec: torch.Tensor
    _lipschitz: float | None = field(default=None, repr=False)
    _gram: torch.Tensor | None = field(default=None, repr=False)

    @property
    def lipschitz(self) -> float:
        """L = ‖D‖₂² (largest eigenvalue of DᵀD [d_in, d_in]) by power iteration; 1/L is the ISTA step."""
        if self._lipschitz is None:
            self._lipschitz = spectral_norm_squared(self.D)
        return self._lipschitz

    @property
    def gram(self) -> torch.Tensor:
        """G = D·Dᵀ [d_sae, d_sae]."""
        if self._gram is None:
            self._gram = self.D @ self.D.T
        return self._gram


def spectral_norm_squared(D: torch.Tensor, n_iter: int = 100, tol: float = 1e-7) -> float:
    """Largest eigenvalue of DᵀD by power iteration (float64 on the [d_in, d_in] matrix), with a 1e-6 margin up."""
    gram = (D.T @ D).double()
    vector = torch.ones(gram.shape[0], dtype=torch.float64, device=D.device) / gram.shape[0] ** 0.5
    value = 0.0
    for _ in range(n_iter):
        product = gram @ vector
        new_value = float(vector @ product)
        vector = product / product.norm().clamp_min(1e-30)
        if abs(new_value - value) <= tol * max(abs(new_value), 1e-30):
            value = new_value
            break
        value = new_value
    return value * (1 + 1e-6)


def decoder_rows(sae) -> torch.Tensor:
    """The SAE's decoder in its own code units: W_dec, or W_dec / ‖W_dec row‖ when it rescales by decoder norm."""
    W_dec = sae.W_dec.detach()
    if getattr(sae.cfg, "rescale_acts_by_decoder_norm", False):
        W_dec = W_dec / W_dec.norm(dim=-1, keepdim=True)
    return W_dec


_CACHE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def dictionary_of(sae) -> Dictionary:
    """The SAE's Dictionary, cached per SAE until its decoder changes: by assignment, in place, or through
    ``.data`` (which autograd's version counter does not see — SAE-Lens's ``fold_*`` methods write that way),
    hence the float64 sum and norm of W_dec and b_dec in the key (one pass over W_dec per call)."""
    W_dec, b_dec = sae.W_dec.detach(), sae.b_dec.detach()
    fingerprint = torch.stack(
        [
            W_dec.sum(dtype=torch.float64),
            torch.linalg.vector_norm(W_dec, dtype=torch.float64),
            b_dec.sum(dtype=torch.float64),
            torch.linalg.vector_norm(b_dec, dtype=torch.float64),
        ]
    ).tolist()
    key = (
        sae.W_dec.data_ptr(),
        sae.W_dec._version,
        sae.b_dec.data_ptr(),
        sae.b_dec._version,
        sae.W_dec.dtype,
        *fingerprint,
    )
    cached = _CACHE.get(sae)
    if cached is not None and cached[0] == key:
        return cached[1]
    dictionary = Dictionary(decoder_rows(sae).contiguous(), sae.b_dec.detach())
    _CACHE[sae] = (key, dictionary)
    return dictionary


def sparse_coding_targets(sae, x: torch.Tensor) -> torch.Tensor:
    """r [B, d_in]: x through the SAE's own input processing (exactly as its encode), minus b_dec."""
    processed = sae.process_sae_in(x)  # normalized input − b_dec·apply_b_dec_to_input
    if not sae.cfg.apply_b_dec_to_input:
        processed = processed - sae.b_dec
    return processed
