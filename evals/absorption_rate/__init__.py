"""``absorption_rate`` eval: feature absorption per labelled concept (ground-truth probe on raw activations),
or SAEBench's first-letter absorption on a TransformerLens model."""

from sae_bench_amortization.evals.absorption_rate.eval_config import AbsorptionRateEvalConfig
from sae_bench_amortization.registry import HIGHER_IS_WORSE, EvalEntry, EvalOption

ABSORPTION_DEFINITION = EvalOption(
    "--absorption-definition",
    "concept labels of the activations, or SAEBench's first-letter machinery on a TransformerLens model "
    "at blocks.L.hook_resid_post (auto: SAEBench's there, concepts elsewhere)",
    default="auto",
    choices=("auto", "concepts", "saebench_first_letter"),
)

EVAL = EvalEntry(
    name="absorption_rate",
    description="Feature absorption: main latents silent while an aligned latent fires (needs concepts)",
    evaluate="sae_bench_amortization.evals.absorption_rate.main:evaluate",
    check="sae_bench_amortization.evals.absorption_rate.main:check",
    config_class=AbsorptionRateEvalConfig,
    options=(ABSORPTION_DEFINITION,),
    directions={"absorption_rate": HIGHER_IS_WORSE, "full_absorption_rate": HIGHER_IS_WORSE},
)
