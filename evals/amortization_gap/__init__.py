"""``amortization_gap`` eval: all inference modes on one decoder, and the gap between amortized and optimal codes."""

from __future__ import annotations

from sae_bench_amortization.registry import EvalEntry, EvalRequest, SAEOutcome


def _run(request: EvalRequest) -> list[SAEOutcome]:
    from sae_bench_amortization.evals.amortization_gap.eval_config import (
        DEFAULT_MODES,
        AmortizationGapEvalConfig,
    )
    from sae_bench_amortization.evals.amortization_gap.main import run_eval
    from sae_bench_amortization.inference.modes import InferenceSettings

    inference = request.inference or InferenceSettings()
    modes = [m.name for m in inference.modes] if inference.modes_given else list(DEFAULT_MODES)
    config = AmortizationGapEvalConfig(
        modes=modes,
        dense_threshold=request.options.get("dense_threshold", 0.1),
        loca_paths=list(request.options.get("loca_paths", [])),
        n_tokens=request.n_tokens,
        batch_size=request.batch_size,
    )
    return run_eval(
        config,
        request.saes,
        request.activations,
        request.device,
        request.output_dir / "amortization_gap",
        request.force_rerun,
        request.dtype,
        inference,
    )


EVAL = EvalEntry(
    name="amortization_gap",
    description="Inference modes on one decoder (amortized, semi:5, semi:25, non_amortized): NMSE, L0, "
    "objective, dead/dense, gap",
    run=_run,
)
