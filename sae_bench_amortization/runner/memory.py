"""Process-wide memory settings every run applies (the CLI, library calls and Ray workers alike)."""

from __future__ import annotations

import os
import sys

_applied = False


def bound_the_heap(threshold: int = 1 << 20) -> None:
    """Serve allocations ≥ 1 MiB with mmap, returned to the system when freed (glibc only; once).

    glibc otherwise raises its mmap threshold after large frees and keeps big tensors on a heap that
    fragments: measured, an eval's peak memory then grew 1.65x for 10x tokens; with this, 1.005x.
    MALLOC_MMAP_THRESHOLD_ in the environment takes precedence.
    """
    global _applied
    if _applied or os.environ.get("MALLOC_MMAP_THRESHOLD_") or not sys.platform.startswith("linux"):
        return
    _applied = True
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-3, threshold)  # M_MMAP_THRESHOLD
    except (OSError, AttributeError):  # not glibc
        pass


# fp32 buffers of [batch, d_sae] an eval may hold at once (codes, ISTA/FISTA state, the solver's
# correlations and KKT products, the reconstruction)
BUFFERS_PER_TOKEN = 8
MEMORY_SHARE = 0.5  # of the memory available when a run starts


def available_bytes(device: str) -> int | None:
    """Free memory on ``device`` (CUDA: the driver's free memory; CPU: MemAvailable), None if unknown."""
    if str(device).startswith("cuda"):
        import torch

        return int(torch.cuda.mem_get_info(torch.device(device))[0])
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def chunk_bytes(batch_size: int, d_sae: int) -> int:
    """Memory an eval's chunk of ``batch_size`` tokens takes beside the SAE's weights."""
    return batch_size * d_sae * 4 * BUFFERS_PER_TOKEN


def fit_batch_size(requested: int, d_sae: int, device: str) -> int:
    """``requested``, or fewer tokens per chunk so that the chunk's buffers take at most half of the
    memory available now (memory is the SAE's weights plus O(chunk × d_sae))."""
    free = available_bytes(device)
    if free is None:
        return requested
    return max(1, min(requested, int(free * MEMORY_SHARE) // chunk_bytes(1, d_sae)))


def is_out_of_memory(exc: BaseException) -> bool:
    text = str(exc)
    return (
        isinstance(exc, MemoryError) or "out of memory" in text or "can't allocate memory" in text
    )
