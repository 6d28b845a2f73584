"""sae-bench-amortization: what the amortized encoder of a sparse autoencoder costs, as SAEBench evals.

``sae_bench_amortization.run(...)`` is ``saebench run`` as a library call (see :mod:`.api`);
``sae_bench_amortization.report(...)`` is ``saebench report``. Importing the
package registers its SAE-Lens architectures (``"ista_refined"``, ``"loca"``): right away when SAE-Lens is
already imported, else as soon as it is.
"""

from __future__ import annotations

import importlib
from typing import Any

from sae_bench_amortization._registration import register_when_ready
from sae_bench_amortization.errors import InputError

__version__ = "0.1.0"

# the library entry point and its settings, imported on first use (the CLI's start-up stays fast)
_LAZY = {
    "run": "sae_bench_amortization.api",
    "report": "sae_bench_amortization.reports.html_page",
    "RunResult": "sae_bench_amortization.api",
    "SAESelection": "sae_bench_amortization.sources.selection",
    "SourceSettings": "sae_bench_amortization.sources.selection",
    "TextSettings": "sae_bench_amortization.activations.text",
    "InferenceSettings": "sae_bench_amortization.modes",
}

__all__ = ["InputError", "__version__", *_LAZY]  # pyright: ignore[reportUnsupportedDunderAll]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'sae_bench_amortization' has no attribute {name!r}")


register_when_ready()
