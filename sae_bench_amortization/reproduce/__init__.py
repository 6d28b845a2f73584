"""``saebench reproduce TARGET``: one of the paper's results from one command, with the paper's numbers
beside ours (:mod:`.run`: the orchestration; :mod:`.targets`: each result's steps and settings;
:mod:`.steps`: resumable steps; :mod:`.tables`: the paper's layout; :mod:`.cache_check`: offline needs).

Only the names live here, so that ``saebench --help`` does not load the library."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # what __getattr__ loads, for the type checker
    from sae_bench_amortization.reproduce.run import TARGETS, Reproduction, plan, reproduce

TARGET_NAMES = ("pythia-topk", "gemma-jumprelu", "batchtopk-steps", "dynamics", "gated-pattern")
SCALES = ("paper", "smoke")

__all__ = ["SCALES", "TARGET_NAMES", "TARGETS", "Reproduction", "plan", "reproduce"]


def __getattr__(name: str) -> Any:
    """``reproduce``, ``plan``, ``Reproduction``, ``TARGETS``: loaded from :mod:`.run` when first used."""
    if name in ("reproduce", "plan", "Reproduction", "TARGETS"):
        from sae_bench_amortization.reproduce import run

        return getattr(run, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
