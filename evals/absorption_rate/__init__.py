"""``absorption_rate`` eval: feature absorption per labelled concept (ground-truth probe on raw activations),
or SAEBench's first-letter absorption on a TransformerLens model."""

from sae_bench_amortization.evals.absorption_rate.eval_config import (
    ABSORPTION_DEFINITIONS,
    AbsorptionRateEvalConfig,
)
from sae_bench_amortization.registry import EvalEntry, EvalOption

ABSORPTION_DEFINITION = EvalOption(
    "--absorption-definition",
    "concept labels of the activations, or SAEBench's first-letter machinery on a TransformerLens model "
    "at blocks.L.hook_resid_post (auto: SAEBench's there, concepts elsewhere)",
    choices=ABSORPTION_DEFINITIONS,
)

EVAL = EvalEntry(
    name="absorption_rate",
    description="Feature absorption: main latents silent while an aligned latent fires (needs concepts)",
    evaluate="sae_bench_amortization.evals.absorption_rate.main:evaluate",
    check="sae_bench_amortization.evals.absorption_rate.main:check",
    config_class=AbsorptionRateEvalConfig,
    options=(ABSORPTION_DEFINITION,),
    output="sae_bench_amortization.evals.absorption_rate.eval_output:AbsorptionRateEvalOutput",
)
