"""Concept probing on SAE latents, streamed: which latents track a labelled concept, and how well k of
them predict it (k-sparse probes). Pure tensor / scikit-learn math, no file or model access.

Pass 1 (:class:`LatentConceptMeans`): each latent's mean activation on a concept's positive and negative
tokens → the latents with the largest difference. Pass 2 (:class:`ConceptSample`): for a bounded sample of
tokens per concept (all positives up to a cap, a seeded share of negatives), those latents' activations.
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score
from sklearn.model_selection import train_test_split


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


class ConceptSample:
    """Per concept, the selected latents' activations (and optionally the raw inputs) on a bounded sample."""

    def __init__(
        self,
        top_latents: torch.Tensor,
        max_positives: int = 2000,
        negative_rate: float = 0.1,
        keep_inputs: bool = False,
        seed: int = 0,
    ):
        self.top_latents = top_latents  # [C, k]
        self.max_positives, self.negative_rate, self.keep_inputs = (
            max_positives,
            negative_rate,
            keep_inputs,
        )
        self.generator = torch.Generator().manual_seed(seed)
        n = top_latents.shape[0]
        self.features: list[list[torch.Tensor]] = [[] for _ in range(n)]
        self.inputs: list[list[torch.Tensor]] = [[] for _ in range(n)]
        self.labels: list[list[torch.Tensor]] = [[] for _ in range(n)]
        self.n_positive = [0] * n

    def update(
        self, codes: torch.Tensor, labels: torch.Tensor, inputs: torch.Tensor | None = None
    ) -> None:
        """codes [B, d_sae], labels [B, C] bool, inputs [B, d_in] (kept when keep_inputs)."""
        codes, labels = codes.detach().cpu(), labels.cpu()
        negative_draw = torch.rand(codes.shape[0], generator=self.generator) < self.negative_rate
        for c in range(self.top_latents.shape[0]):
            positive = labels[:, c]
            if self.n_positive[c] >= self.max_positives:
                positive = torch.zeros_like(positive)
            keep = positive | (negative_draw & ~labels[:, c])
            if not bool(keep.any()):
                continue
            self.features[c].append(codes[keep][:, self.top_latents[c]].float())
            self.labels[c].append(positive[keep])
            if self.keep_inputs and inputs is not None:
                self.inputs[c].append(inputs.detach().cpu()[keep].float())
            self.n_positive[c] += int(positive.sum())

    def arrays(self, c: int) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """(latent features [n, k], labels [n], inputs [n, d_in] or None) for concept c."""
        if not self.features[c]:
            return np.zeros((0, self.top_latents.shape[1])), np.zeros(0, dtype=bool), None
        inputs = torch.cat(self.inputs[c]).numpy() if self.inputs[c] else None
        return torch.cat(self.features[c]).numpy(), torch.cat(self.labels[c]).numpy(), inputs


def probe_f1(features: np.ndarray, labels: np.ndarray, seed: int = 0) -> float | None:
    """F1 on a held-out 20% (stratified) of a logistic-regression probe; None with too few positives."""
    if labels.sum() < 10 or (~labels).sum() < 10:
        return None
    train_x, test_x, train_y, test_y = train_test_split(
        features, labels, test_size=0.2, random_state=seed, stratify=labels
    )
    probe = LogisticRegression(max_iter=1000, class_weight="balanced")
    probe.fit(train_x, train_y)
    return float(f1_score(test_y, probe.predict(test_x), zero_division=0.0))


def k_sparse_f1(features: np.ndarray, labels: np.ndarray, k: int, seed: int = 0) -> float | None:
    """F1 of a probe on the first k columns (the k latents with the largest mean difference)."""
    return probe_f1(features[:, :k], labels, seed)


class SplittingAccumulator:
    """One streaming pass for ΔF1: latent mean differences per concept, plus a bounded token sample kept
    as sparse codes (all positives of a concept up to ``max_positives``, a seeded share of the rest)."""

    def __init__(
        self,
        concept_names: list[str],
        max_positives: int = 2000,
        negative_rate: float = 0.1,
        seed: int = 0,
    ):
        self.names = concept_names
        self.means: LatentConceptMeans | None = None
        self.max_positives, self.negative_rate = max_positives, negative_rate
        self.generator = torch.Generator().manual_seed(seed)
        self.positive_kept = torch.zeros(len(concept_names), dtype=torch.int64)
        self.rows: list[torch.Tensor] = []
        self.columns: list[torch.Tensor] = []
        self.values: list[torch.Tensor] = []
        self.labels: list[torch.Tensor] = []
        self.n_kept = 0
        self.seed = seed

    def update(self, codes: torch.Tensor, labels: torch.Tensor) -> None:
        """codes [B, d_sae], labels [B, C] bool."""
        codes, labels = codes.detach().float().cpu(), labels.cpu()
        if self.means is None:
            self.means = LatentConceptMeans(len(self.names), codes.shape[-1])
        self.means.update(codes, labels)
        room = self.positive_kept < self.max_positives
        keep = (labels & room).any(dim=1) | (
            torch.rand(codes.shape[0], generator=self.generator) < self.negative_rate
        )
        kept_codes, kept_labels = codes[keep], labels[keep]
        self.positive_kept += kept_labels.sum(dim=0)
        row, column = kept_codes.nonzero(as_tuple=True)
        self.rows.append(row + self.n_kept)
        self.columns.append(column)
        self.values.append(kept_codes[row, column])
        self.labels.append(kept_labels)
        self.n_kept += kept_codes.shape[0]

    def scores(self, min_positives: int = 50, max_k: int = 2) -> list[dict]:
        """Per concept with enough positives: F1@1, F1@2, ΔF1 and its top latents."""
        if self.means is None:
            return []
        from scipy.sparse import csr_matrix

        d_sae = self.means.total_sum.shape[0]
        sample = csr_matrix(
            (
                torch.cat(self.values).numpy(),
                (torch.cat(self.rows).numpy(), torch.cat(self.columns).numpy()),
            ),
            shape=(self.n_kept, d_sae),
        )
        labels = torch.cat(self.labels).numpy()
        top = self.means.top_latents(max_k)
        out = []
        for c, name in enumerate(self.names):
            if self.means.positive_count[c] < min_positives:
                continue
            features = sample[:, top[c].numpy()].toarray()
            f1_1 = k_sparse_f1(features, labels[:, c], 1, self.seed)
            f1_2 = k_sparse_f1(features, labels[:, c], 2, self.seed)
            if f1_1 is None or f1_2 is None:
                continue
            out.append(
                {
                    "concept": name,
                    "f1_at_1": f1_1,
                    "f1_at_2": f1_2,
                    "delta_f1": f1_2 - f1_1,
                    "top_latents": [int(j) for j in top[c]],
                }
            )
        return out


def splitting_scores(
    encode, source, batch_size: int = 4096, min_positives: int = 50, seed: int = 0
) -> list[dict]:
    """Per concept of ``source`` (which must carry concept labels): F1 of 1- and 2-sparse probes on the
    latents of ``encode`` (inputs [B, d_in] → codes [B, d_sae]) and ΔF1 = F1@2 − F1@1. One pass."""
    accumulator = SplittingAccumulator(source.concept_names, seed=seed)
    for batch in source.iter_batches(batch_size):
        accumulator.update(encode(batch.acts), batch.concepts)
    return accumulator.scores(min_positives)
