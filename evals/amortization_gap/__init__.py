"""``amortization_gap`` eval: all inference modes on one decoder, and the gap between amortized and optimal codes."""

from pathlib import Path

from sae_bench_amortization.evals.amortization_gap.eval_config import AmortizationGapEvalConfig
from sae_bench_amortization.evals.dead_dense import DENSE_THRESHOLD
from sae_bench_amortization.registry import (
    HIGHER_IS_WORSE,
    LOWER_IS_WORSE,
    EvalEntry,
    EvalOption,
)


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
    default="default",
    choices=("default", "paper"),
)

EVAL = EvalEntry(
    name="amortization_gap",
    description="Inference modes on one decoder (amortized, semi:5, semi:25, non_amortized): NMSE, L0, "
    "objective, dead/dense, gap",
    evaluate="sae_bench_amortization.evals.amortization_gap.main:evaluate",
    check="sae_bench_amortization.evals.amortization_gap.main:check",
    config_class=AmortizationGapEvalConfig,
    options=(DENSE_THRESHOLD, LOCA_PATH, PROTOCOL),
    per_mode=False,
    directions={
        name: HIGHER_IS_WORSE
        for name in (
            "nmse",
            "nmse_refit",
            "objective",
            "dead_rate",
            "dense_rate",
            "delta_f1",
            "absorption_rate",
            "delta_f1_subset",
            "absorption_rate_subset",
            "full_absorption_rate_subset",
            "mean_gap",
            "mean_relative_gap",
            "median_gap",
            "dense_rate_0_2",
        )
    }
    | {"explained_variance": LOWER_IS_WORSE},
    # default protocol: ΔF1 and absorption over a concept subset, kept apart from splitting's and
    # absorption_rate's all-concept means in compare and regress
    metric_names={
        "delta_f1": "delta_f1_subset",
        "absorption_rate": "absorption_rate_subset",
        "full_absorption_rate": "full_absorption_rate_subset",
    },
    lambda_dependent=("objective", "mean_gap", "mean_relative_gap", "median_gap"),
)
