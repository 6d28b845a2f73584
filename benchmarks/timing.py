"""The benchmarks' timer: the best wall time of a call over several runs (imported by the scripts beside it:
``python benchmarks/bench_x.py`` puts this folder on ``sys.path``)."""

from __future__ import annotations

import time
from collections.abc import Callable


def best_of(
    function: Callable[[], object],
    repeats: int = 3,
    warmup: bool = True,
    sync: Callable[[], object] = lambda: None,
) -> float:
    """Seconds of the fastest of ``repeats`` calls (after one untimed call when ``warmup``); ``sync``
    waits for queued device work (e.g. ``torch.cuda.synchronize``) before and after each call."""
    if warmup:
        function()
    times = []
    for _ in range(repeats):
        sync()
        start = time.perf_counter()
        function()
        sync()
        times.append(time.perf_counter() - start)
    return min(times)
