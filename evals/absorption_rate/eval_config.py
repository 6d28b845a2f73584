"""Config of the ``absorption_rate`` eval."""

from __future__ import annotations

from typing import Literal, get_args

from pydantic.dataclasses import dataclass

from sae_bench_amortization.runner.eval_config import PerModeEvalConfig
from sae_bench_amortization.runner.outputs import setting

AbsorptionDefinition = Literal["auto", "concepts", "saebench_first_letter"]
ABSORPTION_DEFINITIONS: tuple[AbsorptionDefinition, ...] = get_args(AbsorptionDefinition)


@dataclass
class AbsorptionRateEvalConfig(PerModeEvalConfig):
    f1_jump_threshold: float = setting(
        0.03,
        "F1 Jump Threshold",
        "A further top latent is a main latent while it adds more than this to the k-sparse F1 "
        "(SAEBench's split-feature rule).",
    )
    max_k: int = setting(5, "Max k", "Most main latents per concept.")
    cosine_threshold: float = setting(
        0.3,
        "Cosine Threshold",
        "An absorbing latent's decoder row has at least this cosine with the concept's probe direction.",
    )
    min_positives: int = setting(50, "Minimum Positives", "Concepts with fewer are skipped.")
    definition: str = setting(
        "concept labels: ground-truth probe = logistic regression on raw activations; absorption_rate = "
        "P(an aligned other latent fires | concept holds, probe fires, every main latent silent); "
        "full_absorption_rate = P(main latents silent and an aligned latent fires | concept holds, probe fires)",
        "Definition",
        "Which definition produced the numbers.",
    )
    absorption_definition: str = setting(
        "auto",
        "Absorption Definition Choice",
        "concepts (labels of the activations), saebench_first_letter (SAEBench's machinery on a "
        "TransformerLens model at blocks.L.hook_resid_post) or auto (SAEBench's on such a model, concepts otherwise).",
    )
    first_letter_min_probe_f1: float = setting(
        0.6,
        "First-Letter Minimum Probe F1",
        "saebench_first_letter: letters whose ground-truth probe F1 is at most this are left out "
        "(SAEBench's min_GT_probe_f1).",
    )
    first_letter_min_letters: int = setting(
        20,
        "First-Letter Minimum Letters",
        "saebench_first_letter: fewer letters passing the probe F1 is an error "
        "(SAEBench's min_feats_for_eval).",
    )
    saebench_config: dict | None = setting(
        None,
        "SAEBench Config",
        "saebench_first_letter: SAEBench's AbsorptionEvalConfig that produced the numbers.",
    )
    seed: int = setting(42, "Seed", "Probe splits and negative sampling.")
