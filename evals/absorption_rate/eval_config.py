"""Config of the ``absorption_rate`` eval."""

from __future__ import annotations

from pydantic import Field
from pydantic.dataclasses import dataclass

from sae_bench_amortization.mode_config import PerModeEvalConfig


@dataclass
class AbsorptionRateEvalConfig(PerModeEvalConfig):
    f1_jump_threshold: float = Field(
        default=0.03,
        title="F1 Jump Threshold",
        description="A further top latent is a main latent while it adds more than this to the k-sparse F1 "
        "(SAEBench's split-feature rule).",
    )
    max_k: int = Field(default=5, title="Max k", description="Most main latents per concept.")
    cosine_threshold: float = Field(
        default=0.3,
        title="Cosine Threshold",
        description="An absorbing latent's decoder row has at least this cosine with the concept's probe direction.",
    )
    min_positives: int = Field(
        default=50, title="Minimum Positives", description="Concepts with fewer are skipped."
    )
    definition: str = Field(
        default="concept labels: ground-truth probe = logistic regression on raw activations; absorption_rate = "
        "P(an aligned other latent fires | concept holds, probe fires, every main latent silent); "
        "full_absorption_rate = P(main latents silent and an aligned latent fires | concept holds, probe fires)",
        title="Definition",
        description="Which definition produced the numbers.",
    )
    absorption_definition: str = Field(
        default="auto",
        title="Absorption Definition Choice",
        description="concepts (labels of the activations), saebench_first_letter (SAEBench's machinery on a "
        "TransformerLens model at blocks.L.hook_resid_post) or auto (SAEBench's on such a model, concepts otherwise).",
    )
    first_letter_min_probe_f1: float = Field(
        default=0.6,
        title="First-Letter Minimum Probe F1",
        description="saebench_first_letter: letters whose ground-truth probe F1 is at most this are left out "
        "(SAEBench's min_GT_probe_f1).",
    )
    first_letter_min_letters: int = Field(
        default=20,
        title="First-Letter Minimum Letters",
        description="saebench_first_letter: fewer letters passing the probe F1 is an error "
        "(SAEBench's min_feats_for_eval).",
    )
    saebench_config: dict | None = Field(
        default=None,
        title="SAEBench Config",
        description="saebench_first_letter: SAEBench's AbsorptionEvalConfig that produced the numbers.",
    )
    seed: int = Field(default=42, title="Seed", description="Probe splits and negative sampling.")
