"""``dead_dense`` eval: dead and dense latent rates, firing-frequency histogram."""

from __future__ import annotations

from sae_bench_amortization.registry import EvalEntry, EvalRequest, SAEOutcome


def _run(request: EvalRequest) -> list[SAEOutcome]:
    from sae_bench_amortization.evals.dead_dense.eval_config import DeadDenseEvalConfig
    from sae_bench_amortization.evals.dead_dense.main import run_eval

    config = DeadDenseEvalConfig(
        dense_threshold=request.options.get("dense_threshold", 0.1),
        n_tokens=request.n_tokens,
        batch_size=request.batch_size,
    )
    return run_eval(
        config,
        request.saes,
        request.activations,
        request.device,
        request.output_dir / "dead_dense",
        request.force_rerun,
        request.dtype,
        request.inference,
    )


EVAL = EvalEntry(
    name="dead_dense",
    description="Dead and dense latents: share never firing, share firing on > dense_threshold of tokens",
    run=_run,
)
