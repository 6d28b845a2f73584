"""The eval_config fields every per-mode eval of this package records (dead_dense, splitting,
absorption_rate): which inference mode made the codes, with which λ, on which tokens."""

from __future__ import annotations

from pydantic.dataclasses import dataclass
from sae_bench.evals.base_eval_output import BaseEvalConfig

from sae_bench_amortization.runner.outputs import setting


def objective_setting():
    """The ``objective`` field of every config whose modes solve a problem (one declaration)."""
    return setting(
        "l1",
        "Objective",
        "The problem semi:T and non_amortized solve on the decoder (--objective; auto resolved per SAE): "
        "l1 (the paper's: ½‖x − decode(z)‖² + λ‖z‖₁), l1_decoder_norm (λ Σ‖d_j‖ z_j), k_sparse (at most "
        "k actives, no λ; NP-hard: non_amortized is the best of several searches, an upper bound on the "
        "optimum, so a gap to it is a lower bound on the true gap).",
    )


def k_sparse_k_setting():
    """The ``k_sparse_k`` field beside :func:`objective_setting`."""
    return setting(
        None,
        "k (k-sparse)",
        "k of the k-sparse problem: the SAE's own k, else its encoder's mean L0 rounded.",
    )


@dataclass
class PerModeEvalConfig(BaseEvalConfig):
    inference_mode: str = setting(
        "amortized",
        "Inference Mode",
        "How codes were inferred on the SAE's decoder: 'amortized' (its encoder), 'semi:T' "
        "(T ISTA/FISTA steps from the encoder's codes) or 'non_amortized' (sparse coding to tolerance).",
    )
    l1_coefficient: float | None = setting(
        None,
        "L1 Coefficient",
        "λ of the sparse-coding objective ½‖x − decode(z)‖² + λ‖z‖₁ (None for amortized).",
    )
    lambda_calibration: dict | None = setting(
        None,
        "λ Calibration",
        "How λ was found: target L0 (the amortized L0), achieved non-amortized L0, tokens, solves.",
    )
    objective: str = objective_setting()
    k_sparse_k: int | None = k_sparse_k_setting()
    n_tokens: int | None = setting(
        None, "Evaluation Tokens", "Tokens read (the longest pass over the source)."
    )
    skip_tokens: int = setting(
        0,
        "Skipped Tokens",
        "Tokens of the source skipped before these (a held-out span: --skip-tokens).",
    )
    batch_size: int = setting(4096, "Batch Size", "Tokens per chunk.")
    activation_source: str = setting(
        "", "Activation Source", "Where the evaluated activations came from."
    )
