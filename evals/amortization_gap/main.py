"""``amortization_gap``: every inference mode on the same tokens and decoder, side by side."""

from __future__ import annotations

import dataclasses
import time

import torch

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
from sae_bench_amortization.inference.solver import objective
from sae_bench_amortization.metrics.concepts import (
    SplittingAccumulator,
    absorption_scores,
    mean_over,
    n_measured,
    null_reason,
    select_concepts,
)
from sae_bench_amortization.metrics.firing import FiringCounter, pathologies
from sae_bench_amortization.metrics.ground_truth import GroundTruthAccumulator
from sae_bench_amortization.metrics.paper import DEFINITIONS as PAPER_DEFINITIONS
from sae_bench_amortization.metrics.paper import PAPER_MAX_TOKENS, PaperProtocolAccumulator
from sae_bench_amortization.metrics.reconstruction import (
    NO_VARIANCE,
    MeanAccumulator,
    ReconstructionAccumulator,
)
from sae_bench_amortization.metrics.refit import refit_on_support
from sae_bench_amortization.modes import (
    InferenceSettings,
    calibration_record,
    mode_sae,
    parse_mode,
    parse_modes,
)
from sae_bench_amortization.modes.loca import check_pairing
from sae_bench_amortization.reports.tables import aligned, format_number, shown_columns
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

NO_SIGNAL = "the activations are all zero, so NMSE is 0/0"
CSV_COLUMNS = (
    "mode",
    "nmse",
    "nmse_refit",
    "explained_variance",
    "l0",
    "objective",
    "dead_rate",
    "dense_rate",
    "delta_f1",
    "absorption_rate",
    "seconds_per_1k_tokens",
    "l1_coefficient",
)
PAPER_CSV_COLUMNS = ("dense_rate_0_2", "f1_at_1", "f1_at_2")


def is_loca(sae) -> bool:
    return sae.cfg.architecture() == "loca"


def mode_row_name(sae, mode) -> str:
    """A mode's row name: a LocA-SAE's own encoder is the row ``loca`` (its amortized mode)."""
    return "loca" if mode.kind == "amortized" and is_loca(sae) else mode.name


def compare_modes(
    sae,
    source,
    modes,
    lam: float,
    inference: InferenceSettings,
    config,
    loca=None,
    mode_lambdas: dict[str, float | None] | None = None,
) -> list[dict]:
    """Stream the source once; per mode: NMSE, L0, mean objective, dead/dense rates, ΔF1, absorption and
    time (``config.protocol`` "paper": the paper's definitions, :mod:`metrics.paper`). Rows in mode order,
    then ``loca`` when a LocA-SAE is given beside ``sae``: its own encoder and decoder. A mode's codes use
    its λ from ``mode_lambdas`` (default ``lam``); every objective is at ``lam``."""
    mode_lambdas = mode_lambdas or {}
    paper = config.protocol == "paper"
    runs = {}  # row name → (SAE whose encode gives the codes, SAE whose decoder reads them, λ of the codes)
    for mode in modes:
        mode_lam = mode_lambdas.get(mode.name, lam) if mode.spec.needs_lambda else None
        runs[mode_row_name(sae, mode)] = (mode_sae(sae, mode, mode_lam, inference), sae, mode_lam)
    if loca is not None:
        runs["loca"] = (loca, loca, None)
    decoders = {id(decoder): decoder for _, decoder, _ in runs.values()}
    dictionaries = {key: dictionary_of(decoder) for key, decoder in decoders.items()}
    firing = {name: FiringCounter(decoder.cfg.d_sae) for name, (_, decoder, _) in runs.items()}
    reconstruction = {name: ReconstructionAccumulator() for name in runs}
    refitted = {
        name: ReconstructionAccumulator() for name in runs
    }  # codes refitted on their support
    objectives = {name: MeanAccumulator() for name in runs}
    protocol = {name: PaperProtocolAccumulator(run[1].cfg.d_sae) for name, run in runs.items()}
    per_token = {name: [] for name in runs}  # objectives per token (paper: the median gap)
    seconds = dict.fromkeys(runs, 0.0)
    splitting_accumulators = (  # ΔF1 per mode when the tokens carry concept labels
        {name: SplittingAccumulator(source.concept_names, keep_inputs=True) for name in runs}
        if source.concept_names and not paper
        else {}
    )
    truth = truth_for(sae, source)
    ground_truth = (  # SAE-Lens's synthetic metrics per mode, on a synthetic source
        {name: GroundTruthAccumulator(run[1].W_dec, truth.dictionary) for name, run in runs.items()}
        if truth is not None
        else {}
    )
    device, dtype = sae.W_dec.device, sae.W_dec.dtype
    if paper:
        source = TruncatedSource(source, PAPER_MAX_TOKENS)
    with torch.no_grad():
        for batch in source.iter_batches(config.batch_size):
            x = batch.acts.to(device=device, dtype=dtype)
            targets = {key: sparse_coding_targets(decoder, x) for key, decoder in decoders.items()}
            for name, (encoder, decoder, _) in runs.items():
                start = time.perf_counter()
                codes = encoder.encode(x)
                if codes.is_cuda:
                    torch.cuda.synchronize()
                seconds[name] += time.perf_counter() - start
                key = id(decoder)
                x_hat = decode(decoder, codes)
                reconstruction[name].update(x, x_hat)
                for rows in _token_groups(x.shape[0], int(decoder.cfg.d_sae)):
                    refit = refit_on_support(dictionaries[key].D, targets[key][rows], codes[rows])
                    refitted[name].update(x[rows], decode(decoder, refit))
                token_objectives = objective(dictionaries[key].D, targets[key], codes, lam)
                objectives[name].update(token_objectives)
                firing[name].update(codes)
                if paper:
                    protocol[name].update(x, x_hat, codes)
                    per_token[name].append(token_objectives.cpu())
                if splitting_accumulators:
                    splitting_accumulators[name].update(codes, batch.concepts, batch.acts)
                if ground_truth:
                    ground_truth[name].update(codes, x, x_hat, batch.concepts)
    # ΔF1 and absorption on up to config.max_concepts concepts (planted roles first, then the most frequent)
    subset = (
        select_concepts(next(iter(splitting_accumulators.values())), config.max_concepts)
        if splitting_accumulators
        else None
    )
    splitting = {
        name: tokens.scores(only=subset) for name, tokens in splitting_accumulators.items()
    }
    probes: dict = {}  # the modes saw the same tokens and labels: one ground-truth probe per concept
    absorption = {
        name: absorption_scores(tokens, runs[name][1].W_dec, probe_cache=probes, only=subset)
        for name, tokens in splitting_accumulators.items()
    }
    rows = []
    for name, (_, _, mode_lam) in runs.items():
        stats = pathologies(firing[name], config.dense_threshold)
        row = {
            "mode": name,
            "nmse": reconstruction[name].nmse,
            "nmse_refit": refitted[name].nmse,
            "explained_variance": reconstruction[name].explained_variance,
            "l0": stats.mean_l0,
            "objective": objectives[name].mean,
            "dead_rate": stats.dead_rate,
            "dense_rate": stats.dense_rate,
            "delta_f1": mean_over(splitting.get(name, []), "delta_f1"),
            "absorption_rate": mean_over(absorption.get(name, []), "absorption_rate"),
            "full_absorption_rate": mean_over(absorption.get(name, []), "full_absorption_rate"),
            "n_concepts_delta_f1": n_measured(splitting[name], "delta_f1")
            if name in splitting
            else None,
            "n_concepts_absorption": n_measured(absorption[name], "absorption_rate")
            if name in absorption
            else None,
            "seconds_per_1k_tokens": 1000 * seconds[name] / max(stats.n_tokens, 1),
            "ground_truth": ground_truth[name].metrics() if ground_truth else None,
            "l1_coefficient": mode_lam,
        }
        if paper:
            row.update(protocol[name].metrics())
            row["nmse_refit"] = refitted[name].nmse_over_mean_norm
            row["per_token_objective"] = torch.cat(per_token[name]) if per_token[name] else None
        no_label = "the pseudo-label y = ‖x‖ > median has one class only (every norm equal)"
        no_nmse = NO_SIGNAL if paper else NO_VARIANCE
        undefined = {
            **{key: no_nmse for key in ("nmse", "nmse_refit") if row[key] is None},
            "explained_variance": reconstruction[name].explained_variance_reason,
            **{
                key: no_label
                for key in ("f1_at_1", "f1_at_2", "delta_f1", "absorption_rate")
                if paper and row.get(key) is None
            },
            "delta_f1": null_reason(splitting[name], "delta_f1", "ΔF1")
            if name in splitting
            else None,
            "absorption_rate": null_reason(absorption[name], "absorption_rate", "absorption")
            if name in absorption
            else None,
            "full_absorption_rate": null_reason(
                absorption[name], "full_absorption_rate", "full absorption"
            )
            if name in absorption
            else None,
        }
        row["undefined"] = {key: why for key, why in undefined.items() if why} or None
        rows.append(row)
    return rows


def _token_groups(n_tokens: int, d_sae: int, budget: int = 256 * 2**20) -> list[slice]:
    """Rows of a chunk in groups whose dense [group, d_sae] float32 codes take at most ``budget`` bytes
    (refitted codes are built and decoded a group at a time: no second chunk-sized code buffer)."""
    size = max(1, budget // (4 * d_sae))
    return [slice(start, start + size) for start in range(0, n_tokens, size)]


def rows_to_csv(rows: list[dict]) -> str:
    columns = CSV_COLUMNS + tuple(c for c in PAPER_CSV_COLUMNS if any(c in row for row in rows))
    lines = [",".join(columns)]
    for row in rows:
        lines.append(",".join("" if row.get(c) is None else str(row[c]) for c in columns))
    return "\n".join(lines) + "\n"


def format_table(sae_name: str, rows: list[dict], lam: float) -> str:
    """The rows as a fixed-width table (ΔF1 and absorption shown when measured)."""
    columns = [
        ("NMSE", "nmse", ".4f"),
        ("NMSE-refit", "nmse_refit", ".4f"),
        ("EV", "explained_variance", ".4f"),
        ("L0", "l0", ".2f"),
        ("objective", "objective", ".4f"),
        ("dead", "dead_rate", ".3f"),
        ("dense", "dense_rate", ".3f"),
        ("dense.2", "dense_rate_0_2", ".3f"),
        ("F1@1", "f1_at_1", ".3f"),
        ("ΔF1", "delta_f1", ".4f"),
        ("absorb", "absorption_rate", ".3f"),
        ("s/1k tok", "seconds_per_1k_tokens", ".4f"),
        ("λ", "l1_coefficient", ".4g"),
    ]
    columns = shown_columns(columns, rows, always={"nmse", "nmse_refit", "l0", "objective"})
    cells = [
        [row["mode"]] + [format_number(row.get(key), fmt) for _, key, fmt in columns]
        for row in rows
    ]
    header = ["mode"] + [title for title, _, _ in columns]
    notes = {
        f"null {key}: {why}" for row in rows for key, why in (row.get("undefined") or {}).items()
    }
    return "\n".join([f"{sae_name} (λ {lam:.4g})", *aligned(header, cells), *sorted(notes)])


def gap_modes(config: AmortizationGapEvalConfig) -> list:
    """The config's modes (none: the protocol's defaults), plus amortized and non_amortized (the gap
    compares these two)."""
    defaults = PAPER_MODES if config.protocol == "paper" else DEFAULT_MODES
    modes = parse_modes(config.modes or defaults)
    for required in ("amortized", "non_amortized"):
        if all(mode.name != required for mode in modes):
            modes.append(parse_mode(required))
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
    source, inference = context.source, context.request.inference
    modes = gap_modes(config)
    if any(mode.spec.needs_lambda for mode in modes):
        print_zero_rows_note(sae, spec.sae_name)
    loca_of = loca_pairs(config, context.request.saes)
    loca = _load_loca(loca_of[spec.sae_name], sae) if spec.sae_name in loca_of else None
    scope = inference.lambda_calibration or ("per_mode" if config.protocol == "paper" else "shared")
    lam, calibration = context.work.shared_lambda
    calibrations = {"shared": calibration_record(calibration) or None}
    mode_lambdas = {}
    for mode in modes:
        mode_lam, mode_calibration = context.work.lambda_for(mode, scope)
        mode_lambdas[mode.name] = mode_lam
        if mode_calibration is not None and mode_calibration is not calibration:
            calibrations[mode.name] = calibration_record(mode_calibration)
    rows = compare_modes(sae, source, modes, lam, inference, config, loca, mode_lambdas)
    by_mode = {row["mode"]: row for row in rows}
    encoder_row = by_mode["loca" if is_loca(sae) else "amortized"]
    gap = encoder_row["objective"] - by_mode["non_amortized"]["objective"]
    median_gap = None
    if config.protocol == "paper":
        per_token = (
            encoder_row["per_token_objective"] - by_mode["non_amortized"]["per_token_objective"]
        )
        median_gap = float(per_token.median()) if per_token.numel() else None
        for row in rows:
            del row["per_token_objective"]
    run_config = dataclasses.replace(
        config,
        modes=[row["mode"] for row in rows],
        l1_coefficient=lam,
        lambda_calibration=calibrations["shared"] if scope == "shared" else calibrations,
        lambda_scope=scope,
        definitions=PAPER_DEFINITIONS if config.protocol == "paper" else None,
    )
    metrics = AmortizationMetrics(
        l1_coefficient=lam,
        mean_gap=gap,
        mean_relative_gap=gap / by_mode["non_amortized"]["objective"]
        if by_mode["non_amortized"]["objective"] > 0
        else None,
        median_gap=median_gap,
    )
    truth_by_mode = {row["mode"]: row.pop("ground_truth") for row in rows}
    print(format_table(spec.sae_name, rows, lam))
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
