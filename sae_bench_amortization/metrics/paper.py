"""The paper's metric protocol (its authors' unified evaluation), pure math over ≤ ``max_tokens`` tokens.

With z⁺ = max(z, 0) and x̂ = decode(z):
- nmse = mean_i ‖x_i − x̂_i‖² / (mean_i ‖x_i‖² + 1e-9);
- dead_rate = share of latents whose firing frequency (z⁺ > 0) is ≤ 1e-6; dense_rate: ≥ 0.1;
  dense_rate_0_2: ≥ 0.2;
- pseudo label y_i = 1 when ‖x_i‖₂ > median_i ‖x_i‖₂;
- latents ranked by |corr_j|, corr_j = mean_i(s_ij (y_i − ȳ)) / (std_i(s_ij)·(std(y) + 1e-6) + 1e-6), with
  s_ij = (z⁺_ij − mean_i z⁺_ij) / (std_i z⁺_ij + 1e-6) (population std);
- f1_at_k: balanced liblinear logistic regression (max_iter 1000) on the k top-ranked standardized latents,
  fitted and scored (binary F1) on the same tokens; delta_f1 = f1_at_2 − f1_at_1;
- absorption_rate: main = the top-ranked latent, aux = the next five: the share of y = 1 tokens where
  z⁺_main = 0 and some aux latent fires.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import torch

from sae_bench_amortization.metrics.accumulator import Step
from sae_bench_amortization.metrics.reconstruction import ReconstructionAccumulator

PAPER_MAX_TOKENS = 50_000
DEFINITIONS = {
    "codes": "z⁺ = max(z, 0); x̂ = the SAE's decode of z; over the first 50,000 evaluated tokens at most",
    "nmse": "mean_i ‖x_i − x̂_i‖² / (mean_i ‖x_i‖² + 1e-9)",
    "dead_rate": "share of latents with firing frequency (z⁺ > 0) ≤ 1e-6",
    "dense_rate": "share of latents with firing frequency ≥ 0.1",
    "dense_rate_0_2": "share of latents with firing frequency ≥ 0.2",
    "pseudo_label": "y_i = 1 if ‖x_i‖₂ > median_i ‖x_i‖₂ else 0",
    "ranking": "latents by |corr_j|, corr_j = mean_i(s_ij (y_i − ȳ)) / (std_i(s_ij)·(std(y) + 1e-6) + "
    "1e-6), s_ij = (z⁺_ij − mean_i z⁺_ij) / (std_i z⁺_ij + 1e-6), population std",
    "f1_at_k": "LogisticRegression(class_weight='balanced', solver='liblinear', max_iter=1000) on the k "
    "top-ranked standardized latents, fitted and scored (binary F1) on the same tokens",
    "delta_f1": "f1_at_2 − f1_at_1",
    "absorption_rate": "main = top-ranked latent, aux = next 5: share of y = 1 tokens where z⁺_main = 0 "
    "and some aux latent > 0",
    "median_gap": "median over tokens of objective(encoder) − objective(non_amortized)",
}


class PaperProtocolAccumulator:
    """Streams (x [B, d_in], x̂ [B, d_in], codes [B, d_sae]) over at most ``max_tokens`` tokens, keeping
    z⁺ as sparse rows (memory: the codes' non-zeros) and ‖x‖; :meth:`metrics` computes the protocol."""

    def __init__(self, d_sae: int, max_tokens: int = PAPER_MAX_TOKENS):
        self.d_sae, self.max_tokens = d_sae, max_tokens
        self.reconstruction = ReconstructionAccumulator()
        self.norms: list[torch.Tensor] = []
        self.rows: list[torch.Tensor] = []
        self.columns: list[torch.Tensor] = []
        self.values: list[torch.Tensor] = []
        self.n_tokens = 0

    def update(self, x: torch.Tensor, x_hat: torch.Tensor, codes: torch.Tensor) -> None:
        take = min(x.shape[0], self.max_tokens - self.n_tokens)
        if take <= 0:
            return
        x, x_hat, codes = x[:take].double(), x_hat[:take].double(), codes[:take].clamp(min=0)
        self.reconstruction.update(x, x_hat)
        self.norms.append(x.norm(dim=-1).cpu())
        row, column = codes.nonzero(as_tuple=True)
        self.rows.append((row + self.n_tokens).cpu())
        self.columns.append(column.cpu())
        self.values.append(codes[row, column].double().cpu())
        self.n_tokens += take

    def sparse_codes(self) -> torch.Tensor:
        """z⁺ [N, d_sae] as a sparse COO tensor (float64)."""
        index = torch.stack([torch.cat(self.rows), torch.cat(self.columns)])
        return torch.sparse_coo_tensor(
            index, torch.cat(self.values), (self.n_tokens, self.d_sae), check_invariants=False
        ).coalesce()

    def metrics(self) -> dict[str, float | None]:
        """The protocol's metrics (see the module docstring); None where undefined (no tokens)."""
        n = self.n_tokens
        if n == 0:
            return dict.fromkeys(
                ("nmse", "dead_rate", "dense_rate", "dense_rate_0_2", "f1_at_1", "f1_at_2",
                 "delta_f1", "absorption_rate"),
            )  # fmt: skip
        z = self.sparse_codes()
        norms = torch.cat(self.norms).numpy()
        y = (norms > np.median(norms)).astype(np.float64)
        frequency = torch.bincount(z.indices()[1], minlength=self.d_sae).double() / n
        mean, std = latent_moments(z)
        ranking = rank_latents(z, y, mean, std)
        top = columns(z, ranking[:6])  # [N, 6] dense z⁺ of the six top-ranked latents, one pass
        standardized = (top - mean[ranking[:6]]) / (std[ranking[:6]] + 1e-6)
        f1_1, f1_2 = (probe_f1(standardized[:, :k], y) for k in (1, 2))
        return {
            "nmse": self.reconstruction.nmse_over_mean_norm,
            "dead_rate": float((frequency <= 1e-6).double().mean()),
            "dense_rate": float((frequency >= 0.1).double().mean()),
            "dense_rate_0_2": float((frequency >= 0.2).double().mean()),
            "f1_at_1": f1_1,
            "f1_at_2": f1_2,
            "delta_f1": None if f1_1 is None or f1_2 is None else f1_2 - f1_1,
            "absorption_rate": absorption(top, y),
        }


@dataclass(frozen=True)
class PaperMetrics:
    """The protocol's metrics (the module docstring defines them); None where undefined."""

    nmse: float | None
    dead_rate: float | None
    dense_rate: float | None
    dense_rate_0_2: float | None
    f1_at_1: float | None
    f1_at_2: float | None
    delta_f1: float | None
    absorption_rate: float | None


class PaperProtocol:
    """Accumulator: (x, x̂, codes) of each step over at most ``max_tokens`` tokens → :class:`PaperMetrics`."""

    def __init__(self, d_sae: int, max_tokens: int = PAPER_MAX_TOKENS):
        self.tokens = PaperProtocolAccumulator(d_sae, max_tokens)

    def update(self, step: Step) -> None:
        self.tokens.update(step.x, step.reconstruction, step.codes)

    def result(self) -> PaperMetrics:
        return PaperMetrics(**self.tokens.metrics())


def latent_moments(z: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Per-latent mean and population std [d_sae] of sparse z⁺ [N, d_sae]."""
    n = z.shape[0]
    column, value = z.indices()[1], z.values()
    total = torch.zeros(z.shape[1], dtype=torch.float64).index_add_(0, column, value)
    squares = torch.zeros(z.shape[1], dtype=torch.float64).index_add_(0, column, value * value)
    mean = total / n
    variance = (squares / n - mean * mean).clamp(min=0)
    return mean.numpy(), variance.sqrt().numpy()


def rank_latents(z: torch.Tensor, y: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """Latent indices by |corr_j| descending (ties by index); z⁺ sparse [N, d_sae], y [N] in {0, 1},
    the latents' mean and population std [d_sae] (:func:`latent_moments`)."""
    n = z.shape[0]
    y_centered = torch.as_tensor(y - y.mean())
    # mean_i((z_ij − m_j)(y_i − ȳ)) = mean_i(z_ij (y_i − ȳ)) since Σ_i (y_i − ȳ) = 0
    covariance = (torch.sparse.mm(z.t(), y_centered.unsqueeze(1)).squeeze(1) / n).numpy()
    numerator = covariance / (std + 1e-6)  # mean_i(s_ij (y_i − ȳ))
    std_s = std / (std + 1e-6)  # population std of the standardized column
    corr = numerator / (std_s * (y.std() + 1e-6) + 1e-6)
    return np.lexsort((np.arange(len(corr)), -np.abs(corr)))


def columns(z: torch.Tensor, latents: np.ndarray) -> np.ndarray:
    """z⁺[:, latents] dense [N, k] (float64), from one pass over the non-zeros."""
    slot = torch.full((z.shape[1],), -1, dtype=torch.int64)
    slot[torch.as_tensor(latents, dtype=torch.int64)] = torch.arange(len(latents))
    rows, cols = z.indices()
    keep = slot[cols] >= 0
    out = torch.zeros(z.shape[0], len(latents), dtype=torch.float64)
    out[rows[keep], slot[cols[keep]]] = z.values()[keep]
    return out.numpy()


def probe_f1(features: np.ndarray, y: np.ndarray) -> float | None:
    """Binary F1 of a balanced liblinear logistic regression fitted and scored on the same tokens (None
    when y has one class)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import f1_score

    if len(np.unique(y)) < 2:
        return None
    probe = LogisticRegression(class_weight="balanced", solver="liblinear", max_iter=1000)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # convergence warnings on constant columns
        probe.fit(features, y)
    predicted = probe.predict(features)
    # sklearn's inferred annotation of zero_division is its default's (str); 0.0 is documented
    return float(f1_score(y, predicted, zero_division=0.0))  # pyright: ignore[reportArgumentType]


def absorption(top: np.ndarray, y: np.ndarray) -> float | None:
    """Share of y = 1 tokens where the top-ranked latent is silent and one of the next five fires;
    ``top`` [N, 6]: z⁺ of the six top-ranked latents, best first."""
    positive = y == 1
    if not positive.any():
        return None
    absorbed = (top[:, 0] <= 0) & (top[:, 1:6] > 0).any(axis=1)
    return float(absorbed[positive].mean())
