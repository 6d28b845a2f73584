"""``splitting`` eval: ΔF1 of k-sparse probes per labelled concept."""

from sae_bench_amortization.evals.splitting.eval_config import SplittingEvalConfig
from sae_bench_amortization.registry import EvalEntry

EVAL = EvalEntry(
    name="splitting",
    description="Feature splitting: ΔF1 = F1@2 − F1@1 of k-sparse probes per labelled concept (needs concepts)",
    evaluate="sae_bench_amortization.evals.splitting.main:evaluate",
    check="sae_bench_amortization.evals.splitting.main:check",
    config_class=SplittingEvalConfig,
    output="sae_bench_amortization.evals.splitting.eval_output:SplittingEvalOutput",
)
