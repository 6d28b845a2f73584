"""An SAE's decoder as a sparse-coding dictionary, and its inputs as sparse-coding targets.

The problem solved per token is  min_{z ≥ 0} ½‖r − z·D‖² + λ‖z‖₁  with
  D = the SAE's decoder rows in the SAE's own code units [d_sae, d_in] (rows divided by their norm when
      the SAE rescales activations by decoder norm, as SAE-Lens TopK SAEs may), so decode(z) = z·D + b_dec;
  r = (the input after the SAE's own input processing: dtype, hooks, activation normalization) − b_dec.

All-zero decoder rows (a latent whose W_dec row is exactly 0, e.g. pruned, or in a TopK SAE with
decoder-norm rescaling, where SAE-Lens then divides by a norm of 0) are left out of the sparse coding
(:attr:`Dictionary.zero_rows`): their row of D is 0, never 0/0 = NaN; the non-amortized solver never gives
them a code and the NNLS refit drops them from every support. Their
gradient is 0, so semi:T's ISTA/FISTA steps only shrink the encoder's code on them by λ/L a step (the
textbook update; an SAE that rescales by decoder norm never fires them: its encoder multiplies by the norm
0, so they are always 0 there); the amortized mode keeps the encoder as is. :func:`zero_rows_note` is the
one-line note the evals print for such an SAE, and :func:`decode` decodes such an SAE without SAE-Lens's
0·(1/0) = NaN.
"""

from __future__ import annotations

import sys
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
    _zero_rows: torch.Tensor | None = field(default=None, repr=False)
    _n_zero_rows: int | None = field(default=None, repr=False)

    @property
    def zero_rows(self) -> torch.Tensor:
        """[d_sae] bool: the atoms whose row of D is all zero (left out of the sparse coding: always 0)."""
        if self._zero_rows is None:
            self._zero_rows = ~self.D.any(dim=1)
        return self._zero_rows

    @property
    def n_zero_rows(self) -> int:
        """How many rows of D are all zero."""
        if self._n_zero_rows is None:
            self._n_zero_rows = int(self.zero_rows.sum())
        return self._n_zero_rows

    def without_zero_rows(self, z: torch.Tensor) -> torch.Tensor:
        """Codes z [B, d_sae] with the all-zero atoms' entries set to 0 (z itself when there are none)."""
        if self.n_zero_rows == 0:
            return z
        return z.masked_fill(self.zero_rows.to(z.device), 0)

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


def rescales_by_decoder_norm(sae) -> bool:
    return bool(getattr(sae.cfg, "rescale_acts_by_decoder_norm", False))


def decoder_rows(sae) -> torch.Tensor:
    """The SAE's decoder in its own code units: W_dec, or W_dec / ‖W_dec row‖ when it rescales by decoder
    norm (an all-zero row stays 0, not 0/0)."""
    W_dec = sae.W_dec.detach()
    if rescales_by_decoder_norm(sae):
        norms = W_dec.norm(dim=-1, keepdim=True)
        W_dec = W_dec / torch.where(norms > 0, norms, torch.ones_like(norms))
    return W_dec


def decode(sae, codes: torch.Tensor) -> torch.Tensor:
    """``sae.decode(codes)``, except for an SAE that rescales by decoder norm and has all-zero decoder rows:
    SAE-Lens multiplies the codes by 1/‖row‖ = inf there (0·inf = NaN on every token), so it is decoded
    here as codes·D + b_dec (D from :func:`decoder_rows`) through the SAE's own output hooks and output
    normalization, as SAE-Lens's TopK decode does."""
    if not rescales_by_decoder_norm(sae) or dictionary_of(sae).n_zero_rows == 0:
        return sae.decode(codes)
    D = dictionary_of(sae).D
    out = codes.to(D.dtype) @ D + sae.b_dec
    out = sae.run_time_activation_norm_fn_out(sae.hook_sae_recons(out))
    return sae.reshape_fn_out(out, sae.d_head)


_NOTED: weakref.WeakSet = weakref.WeakSet()


def zero_rows_note(sae, name: str) -> str | None:
    """The one-line note for an SAE with all-zero decoder rows (None without any)."""
    n_zero = dictionary_of(sae).n_zero_rows
    if n_zero == 0:
        return None
    where = (
        "always 0"  # the encoder multiplies their pre-activations by the norm 0: they never fire
        if rescales_by_decoder_norm(sae)
        else "always 0 in non_amortized codes; semi:T steps only shrink the encoder's codes on them"
    )
    return (
        f"SAE {name}: {n_zero} of {int(sae.cfg.d_sae)} decoder rows are all zero: those latents are left "
        f"out of the sparse coding ({where})"
    )


def print_zero_rows_note(sae, name: str) -> None:
    """Print :func:`zero_rows_note` on stderr, once per SAE object."""
    if sae in _NOTED:
        return
    note = zero_rows_note(sae, name)
    if note is not None:
        print(note, file=sys.stderr)
    _NOTED.add(sae)


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
