"""``splitting`` eval: ΔF1 of k-sparse probes per labelled concept."""

from __future__ import annotations

from sae_bench_amortization.registry import EvalEntry, EvalRequest, SAEOutcome


def _run(request: EvalRequest) -> list[SAEOutcome]:
    from sae_bench_amortization.evals.splitting.eval_config import SplittingEvalConfig
    from sae_bench_amortization.evals.splitting.main import run_eval

    config = SplittingEvalConfig(
        n_tokens=request.n_tokens, batch_size=request.batch_size, seed=request.seed
    )
    return run_eval(
        config,
        request.saes,
        request.activations,
        request.device,
        request.output_dir / "splitting",
        request.force_rerun,
        request.dtype,
        request.inference,
    )


EVAL = EvalEntry(
    name="splitting",
    description="Feature splitting: ΔF1 = F1@2 − F1@1 of k-sparse probes per labelled concept (needs concepts)",
    run=_run,
)
