"""Concept probing on SAE latents, streamed: which latents track a labelled concept, and how well k of
them predict it (k-sparse probes). Pure tensor / scikit-learn math, no file or model access.

One streaming pass (:class:`SplittingAccumulator`): each latent's mean activation on a concept's positive
and negative tokens (→ the latents with the largest difference), plus a bounded token sample kept as sparse
codes, from which the k-sparse probes and the absorption rates are computed.
"""

from __future__ import annotations

import functools
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split

from sae_bench_amortization.metrics.accumulator import Step
from sae_bench_amortization.metrics.pairing import common_concept_means, defined_only


class LatentConceptMeans:
    """Σ codes over positive tokens per concept and over all tokens, for mean differences."""

    def __init__(self, n_concepts: int, d_sae: int):
        self.positive_sum = torch.zeros(n_concepts, d_sae, dtype=torch.float64)
        self.total_sum = torch.zeros(d_sae, dtype=torch.float64)
        self.positive_count = torch.zeros(n_concepts, dtype=torch.float64)
        self.n_tokens = 0

    def update(self, codes: torch.Tensor, labels: torch.Tensor) -> None:
        """codes [B, d_sae], labels [B, C] bool."""
        codes64 = codes.detach().double().cpu()
        labels64 = labels.cpu().double()
        self.positive_sum += labels64.T @ codes64
        self.total_sum += codes64.sum(dim=0)
        self.positive_count += labels64.sum(dim=0)
        self.n_tokens += codes.shape[0]

    def mean_difference(self) -> torch.Tensor:
        """[C, d_sae] mean activation on positives minus mean on negatives."""
        positives = self.positive_count.clamp_min(1)[:, None]
        negatives = (self.n_tokens - self.positive_count).clamp_min(1)[:, None]
        return self.positive_sum / positives - (self.total_sum - self.positive_sum) / negatives

    def top_latents(self, k: int) -> torch.Tensor:
        """[C, k] latents with the largest mean difference, best first."""
        return self.mean_difference().topk(k, dim=-1).indices


def probe_f1(features: np.ndarray, labels: np.ndarray, seed: int = 0) -> float | None:
    """F1 on a held-out 20% (stratified) of a logistic-regression probe; None with too few positives."""
    if labels.sum() < MIN_PROBE_CLASS or (~labels).sum() < MIN_PROBE_CLASS:
        return None
    train, test = split_indices(labels, seed)
    probe = LogisticRegression(max_iter=1000, class_weight="balanced")
    probe.fit(features[train], labels[train])
    return binary_f1(labels[test], np.asarray(probe.predict(features[test])))


@functools.lru_cache(maxsize=256)
def _split(labels: bytes, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    stratify = np.frombuffer(labels, dtype=bool, count=n)
    train, test = train_test_split(
        np.arange(n), test_size=0.2, random_state=seed, stratify=stratify
    )
    return np.asarray(train), np.asarray(test)


def split_indices(labels: np.ndarray, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The (train, test) rows ``train_test_split(..., test_size=0.2, random_state=seed, stratify=labels)``
    picks: they depend on the labels alone, so every probe of a concept's sample shares one split,
    computed once."""
    return _split(np.ascontiguousarray(labels, dtype=bool).tobytes(), labels.shape[0], seed)


def binary_f1(truth: np.ndarray, predicted: np.ndarray) -> float:
    """sklearn's binary ``f1_score(truth, predicted, zero_division=0.0)``: 2TP / (2TP + FP + FN), 0 when
    that is 0/0 — without its input validation, which cost more than the probes' fits."""
    truth, predicted = truth.astype(bool), predicted.astype(bool)
    true_positives = int(np.sum(truth & predicted))
    wrong = int(np.sum(truth != predicted))
    return 0.0 if true_positives == 0 else 2 * true_positives / (2 * true_positives + wrong)


def k_sparse_f1(features: np.ndarray, labels: np.ndarray, k: int, seed: int = 0) -> float | None:
    """F1 of a probe on the first k columns (the k latents with the largest mean difference)."""
    return probe_f1(features[:, :k], labels, seed)


class SplittingAccumulator:
    """One streaming pass for the concept metrics: latent mean differences per concept, plus a bounded
    token sample kept as sparse codes (all positives of a concept up to ``max_positives``, a seeded share
    ``negative_rate`` of the other tokens up to ``max_negatives``; ``max_tokens`` in all, first come), with
    the raw inputs too when ``keep_inputs`` (absorption). Memory is bounded whatever the token count."""

    def __init__(
        self,
        concept_names: list[str],
        *,
        max_positives: int = 2000,
        negative_rate: float = 0.1,
        max_negatives: int = 20_000,
        max_tokens: int = 30_000,
        seed: int = 0,
        keep_inputs: bool = False,
    ):
        self.names = concept_names
        self.means: LatentConceptMeans | None = None
        self.max_positives, self.negative_rate = max_positives, negative_rate
        self.max_negatives, self.negatives_kept = max_negatives, 0
        self.max_tokens = max_tokens
        self.generator = torch.Generator().manual_seed(seed)
        self.positive_kept = torch.zeros(len(concept_names), dtype=torch.int64)
        self.rows: list[torch.Tensor] = []
        self.columns: list[torch.Tensor] = []
        self.values: list[torch.Tensor] = []
        self.labels: list[torch.Tensor] = []
        self.inputs: list[torch.Tensor] | None = [] if keep_inputs else None
        self.n_kept = 0
        self.seed = seed
        # F1 of the k-sparse probes fitted on the sample, by (concept, latents): splitting's F1@1/F1@2 and
        # absorption's main-latent search fit the same probes on the same tokens (sklearn is deterministic)
        self.probe_f1s: dict[tuple[int, tuple[int, ...]], float | None] = {}

    def update(
        self, codes: torch.Tensor, labels: torch.Tensor, inputs: torch.Tensor | None = None
    ) -> None:
        """codes [B, d_sae], labels [B, C] bool, inputs [B, d_in] (kept when keep_inputs)."""
        codes, labels = codes.detach().float().cpu(), labels.cpu()
        if self.means is None:
            self.means = LatentConceptMeans(len(self.names), codes.shape[-1])
        self.means.update(codes, labels)
        room = self.positive_kept < self.max_positives
        draw = torch.rand(codes.shape[0], generator=self.generator) < self.negative_rate
        draw &= torch.cumsum(draw, 0) <= self.max_negatives - self.negatives_kept  # bounded sample
        self.negatives_kept += int(draw.sum())
        keep = (labels & room).any(dim=1) | draw
        keep &= torch.cumsum(keep, 0) <= self.max_tokens - self.n_kept  # at most max_tokens in all
        kept_codes, kept_labels = codes[keep], labels[keep]
        self.positive_kept += kept_labels.sum(dim=0)
        row, column = kept_codes.nonzero(as_tuple=True)
        self.rows.append(row + self.n_kept)
        self.columns.append(column)
        self.values.append(kept_codes[row, column])
        self.labels.append(kept_labels)
        if self.inputs is not None and inputs is not None:
            self.inputs.append(inputs.detach().float().cpu()[keep])
        self.n_kept += kept_codes.shape[0]
        self.probe_f1s.clear()  # another sample

    def k_sparse_f1(
        self, concept: int, latents: list[int], features: np.ndarray, labels: np.ndarray
    ) -> float | None:
        """:func:`k_sparse_f1` of a probe on the first ``len(latents)`` columns of ``features`` (the sample's
        codes of those latents), for ``concept`` (``labels``: its column of the sample's labels); fitted once
        per (concept, latents) while the sample stays the same."""
        key = (concept, tuple(latents))
        if key not in self.probe_f1s:
            self.probe_f1s[key] = k_sparse_f1(features, labels, len(latents), self.seed)
        return self.probe_f1s[key]

    def sample(self):
        """(sparse codes of the kept tokens [n, d_sae] as scipy CSR, their labels [n, C])."""
        from scipy.sparse import csr_matrix

        if self.means is None:
            raise ValueError("no tokens were seen")
        d_sae = self.means.total_sum.shape[0]
        values, rows, columns = (
            torch.cat(t).numpy() for t in (self.values, self.rows, self.columns)
        )
        codes = csr_matrix((values, (rows, columns)), shape=(self.n_kept, d_sae))
        return codes, torch.cat(self.labels).numpy()

    def scores(
        self, min_positives: int = 50, max_k: int = 2, only: set[int] | None = None
    ) -> list[dict]:
        """Per concept with enough positives (and in ``only``, if given): F1@1, F1@2, ΔF1, top latents."""
        if self.means is None:
            return []
        codes, labels = self.sample()
        top = self.means.top_latents(max_k)
        constant = _constant_columns(codes)
        out = []
        for c, name in enumerate(self.names):
            if only is not None and c not in only:
                continue
            reason = unmeasurable(self.means, c, min_positives) or no_information(
                codes, int(top[c][0]), constant
            )
            latents = [int(j) for j in top[c]]
            features = codes[:, latents].toarray()
            f1_1 = None if reason else self.k_sparse_f1(c, latents[:1], features, labels[:, c])
            f1_2 = None if reason else self.k_sparse_f1(c, latents[:2], features, labels[:, c])
            if not reason and (f1_1 is None or f1_2 is None):
                reason = (
                    f"fewer than {MIN_PROBE_CLASS} positive or negative tokens in the probe sample"
                )
            positives = int(labels[:, c].sum())
            out.append(
                {
                    "concept": name,
                    "f1_at_1": f1_1,
                    "f1_at_2": f1_2,
                    "delta_f1": None if f1_1 is None or f1_2 is None else f1_2 - f1_1,
                    "top_latents": [] if reason else [int(j) for j in top[c]],
                    "n_positives": positives,
                    "n_negatives": int(labels.shape[0]) - positives,
                    "reason": reason,
                }
            )
        return out


MIN_PROBE_CLASS = 10  # a probe needs this many positive and negative tokens


def unmeasurable(means: LatentConceptMeans, concept: int, min_positives: int) -> str | None:
    """Why a concept cannot be probed (None when it can): it never occurs, occurs too rarely, or always."""
    positives = int(means.positive_count[concept])
    if positives == 0:
        return "the concept never occurs"
    if positives < min_positives:
        return f"fewer positive tokens than min_positives {min_positives}: {positives}"
    if means.n_tokens - positives < MIN_PROBE_CLASS:
        return f"fewer negative tokens than {MIN_PROBE_CLASS}: {means.n_tokens - positives}"
    return None


def _constant_columns(codes, rel_tol: float = 1e-6) -> np.ndarray:
    """[d] bool per column of a scipy sparse matrix [n, d]: one value on every row (to ``rel_tol`` of its
    largest magnitude: identical tokens may differ by rounding in batched products)."""
    if codes.shape[0] == 0:
        return np.ones(codes.shape[1], dtype=bool)
    high = codes.max(axis=0).toarray().ravel()
    low = codes.min(axis=0).toarray().ravel()
    return high - low <= rel_tol * np.maximum(np.abs(high), np.abs(low))


NO_LATENT_FIRES = "the codes carry no information: no latent fires on these tokens"


def no_information(codes, top_latent: int, constant: np.ndarray | None = None) -> str | None:
    """Why a k-sparse probe on a concept's top latents is meaningless (None when it is not): the codes of
    the sampled tokens [n, d_sae] (scipy sparse) carry no information, because no latent fires, every
    token has the same codes, or the concept's top latent takes one value on every token. A probe on a
    constant feature predicts one class: its F1 (and ΔF1 = 0) would say nothing about the codes.
    ``constant``: :func:`_constant_columns` of the codes, when already computed."""
    if codes.nnz == 0:
        return NO_LATENT_FIRES
    if constant is None:
        constant = _constant_columns(codes)
    if constant.all():
        return "the codes carry no information: every token has the same codes"
    if constant[top_latent]:
        return (
            "the codes carry no information on this concept: its top latent takes one value on every "
            "sampled token"
        )
    return None


def select_concepts(tokens: SplittingAccumulator, max_concepts: int) -> set[int]:
    """Up to max_concepts concept indices: named roles first (parent/child/composite), then the most frequent."""
    if tokens.means is None:
        return set()
    counts = tokens.means.positive_count
    order = sorted(
        range(len(tokens.names)),
        key=lambda c: (
            not any(role in tokens.names[c] for role in ("parent_of", "child_of", "composite")),
            -float(counts[c]),
        ),
    )
    return set(order[:max_concepts])


def main_latents(
    features: np.ndarray,
    labels: np.ndarray,
    top: list[int],
    f1_jump_threshold: float,
    seed: int = 0,
    f1_at: Callable[[int], float | None] | None = None,
) -> list[int]:
    """SAEBench's split-feature rule: take top latents one by one while each adds > threshold of F1.
    ``f1_at(k)``: the k-sparse probe's F1 (default: :func:`k_sparse_f1` on ``features``, ``labels``)."""

    def fitted(k: int) -> float | None:
        return k_sparse_f1(features, labels, k, seed) if f1_at is None else f1_at(k)

    main, best = [top[0]], fitted(1) or 0.0
    for k in range(2, len(top) + 1):
        score = fitted(k) or 0.0
        if score - best <= f1_jump_threshold:
            break
        main.append(top[k - 1])
        best = score
    return main


def absorption_scores(
    tokens: SplittingAccumulator,
    decoder: torch.Tensor,
    *,
    min_positives: int = 50,
    max_k: int = 5,
    f1_jump_threshold: float = 0.03,
    cosine_threshold: float = 0.3,
    probe_cache: dict[int, tuple[torch.Tensor, np.ndarray]] | None = None,
    only: set[int] | None = None,
) -> list[dict]:
    """Per concept: the conditional absorption rate (share of the main latents' misses absorbed) and the
    SAEBench-style full rate.

    The concept's ground-truth probe is a logistic regression on the raw inputs; its main latents come
    from :func:`main_latents`. Over sampled tokens where the concept holds and the probe fires:
    ``absorption_rate`` = share, among those where every main latent is silent, where another latent whose
    decoder row has cosine ≥ ``cosine_threshold`` with the probe direction fires (0 when the main latents
    never miss); ``full_absorption_rate`` = share of all those tokens where both happen.
    tokens: filled with keep_inputs=True; decoder: [d_sae, d_in]. ``probe_cache`` (concept index →
    (probe direction, probe predictions)) shares the ground-truth probes between accumulators that sampled
    the same tokens (same labels and seed: e.g. several inference modes on one stream).
    """
    if tokens.means is None or not tokens.inputs:
        return []
    codes, labels = tokens.sample()
    inputs = torch.cat(tokens.inputs).numpy()
    top = tokens.means.top_latents(max_k)
    constant = _constant_columns(codes)
    unit_decoder = torch.nn.functional.normalize(decoder.detach().float().cpu(), dim=1)
    out = []
    for c, name in enumerate(tokens.names):
        y = labels[:, c]
        if only is not None and c not in only:
            continue
        reason = unmeasurable(tokens.means, c, min_positives)
        if not reason and (y.sum() < MIN_PROBE_CLASS or (~y).sum() < MIN_PROBE_CLASS):
            reason = f"fewer than {MIN_PROBE_CLASS} positive or negative tokens in the probe sample"
        if not reason:
            reason = no_information(codes, int(top[c][0]), constant)
        if reason:
            out.append(
                {"concept": name, "absorption_rate": None, "full_absorption_rate": None,
                 "n_tokens": 0, "main_latents": [], "absorbing_latents": [],
                 "n_concept_tokens": int(y.sum()), "n_probe_fires": None, "n_main_silent": None,
                 "n_absorbed": None, "reason": reason}
            )  # fmt: skip
            continue
        top_c = [int(j) for j in top[c]]
        features = codes[:, top_c].toarray()
        main = main_latents(
            features, y, top_c, f1_jump_threshold, tokens.seed,
            f1_at=lambda k: tokens.k_sparse_f1(c, top_c[:k], features, y),  # noqa: B023 (used here)
        )  # fmt: skip
        if probe_cache is not None and c in probe_cache:
            direction, fires = probe_cache[c]
        else:
            probe = LogisticRegression(max_iter=1000, class_weight="balanced").fit(inputs, y)
            coefficients = torch.as_tensor(probe.coef_[0], dtype=torch.float32)
            direction = torch.nn.functional.normalize(coefficients, dim=0)
            fires = probe.predict(inputs) == 1
            if probe_cache is not None:
                probe_cache[c] = (direction, fires)
        aligned = np.flatnonzero((unit_decoder @ direction >= cosine_threshold).numpy())
        aligned = np.setdiff1d(aligned, main)
        counted = codes[y & fires]
        missed = np.asarray((counted[:, main] > 0).sum(axis=1)).ravel() == 0
        firing = (
            (counted[:, aligned] > 0).toarray()
            if aligned.size
            else np.zeros((counted.shape[0], 0), bool)
        )
        absorbed = missed & firing.any(axis=1)
        n = counted.shape[0]
        reason = None
        if n == 0:
            reason = "the ground-truth probe never fires on the concept's tokens (0/0)"
        elif not missed.any():
            reason = "the main latents never miss the concept (absorption 0/0)"
        out.append(
            {
                "concept": name,
                "absorption_rate": float(absorbed.sum() / missed.sum()) if missed.any() else None,
                "full_absorption_rate": float(absorbed.sum() / n) if n else None,
                "n_tokens": int(n),
                "main_latents": main,
                "absorbing_latents": sorted(
                    int(aligned[j]) for j in np.flatnonzero(firing[absorbed].any(axis=0))
                ),
                "n_concept_tokens": int(y.sum()),
                "n_probe_fires": int(n),
                "n_main_silent": int(missed.sum()),
                "n_absorbed": int(absorbed.sum()),
                "reason": reason,
            }
        )
    return out


@dataclass(frozen=True)
class SplittingSettings:
    """k-sparse probes (ΔF1 = F1@2 − F1@1) on concepts with at least ``min_positives`` positive tokens."""

    min_positives: int = 50


@dataclass(frozen=True)
class AbsorptionSettings:
    """Absorption (:func:`absorption_scores`) against ``decoder`` [d_sae, d_in]; ``probe_cache`` shares the
    ground-truth probes between accumulators that sampled the same tokens (several modes on one stream)."""

    decoder: torch.Tensor
    min_positives: int = 50
    max_k: int = 5
    f1_jump_threshold: float = 0.03
    cosine_threshold: float = 0.3
    probe_cache: dict[int, tuple[torch.Tensor, np.ndarray]] | None = None


@dataclass(frozen=True)
class SplittingResult:
    """Per-concept rows of :meth:`SplittingAccumulator.scores`, and their means over the concepts where
    each was measured (``n_concepts``: concepts with a ΔF1; ``null_reason``: why ΔF1 is null)."""

    rows: list[dict]
    mean_delta_f1: float | None
    mean_f1_at_1: float | None
    mean_f1_at_2: float | None
    n_concepts: int
    null_reason: str | None

    @staticmethod
    def of(rows: list[dict]) -> SplittingResult:
        return SplittingResult(
            rows=rows,
            mean_delta_f1=mean_over(rows, "delta_f1"),
            mean_f1_at_1=mean_over(rows, "f1_at_1"),
            mean_f1_at_2=mean_over(rows, "f1_at_2"),
            n_concepts=n_measured(rows, "delta_f1"),
            null_reason=null_reason(rows, "delta_f1", "ΔF1"),
        )


@dataclass(frozen=True)
class AbsorptionResult:
    """Per-concept rows of :func:`absorption_scores` and their means over the concepts where each was
    measured (``n_concepts``: concepts with an absorption rate; the null reasons of both means)."""

    rows: list[dict]
    absorption_rate: float | None
    full_absorption_rate: float | None
    n_concepts: int
    null_reason: str | None
    full_null_reason: str | None

    @staticmethod
    def of(rows: list[dict]) -> AbsorptionResult:
        return AbsorptionResult(
            rows=rows,
            absorption_rate=mean_over(rows, "absorption_rate"),
            full_absorption_rate=mean_over(rows, "full_absorption_rate"),
            n_concepts=n_measured(rows, "absorption_rate"),
            null_reason=null_reason(rows, "absorption_rate", "absorption"),
            full_null_reason=null_reason(rows, "full_absorption_rate", "full absorption"),
        )


@dataclass(frozen=True)
class ConceptResult:
    """What :class:`ConceptProbes` measured: each part it was asked for (None: not asked)."""

    splitting: SplittingResult | None
    absorption: AbsorptionResult | None


class ConceptProbes:
    """Accumulator: the concept metrics of the codes, from one bounded token sample
    (:class:`SplittingAccumulator`) → :class:`ConceptResult`. ``splitting`` / ``absorption``: the parts to
    measure; ``max_concepts``: only that many concepts (:func:`select_concepts`), else all. Needs the
    steps' concept labels; absorption keeps the raw inputs of the sampled tokens."""

    def __init__(
        self,
        concept_names: list[str],
        *,
        seed: int = 0,
        max_concepts: int | None = None,
        splitting: SplittingSettings | None = None,
        absorption: AbsorptionSettings | None = None,
    ):
        keep_inputs = absorption is not None
        self.tokens = SplittingAccumulator(concept_names, seed=seed, keep_inputs=keep_inputs)
        self.max_concepts, self.splitting, self.absorption = max_concepts, splitting, absorption

    def update(self, step: Step) -> None:
        self.tokens.update(step.codes, step.labels, step.raw_inputs)

    def result(self) -> ConceptResult:
        only = None
        if self.max_concepts is not None:
            only = select_concepts(self.tokens, self.max_concepts)
        splitting = absorption = None
        if self.splitting is not None:
            rows = self.tokens.scores(self.splitting.min_positives, only=only)
            splitting = SplittingResult.of(rows)
        if self.absorption is not None:
            settings = self.absorption
            rows = absorption_scores(
                self.tokens,
                settings.decoder,
                min_positives=settings.min_positives,
                max_k=settings.max_k,
                f1_jump_threshold=settings.f1_jump_threshold,
                cosine_threshold=settings.cosine_threshold,
                probe_cache=settings.probe_cache,
                only=only,
            )
            absorption = AbsorptionResult.of(rows)
        return ConceptResult(splitting, absorption)


def mean_over(rows: list[dict], key: str) -> float | None:
    """Mean of ``row[key]`` over the per-concept rows where it was measured (None when it never was: a
    metric that cannot be measured is null, not 0)."""
    values = [row[key] for row in rows if row.get(key) is not None]
    return sum(values) / len(values) if values else None


def n_measured(rows: list[dict], key: str) -> int:
    return sum(row.get(key) is not None for row in rows)


def null_reason(rows: list[dict], key: str, what: str) -> str | None:
    """Why the mean of ``key`` is null (None when it is not): no concept, or each concept's reason."""
    if any(row.get(key) is not None for row in rows):
        return None
    if not rows:
        return f"no concept to measure {what} on"
    kinds = Counter(re.sub(r": \d+$", "", row.get("reason") or "not measured") for row in rows)
    counted = "; ".join(f"{kind} ({n})" for kind, n in kinds.most_common())
    return f"{what} measured on none of {len(rows)} concepts: {counted}"


@dataclass(frozen=True)
class PairedMean:
    """One concept-averaged metric compared across modes: each mode's mean over the concepts on which
    every mode defines it (``means``: mode → mean, None when that set is empty), their number
    (``n_concepts``), each mode's own count (``counts``) and, when the set is empty, why
    (``null_reason``)."""

    means: dict[str, float | None]
    n_concepts: int
    counts: dict[str, int]
    null_reason: str | None


def paired_mean(rows_by_mode: dict[str, list[dict]], key: str, what: str) -> PairedMean:
    """Means of ``row[key]`` per mode over the concepts (``row["concept"]``) where it is defined in every
    mode of ``rows_by_mode`` (mode → per-concept rows): a mean over different concept sets is never put
    beside another."""
    defined = {
        mode: defined_only({row["concept"]: row.get(key) for row in rows})
        for mode, rows in rows_by_mode.items()
    }
    means, n_common = common_concept_means(defined)
    reason = None
    if not n_common:
        counts = ", ".join(f"{mode} {len(values)}" for mode, values in defined.items())
        reason = f"{what} is defined on no concept in every mode (concepts per mode: {counts})"
    counts = {mode: len(values) for mode, values in defined.items()}
    return PairedMean(means, n_common, counts, reason)
