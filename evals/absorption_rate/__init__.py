"""``absorption_rate`` eval: feature absorption per labelled concept (ground-truth probe on raw activations)."""

from __future__ import annotations

from sae_bench_amortization.registry import EvalEntry, EvalRequest, SAEOutcome


def _run(request: EvalRequest) -> list[SAEOutcome]:
    from sae_bench_amortization.evals.absorption_rate.eval_config import AbsorptionRateEvalConfig
    from sae_bench_amortization.evals.absorption_rate.main import run_eval

    config = AbsorptionRateEvalConfig(
        n_tokens=request.n_tokens,
        batch_size=request.batch_size,
        seed=request.seed,
        absorption_definition=request.options.get("absorption_definition", "auto"),
    )
    return run_eval(
        config,
        request.saes,
        request.activations,
        request.device,
        request.output_dir / "absorption_rate",
        request.force_rerun,
        request.dtype,
        request.inference,
    )


EVAL = EvalEntry(
    name="absorption_rate",
    description="Feature absorption: main latents silent while an aligned latent fires (needs concepts)",
    run=_run,
)
