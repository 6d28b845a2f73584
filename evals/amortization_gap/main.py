"""``amortization_gap``: every inference mode on the same tokens and decoder, side by side."""

from __future__ import annotations

import dataclasses
import functools
import time
from dataclasses import dataclass

import torch
from sae_lens import SAE

from sae_bench_amortization.activations.base import ActivationSource
from sae_bench_amortization.activations.sources import TruncatedSource
from sae_bench_amortization.digest import tensors_digest
from sae_bench_amortization.errors import InputError
from sae_bench_amortization.evals.amortization_gap import EVAL
from sae_bench_amortization.evals.amortization_gap.eval_config import (
    DEFAULT_MODES,
    PAPER_MODES,
    PROTOCOLS,
    AmortizationGapEvalConfig,
)
from sae_bench_amortization.evals.amortization_gap.eval_output import (
    AmortizationGapEvalOutput,
    AmortizationMetricCategories,
    AmortizationMetrics,
    ModeRow,
)
from sae_bench_amortization.inference.dictionary import (
    decode,
    dictionary_of,
    print_zero_rows_note,
    sparse_coding_targets,
)
from sae_bench_amortization.inference.objectives import penalty_weights
from sae_bench_amortization.metrics.accumulator import Step
from sae_bench_amortization.metrics.gap import (
    GAP_PROTOCOLS,
    GapSettings,
    concept_evidence,
    pair_concepts,
)
from sae_bench_amortization.modes import (
    KINDS,
    InferenceMode,
    InferenceSettings,
    calibration_record,
    mode_sae,
    parse_mode,
    parse_modes,
    role_of,
)
from sae_bench_amortization.modes.loca import check_pairing
from sae_bench_amortization.registry import metric_facts
from sae_bench_amortization.reports.tables import (
    aligned,
    always_shown,
    csv_columns,
    format_number,
    shown_columns,
    table_columns,
)
from sae_bench_amortization.runner.ground_truth import truth_for
from sae_bench_amortization.runner.loop import (
    EvalContext,
    Evaluated,
    saebench_style,
)
from sae_bench_amortization.runner.outputs import (
    GroundTruthByMode,
    ground_truth_metrics,
    with_ground_truth,
)
from sae_bench_amortization.sources.saes import spec_from_path
from sae_bench_amortization.sources.sanity import check_sae


def is_loca(sae: SAE) -> bool:
    return sae.cfg.architecture() == "loca"


def mode_row_name(sae: SAE, mode: InferenceMode) -> str:
    """A mode's row name: the encoder of an SAE whose architecture is itself a mode (a LocA-SAE's own
    encoder: the row ``loca``) is named after it."""
    own = sae.cfg.architecture()
    return own if mode.role == "encoder" and role_of(own) == "encoder" else mode.name


@dataclass(frozen=True)
class ModeRun:
    """One row: the SAE whose encode gives the codes, the SAE whose decoder reads them, λ of the codes."""

    encoder: SAE
    decoder: SAE
    lam: float | None


def mode_runs(
    sae: SAE,
    modes: list[InferenceMode],
    lam: float | None,
    inference: InferenceSettings,
    *,
    loca: SAE | None,
    mode_lambdas: dict[str, float | None],
) -> dict[str, ModeRun]:
    """Row name → its run: each mode on ``sae``'s decoder at its λ (``mode_lambdas``, default ``lam``; none
    for modes without λ), then ``loca``: the LocA-SAE's own encoder and decoder, when one is given."""
    runs: dict[str, ModeRun] = {}
    for mode in modes:
        mode_lam = mode_lambdas.get(mode.name, lam) if mode.spec.needs_lambda else None
        runs[mode_row_name(sae, mode)] = ModeRun(
            mode_sae(sae, mode, mode_lam, inference), sae, mode_lam
        )
    if loca is not None:
        encoder, _ = gap_ends()
        runs[mode_row_name(loca, encoder)] = ModeRun(loca, loca, None)  # its own encoder: "loca"
    return runs


def compare_modes(
    sae: SAE,
    source: ActivationSource,
    modes: list[InferenceMode],
    lam: float | None,
    inference: InferenceSettings,
    *,
    config: AmortizationGapEvalConfig,
    loca: SAE | None = None,
    mode_lambdas: dict[str, float | None] | None = None,
) -> list[dict]:
    """Stream the source once; per mode, the accumulators of ``config.protocol``
    (:data:`GAP_PROTOCOLS`: NMSE, L0, mean objective, dead/dense rates, ΔF1, absorption, time; "paper":
    the paper's definitions). Rows in mode order, then ``loca`` when a LocA-SAE is given beside ``sae``:
    its own encoder and decoder. A mode's codes use its λ from ``mode_lambdas`` (default ``lam``); every
    objective is ``inference.objective``'s at ``lam`` (k_sparse: λ None, the squared error alone)."""
    runs = mode_runs(sae, modes, lam, inference, loca=loca, mode_lambdas=mode_lambdas or {})
    protocol = GAP_PROTOCOLS[config.protocol]
    truth = truth_for(sae, source)
    settings = GapSettings(
        dense_threshold=config.dense_threshold,
        max_concepts=config.max_concepts,
        concept_names=source.concept_names,
        truth=None if truth is None else truth.dictionary,
        k_sparse=inference.objective == "k_sparse",
    )
    metrics = {
        name: protocol(run.decoder.W_dec, functools.partial(decode, run.decoder), settings)
        for name, run in runs.items()
    }
    decoders = {id(run.decoder): run.decoder for run in runs.values()}
    dictionaries = {key: dictionary_of(decoder).D for key, decoder in decoders.items()}
    weights = {key: penalty_weights(D, inference.objective) for key, D in dictionaries.items()}
    if protocol.max_tokens is not None:
        source = TruncatedSource(source, protocol.max_tokens)
    with torch.no_grad():
        for batch in source.iter_batches(config.batch_size):
            x = batch.acts.to(device=sae.W_dec.device, dtype=sae.W_dec.dtype)
            targets = {key: sparse_coding_targets(decoder, x) for key, decoder in decoders.items()}
            for name, run in runs.items():
                codes, seconds = timed_encode(run.encoder, x)
                key = id(run.decoder)
                step = Step(
                    x=x,
                    codes=codes,
                    x_hat=decode(run.decoder, codes),
                    concepts=batch.concepts,
                    inputs=batch.acts,
                    targets=targets[key],
                    dictionary=dictionaries[key],
                    lam=0.0 if lam is None else lam,
                    weights=weights[key],
                    seconds=seconds,
                )
                metrics[name].update(step)
    rows = [
        {"mode": name, **metrics[name].result(), "l1_coefficient": run.lam}
        for name, run in runs.items()
    ]
    # concept-averaged metrics over the concepts every mode defines them on (n beside them)
    concept_rows = {name: getattr(metrics[name], "concept_rows", lambda: None)() for name in runs}
    paired = pair_concepts(rows, concept_rows)
    for row in paired:  # the per-concept evidence behind those means
        evidence = concept_evidence(concept_rows[str(row["mode"])])
        if evidence is not None:
            row["concepts"] = evidence
    return paired


def timed_encode(encoder: SAE, x: torch.Tensor) -> tuple[torch.Tensor, float]:
    """(codes [B, d_sae] of ``encoder`` for x [B, d_in], seconds it took, the GPU synchronized)."""
    start = time.perf_counter()
    codes = encoder.encode(x)
    if codes.is_cuda:
        torch.cuda.synchronize()
    return codes, time.perf_counter() - start


def rows_to_csv(rows: list[dict]) -> str:
    """The rows as CSV: ModeRow's columns (its metric facts), a protocol's own where some row has them."""
    columns = csv_columns(ModeRow, rows)
    lines = [",".join(columns)]
    for row in rows:
        lines.append(",".join("" if row.get(c) is None else str(row[c]) for c in columns))
    return "\n".join(lines) + "\n"


UNDEFINED, NOT_APPLICABLE = "undef", "n/a"
# columns whose key holds another definition under a protocol: (title, legend) there
PROTOCOL_COLUMNS = {
    "paper": {
        "delta_f1": (
            "ΔF1",
            "the paper's: F1@2 − F1@1 of probes on its pseudo-label (‖x‖ > median)",
        ),
        "absorption_rate": (
            "absorb",
            "the paper's: share of the pseudo-label's y = 1 tokens where the top-ranked latent is "
            "silent and one of the next 5 fires",
        ),
    }
}


def _cell(row: dict, key: str, fmt: str, count: str | None) -> str:
    """One table cell: the value (with its concept count when ``count`` names one), :data:`UNDEFINED`
    when it is null with a reason (in the row's ``undefined``), else :data:`NOT_APPLICABLE`."""
    value = row.get(key)
    if value is None:
        return UNDEFINED if key in (row.get("undefined") or {}) else NOT_APPLICABLE
    text = format_number(value, fmt)
    return text if count is None or row.get(count) is None else f"{text} ({row[count]})"


def format_table(
    sae_name: str,
    rows: list[dict],
    lam: float | None,
    inference: InferenceSettings | None = None,
    protocol: str = "default",
) -> str:
    """The rows as a fixed-width table (ΔF1 and absorption shown when measured, each with the number of
    concepts it averages over), a legend of its columns, and one line per null metric and reason naming
    the modes it applies to; the title names the problem (λ, or k for k_sparse) when it is not the
    paper's plain l1."""
    facts = metric_facts(ModeRow)
    overrides = PROTOCOL_COLUMNS.get(protocol, {})
    columns = shown_columns(table_columns(ModeRow), rows, always=always_shown(ModeRow))
    titles = [overrides.get(key, (title, ""))[0] for title, key, _ in columns]
    cells = [
        [row["mode"]] + [_cell(row, key, fmt, facts[key].count) for _, key, fmt in columns]
        for row in rows
    ]
    width = max(len(title) for title in titles) if titles else 0
    legend = ["columns:"] + [
        f"  {title.ljust(width)}  {overrides.get(key, (title, facts[key].legend))[1]}"
        for title, (_, key, _) in zip(titles, columns, strict=True)
    ]
    shown = {text for line in cells for text in line[1:]}
    if UNDEFINED in shown:
        legend.append(
            f"  {UNDEFINED.ljust(width)}  cannot be measured here (why: the null lines above)"
        )
    if NOT_APPLICABLE in shown:
        legend.append(f"  {NOT_APPLICABLE.ljust(width)}  does not apply to this mode")
    modes_of: dict[tuple[str, str], list[str]] = {}
    for row in rows:
        for key, why in (row.get("undefined") or {}).items():
            modes_of.setdefault((key, why), []).append(row["mode"])
    every = [row["mode"] for row in rows]
    notes = [
        f"null {key} ({'every mode' if modes == every else ', '.join(modes)}): {why}"
        for (key, why), modes in sorted(modes_of.items())
    ]
    problem = "" if inference is None or inference.objective == "l1" else f"{inference.objective}, "
    if inference is not None and inference.objective == "k_sparse":
        title = f"{sae_name} ({problem}k {inference.k})"
    else:
        title = f"{sae_name} ({problem}λ {lam:.4g})" if lam is not None else sae_name
    return "\n".join([title, *aligned(["mode", *titles], cells), *notes, *legend])


def gap_ends() -> tuple[InferenceMode, InferenceMode]:
    """The two modes the gap compares: the first requestable mode kind whose role is ``encoder`` (an SAE's
    own encoder) and the first whose role is ``optimum`` (the codes the others are measured against)."""
    ends = []
    for role in ("encoder", "optimum"):
        for name, kind in KINDS.items():
            if kind.role == role and (mode := requestable(name)) is not None:
                ends.append(mode)
                break
    encoder, optimum = ends
    return encoder, optimum


def requestable(name: str) -> InferenceMode | None:
    """The mode ``--inference`` asks for by ``name``; None when it cannot (a step count is missing, or the
    kind is not a solver run on the decoder)."""
    try:
        return parse_mode(name)
    except InputError:
        return None


def gap_modes(config: AmortizationGapEvalConfig) -> list[InferenceMode]:
    """The config's modes (none: the protocol's defaults), plus the gap's two ends (:func:`gap_ends`)."""
    defaults = PAPER_MODES if config.protocol == "paper" else DEFAULT_MODES
    modes = parse_modes(config.modes or defaults)
    for required in gap_ends():
        if all(mode.name != required.name for mode in modes):
            modes.append(required)
    return modes


def check(requirements) -> dict | None:
    """Before any work: the protocol, the modes, and the paired LocA-SAE (found, a LocA-SAE, made from this
    SAE as far as its cfg records); the LocA-SAE's hash goes into the result's fingerprint."""
    config, spec, sae = requirements.config, requirements.spec, requirements.sae
    if config.protocol not in PROTOCOLS:
        raise InputError(f"unknown protocol '{config.protocol}': choose {' or '.join(PROTOCOLS)}")
    gap_modes(config)
    loca_of = loca_pairs(config, requirements.request.saes)
    if spec.sae_name not in loca_of:
        return None
    if is_loca(sae):
        raise InputError(
            f"SAE {spec.sae_name} is itself a LocA-SAE (its encoder is the row 'loca'): "
            "drop --loca-path for it"
        )
    loca = _load_loca(loca_of[spec.sae_name], sae)
    check_sae(loca, f"--loca-path {loca_of[spec.sae_name]}")
    float32 = sae.W_dec.dtype == torch.float32  # the base's hash is of its float32 weights
    digest = tensors_digest(sae.state_dict()) if float32 else None
    check_pairing(loca_of[spec.sae_name], loca, sae, digest)
    return {"loca_weights_sha256": tensors_digest(loca.state_dict())}


def evaluate(context: EvalContext) -> Evaluated:
    """One SAE: every mode side by side on its decoder (and its LocA-SAE's row when one is paired)."""
    config, spec, sae = context.config, context.spec, context.base_sae
    source, inference = context.source, context.work.inference
    modes = gap_modes(config)
    if any(mode.spec.needs_lambda for mode in modes):
        print_zero_rows_note(sae, spec.sae_name)
    loca_of = loca_pairs(config, context.request.saes)
    loca = _load_loca(loca_of[spec.sae_name], sae) if spec.sae_name in loca_of else None
    protocol = GAP_PROTOCOLS[config.protocol]
    scope = inference.lambda_calibration or protocol.lambda_scope
    lam, calibration = context.work.shared_lambda if context.work.uses_lambda else (None, None)
    calibrations = {"shared": calibration_record(calibration) or None}
    mode_lambdas = {}
    for mode in modes:
        mode_lam, mode_calibration = context.work.lambda_for(mode, scope)
        mode_lambdas[mode.name] = mode_lam
        if mode_calibration is not None and mode_calibration is not calibration:
            calibrations[mode.name] = calibration_record(mode_calibration)
    rows = compare_modes(
        sae, source, modes, lam, inference, config=config, loca=loca, mode_lambdas=mode_lambdas
    )
    by_mode = {row["mode"]: row for row in rows}
    encoder_mode, optimum_mode = gap_ends()
    encoder_row, optimum_row = by_mode[mode_row_name(sae, encoder_mode)], by_mode[optimum_mode.name]
    gap = encoder_row["objective"] - optimum_row["objective"]
    for row in rows:  # the gap to the optimum, split at the best codes on the row's own support
        on_support, optimum = row.pop("objective_on_support"), optimum_row["objective"]
        row["coefficient_gap"] = None if on_support is None else row["objective"] - on_support
        row["support_gap"] = None if on_support is None else on_support - optimum
        if on_support is None:
            why = "some token's support is wider than 1,024 latents: its restricted fit is not computed"
            row["undefined"] = (row.get("undefined") or {}) | {
                "coefficient_gap": why,
                "support_gap": why,
            }
    median_gap = None
    if protocol.keep_per_token:
        per_token = encoder_row["per_token_objective"] - optimum_row["per_token_objective"]
        median_gap = float(per_token.median()) if per_token.numel() else None
        for row in rows:
            del row["per_token_objective"]
    run_config = dataclasses.replace(
        config,
        modes=[row["mode"] for row in rows],
        l1_coefficient=lam,
        lambda_calibration=calibrations["shared"] if scope == "shared" else calibrations,
        lambda_scope=scope,
        definitions=protocol.definitions,
    )
    metrics = AmortizationMetrics(
        l1_coefficient=lam,
        mean_gap=gap,
        coefficient_gap=encoder_row["coefficient_gap"],
        support_gap=encoder_row["support_gap"],
        mean_relative_gap=gap / optimum_row["objective"] if optimum_row["objective"] > 0 else None,
        median_gap=median_gap,
    )
    truth_by_mode = {row["mode"]: row.pop("ground_truth") for row in rows}
    print(format_table(spec.sae_name, rows, lam, inference, config.protocol))
    summary = {
        "mean_gap": gap,
        "mean_relative_gap": metrics.mean_relative_gap,
        "l1_coefficient": lam,
    }
    categories = AmortizationMetricCategories(amortization=metrics)
    if any(
        truth_by_mode.values()
    ):  # a synthetic source: SAE-Lens's metrics per mode, parallel lists
        by_mode = {mode: ground_truth_metrics(values) for mode, values in truth_by_mode.items()}
        categories = with_ground_truth(categories, GroundTruthByMode.of(by_mode))
    details = [ModeRow(**row) for row in rows]
    evaluated = context.result(AmortizationGapEvalOutput, categories, details, summary, run_config)
    evaluated.text_artifacts["amortization_gap.csv"] = rows_to_csv(rows)
    return evaluated


def loca_pairs(config: AmortizationGapEvalConfig, specs: list) -> dict[str, str]:
    """SAE name → its ``--loca-path`` (paired in order)."""
    if config.loca_paths and len(config.loca_paths) != len(specs):
        raise InputError(
            f"--loca-path pairs with the SAEs in order: got {len(config.loca_paths)} for {len(specs)} SAEs"
        )
    return dict(zip([spec.sae_name for spec in specs], config.loca_paths, strict=False))


run_eval = saebench_style(EVAL)  # SAEBench's run_eval(config, selected_saes, ...) shape


def _load_loca(path: str, sae):
    """The LocA-SAE at ``path`` on ``sae``'s device and dtype; it must read the same activations."""

    loca = spec_from_path(path, "loca").load(
        str(sae.W_dec.device), str(sae.W_dec.dtype).removeprefix("torch.")
    )
    if not is_loca(loca):
        raise InputError(
            f"--loca-path {path} holds a '{loca.cfg.architecture()}' SAE, not a LocA-SAE"
        )
    if loca.cfg.d_in != sae.cfg.d_in:
        raise InputError(
            f"--loca-path {path} has d_in {loca.cfg.d_in} but the SAE has d_in {sae.cfg.d_in}"
        )
    return loca


__all__ = ["DEFAULT_MODES", "compare_modes", "evaluate", "run_eval"]
