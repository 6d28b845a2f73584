"""``amortization_gap`` eval: all inference modes on one decoder, and the gap between amortized and optimal codes."""

from pathlib import Path

from sae_bench_amortization.evals.amortization_gap.eval_config import (
    DEFAULT_MODES,
    PROTOCOLS,
    AmortizationGapEvalConfig,
)
from sae_bench_amortization.evals.dead_dense import DENSE_THRESHOLD
from sae_bench_amortization.registry import EvalEntry, EvalOption


def _existing(path: str) -> str | None:
    return None if Path(path).exists() else "not found"


LOCA_PATH = EvalOption(
    "--loca-path",
    "a LocA-SAE folder run as mode 'loca' beside the SAE (repeatable: one per SAE, in order); an SAE that "
    "is itself a LocA-SAE gets its encoder's row named 'loca'",
    metavar="PATH",
    repeatable=True,
    field="loca_paths",
    check=lambda paths: next((f"not found: {p}" for p in paths if _existing(p)), None),
)

PROTOCOL = EvalOption(
    "--protocol",
    "default (this package's metric definitions) or paper (the paper's unified protocol: NMSE over "
    "mean ‖x‖², dense at 0.1 and 0.2, pseudo-label ΔF1 and absorption, ≤ 50,000 tokens, per-mode λ)",
    choices=PROTOCOLS,
)

EVAL = EvalEntry(
    name="amortization_gap",
    description=f"Inference modes on one decoder ({', '.join(DEFAULT_MODES)}): NMSE, L0, "
    "objective, dead/dense, gap",
    evaluate="sae_bench_amortization.evals.amortization_gap.main:evaluate",
    check="sae_bench_amortization.evals.amortization_gap.main:check",
    config_class=AmortizationGapEvalConfig,
    options=(DENSE_THRESHOLD, LOCA_PATH, PROTOCOL),
    per_mode=False,
    output="sae_bench_amortization.evals.amortization_gap.eval_output:AmortizationGapEvalOutput",
)
