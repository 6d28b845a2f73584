"""sae-bench-amortization: what the amortized encoder of a sparse autoencoder costs, as SAEBench evals."""

from __future__ import annotations

from sae_bench_amortization.errors import InputError

__version__ = "0.1.0"

__all__ = ["InputError", "__version__"]
