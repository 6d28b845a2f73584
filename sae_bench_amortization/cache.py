"""The package's cache folder: what it builds once and reuses (the embedded default benchmark, SAEBench's
first-letter probes). ``SAE_BENCH_AMORTIZATION_CACHE`` moves it; default: the platform's user cache."""

from __future__ import annotations

import os
from pathlib import Path

from platformdirs import user_cache_dir


def cache_root() -> Path:
    return Path(
        os.environ.get("SAE_BENCH_AMORTIZATION_CACHE", user_cache_dir("sae-bench-amortization"))
    )
