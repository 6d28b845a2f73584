"""``dead_dense`` eval: dead and dense latent rates, firing-frequency histogram."""

from sae_bench_amortization.evals.dead_dense.eval_config import DeadDenseEvalConfig
from sae_bench_amortization.registry import EvalEntry, EvalOption


def _share(value: float) -> str | None:
    return None if 0 < value < 1 else "must be in (0, 1)"


DENSE_THRESHOLD = EvalOption(
    "--dense-threshold",
    "a latent firing on more than this share of tokens is dense",
    type=float,
    metavar="F",
    check=_share,
)

EVAL = EvalEntry(
    name="dead_dense",
    description="Dead and dense latents: share never firing, share firing on > dense_threshold of tokens",
    evaluate="sae_bench_amortization.evals.dead_dense.main:evaluate",
    config_class=DeadDenseEvalConfig,
    options=(DENSE_THRESHOLD,),
    output="sae_bench_amortization.evals.dead_dense.eval_output:DeadDenseEvalOutput",
)
