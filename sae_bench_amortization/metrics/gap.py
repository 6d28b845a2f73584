"""One inference mode's metrics in the ``amortization_gap`` eval, as a set of accumulators per protocol.

:class:`DefaultGapMetrics` (this package's definitions) and :class:`PaperGapMetrics` (the paper's unified
protocol, :mod:`metrics.paper`) take the same steps and give one mode's row: {metric: value}, plus
``ground_truth`` (SAE-Lens's synthetic metrics, or None) and ``undefined`` ({metric: why it is null}).
A protocol is chosen once, as a class of :data:`GAP_PROTOCOLS`. Pure tensor math.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import ClassVar, Literal

import numpy as np
import torch

from sae_bench_amortization.metrics.accumulator import Step
from sae_bench_amortization.metrics.concepts import (
    AbsorptionSettings,
    ConceptProbes,
    ConceptResult,
    SplittingSettings,
    n_measured,
    paired_mean,
)
from sae_bench_amortization.metrics.firing import Firing
from sae_bench_amortization.metrics.ground_truth import GroundTruth
from sae_bench_amortization.metrics.objective import Objective, ObjectiveOnSupport, Timing
from sae_bench_amortization.metrics.pairing import PAIRED_METRICS
from sae_bench_amortization.metrics.paper import DEFINITIONS, PAPER_MAX_TOKENS, PaperProtocol
from sae_bench_amortization.metrics.reconstruction import NO_VARIANCE, Reconstruction
from sae_bench_amortization.metrics.refit import RefitReconstruction

NO_SIGNAL = "the activations are all zero, so NMSE is 0/0"
NO_LABEL = "the pseudo-label y = ‖x‖ > median has one class only (every norm equal)"
# the order of a row's null reasons
UNDEFINED_ORDER = (
    "nmse",
    "nmse_refit",
    "explained_variance",
    "f1_at_1",
    "f1_at_2",
    "delta_f1",
    "absorption_rate",
    "full_absorption_rate",
)

Row = dict[str, object]


@dataclass(frozen=True)
class GapSettings:
    """What every mode's accumulators share: the dead/dense threshold, the concepts (names of the
    tokens' labels, None without; at most ``max_concepts`` probed), the planted features [F, d_in] of a
    synthetic source (None without), and one ground-truth probe per concept for all modes."""

    dense_threshold: float = 0.1
    max_concepts: int = 8
    concept_names: list[str] | None = None
    truth: torch.Tensor | None = None
    probe_cache: dict[int, tuple[torch.Tensor, np.ndarray]] = field(default_factory=dict)
    k_sparse: bool = False  # the modes solve the k-sparse problem (best codes on a support: NNLS)


class GapMetrics:
    """The accumulators both protocols share: firing, reconstruction, refitted reconstruction, objective,
    time and (on a synthetic source) ground truth. W_dec [d_sae, d_in] and ``decode`` (codes → x̂): the
    decoder that reads the mode's codes."""

    max_tokens: ClassVar[int | None] = None  # the protocol reads at most this many tokens
    keep_per_token: ClassVar[bool] = False  # every token's objective in the row (the median gap)
    lambda_scope: ClassVar[Literal["shared", "per_mode"]] = "shared"  # λ calibration by default
    definitions: ClassVar[dict[str, str] | None] = None  # every metric's definition, for the config

    def __init__(
        self,
        W_dec: torch.Tensor,
        decode: Callable[[torch.Tensor], torch.Tensor],
        settings: GapSettings,
    ):
        d_sae = int(W_dec.shape[0])
        self.firing = Firing(d_sae, settings.dense_threshold)
        self.reconstruction = Reconstruction()
        self.refit = RefitReconstruction(decode, d_sae)
        self.objective = Objective(keep_per_token=self.keep_per_token)
        self.on_support = ObjectiveOnSupport(k_sparse=settings.k_sparse)
        self.timing = Timing()
        truth = settings.truth
        self.ground_truth = None if truth is None else GroundTruth(W_dec, truth)

    def update(self, step: Step) -> None:
        accumulators = (
            self.firing,
            self.reconstruction,
            self.refit,
            self.objective,
            self.on_support,
        )
        for accumulator in accumulators:
            accumulator.update(step)
        self.timing.update(step)
        if self.ground_truth is not None:
            self.ground_truth.update(step)

    def result(self) -> Row:
        firing = self.firing.result().pathologies
        reconstruction = self.reconstruction.result()
        return {
            "nmse": reconstruction.nmse,
            "nmse_refit": self.refit.result().nmse,
            "explained_variance": reconstruction.explained_variance,
            "l0": firing.mean_l0,
            "objective": self.objective.result().mean,
            "objective_on_support": None if (fit := self.on_support.result()) is None else fit.mean,
            "dead_rate": firing.dead_rate,
            "dense_rate": firing.dense_rate,
            "delta_f1": None,
            "absorption_rate": None,
            "full_absorption_rate": None,
            "n_concepts_delta_f1": None,
            "n_concepts_absorption": None,
            "n_concepts_full_absorption": None,
            "seconds_per_1k_tokens": self.timing.result().seconds_per_1k_tokens,
            "ground_truth": None
            if self.ground_truth is None
            else self.ground_truth.result().as_dict(),
        }

    def undefined(self, row: Row, reasons: dict[str, str | None]) -> dict[str, str] | None:
        """{metric: why it is null} in :data:`UNDEFINED_ORDER`, None when nothing is."""
        reasons["explained_variance"] = self.reconstruction.result().explained_variance_reason
        ordered = {key: reasons.get(key) for key in UNDEFINED_ORDER}
        return {key: why for key, why in ordered.items() if why} or None


class DefaultGapMetrics(GapMetrics):
    """This package's definitions; on labelled tokens also ΔF1 and absorption per concept (at most
    ``max_concepts`` concepts, the same for every mode)."""

    def __init__(
        self,
        W_dec: torch.Tensor,
        decode: Callable[[torch.Tensor], torch.Tensor],
        settings: GapSettings,
    ):
        super().__init__(W_dec, decode, settings)
        self.concepts = None
        self.concept_result: ConceptResult | None = None
        if settings.concept_names:
            self.concepts = ConceptProbes(
                settings.concept_names,
                max_concepts=settings.max_concepts,
                splitting=SplittingSettings(),
                absorption=AbsorptionSettings(W_dec, probe_cache=settings.probe_cache),
            )

    def update(self, step: Step) -> None:
        super().update(step)
        if self.concepts is not None:
            self.concepts.update(step)

    def concept_rows(self) -> dict[str, list[dict] | None] | None:
        """After :meth:`result`: the per-concept rows behind ΔF1 ("splitting") and absorption
        ("absorption"), for :func:`pair_concepts`; None without concepts."""
        concepts = self.concept_result
        if concepts is None:
            return None
        return {
            "splitting": None if concepts.splitting is None else concepts.splitting.rows,
            "absorption": None if concepts.absorption is None else concepts.absorption.rows,
        }

    def result(self) -> Row:
        row = super().result()
        reasons: dict[str, str | None] = {
            key: NO_VARIANCE for key in ("nmse", "nmse_refit") if row[key] is None
        }
        concepts = None if self.concepts is None else self.concepts.result()
        self.concept_result = concepts
        if concepts is not None and concepts.splitting is not None:
            splitting = concepts.splitting
            row |= {
                "delta_f1": splitting.mean_delta_f1,
                "n_concepts_delta_f1": splitting.n_concepts,
            }
            reasons["delta_f1"] = splitting.null_reason
        if concepts is not None and concepts.absorption is not None:
            absorption = concepts.absorption
            row |= {
                "absorption_rate": absorption.absorption_rate,
                "full_absorption_rate": absorption.full_absorption_rate,
                "n_concepts_absorption": absorption.n_concepts,
                "n_concepts_full_absorption": n_measured(absorption.rows, "full_absorption_rate"),
            }
            reasons["absorption_rate"] = absorption.null_reason
            reasons["full_absorption_rate"] = absorption.full_null_reason
        return row | {"undefined": self.undefined(row, reasons)}


class PaperGapMetrics(GapMetrics):
    """The paper's protocol over its first :data:`PAPER_MAX_TOKENS` tokens: its NMSE, dead/dense rates,
    F1@k, ΔF1 and absorption (:class:`PaperProtocol`), the refitted codes' NMSE by its definition, and
    every token's objective (``per_token_objective``, for the median gap)."""

    max_tokens: ClassVar[int | None] = PAPER_MAX_TOKENS
    keep_per_token: ClassVar[bool] = True
    lambda_scope: ClassVar[Literal["shared", "per_mode"]] = "per_mode"
    definitions: ClassVar[dict[str, str] | None] = DEFINITIONS

    def __init__(
        self,
        W_dec: torch.Tensor,
        decode: Callable[[torch.Tensor], torch.Tensor],
        settings: GapSettings,
    ):
        super().__init__(W_dec, decode, settings)
        self.protocol = PaperProtocol(int(W_dec.shape[0]))

    def update(self, step: Step) -> None:
        super().update(step)
        self.protocol.update(step)

    def result(self) -> Row:
        row = super().result() | dataclasses.asdict(self.protocol.result())
        row["nmse_refit"] = self.refit.result().nmse_over_mean_norm
        row["per_token_objective"] = self.objective.result().per_token
        reasons: dict[str, str | None] = {
            key: NO_SIGNAL for key in ("nmse", "nmse_refit") if row[key] is None
        }
        label_metrics = ("f1_at_1", "f1_at_2", "delta_f1", "absorption_rate")
        reasons |= {key: NO_LABEL for key in label_metrics if row[key] is None}
        return row | {"undefined": self.undefined(row, reasons)}


GAP_PROTOCOLS: dict[str, type[GapMetrics]] = {
    "default": DefaultGapMetrics,
    "paper": PaperGapMetrics,
}


SPLITTING_KEYS = ("f1_at_1", "f1_at_2", "delta_f1", "top_latents", "n_positives")
ABSORPTION_KEYS = (
    "absorption_rate", "full_absorption_rate", "n_tokens", "main_latents", "absorbing_latents",
    "n_concept_tokens", "n_probe_fires", "n_main_silent", "n_absorbed",
)  # fmt: skip


def concept_evidence(parts: dict[str, list[dict] | None] | None) -> list[dict] | None:
    """One row per concept (in first-seen order) joining :meth:`DefaultGapMetrics.concept_rows`' splitting
    row (ΔF1, its probe's F1s, top latents) and absorption row (both rates, main and absorbing latents,
    the denominators), each part's null reason kept apart (``splitting_reason``, ``absorption_reason``):
    the evidence a concept-averaged metric can be re-derived from. None without concepts."""
    if parts is None:
        return None
    merged: dict[str, dict] = {}
    for part, keys in (("splitting", SPLITTING_KEYS), ("absorption", ABSORPTION_KEYS)):
        for row in parts.get(part) or []:
            entry = merged.setdefault(row["concept"], {"concept": row["concept"]})
            entry |= {key: row.get(key) for key in keys}
            entry[f"{part}_reason"] = row.get("reason")
    return list(merged.values())


def pair_concepts(rows: list[Row], concept_rows: dict[str, dict | None]) -> list[Row]:
    """Mode rows (``row["mode"]``) with every concept-averaged metric taken over the concepts on which
    every row's mode defines it (:func:`~sae_bench_amortization.metrics.concepts.paired_mean`): its
    ``n_concepts_*`` count is then the same in every row, and an empty set is null with its reason.
    ``concept_rows``: mode → :meth:`DefaultGapMetrics.concept_rows` (rows without them are left as
    they are, as are all rows when one mode has none)."""
    by_mode = {str(row["mode"]): concept_rows.get(str(row["mode"])) for row in rows}
    if not rows or any(parts is None for parts in by_mode.values()):
        return rows
    out = [dict(row) for row in rows]
    for key, part, count, what in PAIRED_METRICS:
        per_mode: dict[str, list[dict]] = {
            mode: parts[part] for mode, parts in by_mode.items() if parts is not None
        }
        if any(concepts is None for concepts in per_mode.values()):
            continue
        paired = paired_mean(per_mode, key, what)
        for row in out:
            row[key], row[count] = paired.means[str(row["mode"])], paired.n_concepts
            given = row.get("undefined")
            undefined: dict[str, str] = dict(given) if isinstance(given, dict) else {}
            own = undefined.pop(
                key, None
            )  # why the mode's own mean was null (none of its concepts)
            if row[key] is None and paired.null_reason:
                # the mode's own reason first; the pairing's when other modes measured some
                others = any(paired.counts.values())
                undefined[key] = (
                    f"{own}; {paired.null_reason}" if own and others else own or paired.null_reason
                )
            ordered = {name: undefined[name] for name in UNDEFINED_ORDER if name in undefined}
            row["undefined"] = (
                ordered | {name: why for name, why in undefined.items() if name not in ordered}
                or None
            )
    return out
