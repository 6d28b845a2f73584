"""sae-bench-amortization: what the amortized encoder of a sparse autoencoder costs, as SAEBench evals.

Importing it registers the ``"ista_refined"`` SAE-Lens architecture (right away when SAE-Lens is already
imported, else as soon as it is).
"""

from __future__ import annotations

from sae_bench_amortization._registration import register_when_ready
from sae_bench_amortization.errors import InputError

__version__ = "0.1.0"

__all__ = ["InputError", "__version__"]

register_when_ready()
