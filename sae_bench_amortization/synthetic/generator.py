"""Synthetic activations with planted ground truth: superposition, long-tailed firing, hierarchies
(child ⇒ parent, where SAEs absorb) and composite concepts (one concept in two sub-contexts, where SAEs
split), plus noise. Every pathology metric can be checked against the truth here.

x = Σ_i a_i·f_i + Σ_c b_c·g_{c,s} + noise, with
  f_i   [F, d_in]  true unit feature directions (F > d_in: superposition);
  a_i ≥ 0          magnitude of feature i when it fires (Bernoulli with Zipf-like probability p_i);
  hierarchies      (parent, child) pairs of a frequent parent and a rare child (``child_share`` of the
                   parent's rate): the child fires, and then the parent fires too, at the child's magnitude;
  composites       concept c = feature i_c whose every occurrence also carries one of two sub-context
                   directions g_{c,1}, g_{c,2} (with magnitude ``context_scale``·a): one concept, two contexts.
Ground-truth concept activity ``concepts`` [N, F + C]: each feature, then each composite's sub-context 1
(the split structure), all bool. Deterministic per seed: tokens come in fixed blocks, each seeded by
(seed, block index), so any chunking of the stream gives the same tokens.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from sae_bench_amortization.activations.base import ActivationBatch, rechunk
from sae_bench_amortization.errors import InputError

BLOCK = 4096  # tokens per seeded block


@dataclass(frozen=True)
class SyntheticConfig:
    d_in: int = 128
    n_features: int = 256
    p_max: float = 0.04  # firing probability of the most frequent feature
    zipf_exponent: float = 0.7  # p_i ∝ (i + 1)^−s, long-tailed
    p_min: float = 0.004
    magnitude_low: float = 0.5  # a_i ~ Uniform(low, high): non-negative
    magnitude_high: float = 1.5
    n_hierarchies: int = 4
    child_share: float = 0.04  # a child fires on this share of its parent's rate
    n_composites: int = 2
    context_scale: float = 1.0
    noise: float = 0.02
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("d_in", "n_features"):
            if getattr(self, name) <= 0:
                raise InputError(
                    f"--{name.replace('_', '-')} must be positive, got {getattr(self, name)}"
                )
        if self.n_hierarchies < 0 or self.n_composites < 0:
            raise InputError("--n-hierarchies and --n-composites must be >= 0")
        if self.n_features < 2 * self.n_hierarchies + self.n_composites:
            raise InputError(
                "--n-features is too small for the hierarchies and composites asked for"
            )
        if not 0 < self.p_min <= self.p_max < 1:
            raise InputError(f"need 0 < p_min <= p_max < 1, got {self.p_min}, {self.p_max}")
        if self.noise < 0:
            raise InputError(f"--noise must be >= 0, got {self.noise}")


@dataclass
class GroundTruth:
    """The planted structure: dictionary [F, d_in], context directions [C, 2, d_in], probabilities [F]."""

    config: SyntheticConfig
    dictionary: torch.Tensor
    context_directions: torch.Tensor
    firing_probability: torch.Tensor
    hierarchies: list[tuple[int, int]] = field(
        default_factory=list
    )  # (parent, child) feature indices
    composites: list[int] = field(default_factory=list)  # feature index of each composite concept

    @property
    def concept_names(self) -> list[str]:
        roles = {p: f"parent_of_{c}" for p, c in self.hierarchies}
        roles.update({c: f"child_of_{p}" for p, c in self.hierarchies})
        roles.update({i: f"composite_{j}" for j, i in enumerate(self.composites)})
        names = [
            f"feature_{i}" + (f"_{roles[i]}" if i in roles else "")
            for i in range(self.config.n_features)
        ]
        return names + [f"composite_{j}_context_1" for j in range(len(self.composites))]

    def metadata(self) -> dict[str, str]:
        return {
            "config": json.dumps(asdict(self.config)),
            "hierarchies": json.dumps(self.hierarchies),
            "composites": json.dumps(self.composites),
            "concept_names": json.dumps(self.concept_names),
        }


def ground_truth(config: SyntheticConfig) -> GroundTruth:
    """Directions, probabilities and the planted hierarchy / composite structure for a config."""
    generator = torch.Generator().manual_seed(config.seed)
    F = config.n_features
    dictionary = torch.nn.functional.normalize(
        torch.randn(F, config.d_in, generator=generator), dim=1
    )
    ranks = torch.randperm(F, generator=generator).double()
    probability = (config.p_max * (ranks + 1) ** -config.zipf_exponent).clamp_min(config.p_min)
    # Parents and composites are frequent features (enough tokens to probe them); each child is a rare
    # refinement of its parent: it fires on ``child_share`` of the parent's rate.
    by_frequency = probability.argsort(descending=True).tolist()
    n_h, n_c = config.n_hierarchies, config.n_composites
    parents, composites = by_frequency[:n_h], by_frequency[n_h : n_h + n_c]
    children = by_frequency[n_h + n_c : 2 * n_h + n_c]
    for parent, child in zip(parents, children, strict=True):
        probability[child] = probability[parent] * config.child_share
    hierarchies = list(zip(parents, children, strict=True))
    contexts = torch.nn.functional.normalize(
        torch.randn(config.n_composites, 2, config.d_in, generator=generator), dim=-1
    )
    return GroundTruth(config, dictionary, contexts, probability.float(), hierarchies, composites)


def _block(truth: GroundTruth, index: int) -> tuple[torch.Tensor, torch.Tensor]:
    """One seeded block: activations [BLOCK, d_in], concepts [BLOCK, F + C] bool."""
    config = truth.config
    generator = torch.Generator().manual_seed(config.seed * 1_000_003 + index + 1)
    F = config.n_features
    fires = torch.rand(BLOCK, F, generator=generator) < truth.firing_probability
    for parent, child in truth.hierarchies:  # child ⇒ parent
        fires[:, parent] |= fires[:, child]
    magnitude = config.magnitude_low + (config.magnitude_high - config.magnitude_low) * torch.rand(
        BLOCK, F, generator=generator
    )
    for (
        parent,
        child,
    ) in truth.hierarchies:  # a child occurrence carries its parent at the same magnitude
        magnitude[:, parent] = torch.where(
            fires[:, child], magnitude[:, child], magnitude[:, parent]
        )
    codes = fires * magnitude
    acts = codes @ truth.dictionary
    context_one = torch.zeros(BLOCK, len(truth.composites), dtype=torch.bool)
    for j, feature in enumerate(truth.composites):
        which = torch.rand(BLOCK, generator=generator) < 0.5  # sub-context 1 or 2
        direction = torch.where(
            which[:, None], truth.context_directions[j, 0], truth.context_directions[j, 1]
        )
        acts += (config.context_scale * codes[:, feature])[:, None] * direction
        context_one[:, j] = fires[:, feature] & which
    acts += config.noise * torch.randn(BLOCK, config.d_in, generator=generator)
    return acts, torch.cat([fires, context_one], dim=1)


def stream(
    truth: GroundTruth, n_tokens: int, batch_size: int = 4096, start: int = 0
) -> Iterator[ActivationBatch]:
    """Tokens [start, start + n_tokens) as ActivationBatches of batch_size (the same for any batch_size)."""
    if n_tokens <= 0:
        raise InputError(f"--n-tokens must be positive, got {n_tokens}")
    d_in = truth.config.d_in
    first, last = start // BLOCK, (start + n_tokens + BLOCK - 1) // BLOCK

    def blocks() -> Iterator[torch.Tensor]:
        for index in range(first, last):
            acts, concepts = _block(truth, index)
            joined = torch.cat([acts, concepts.float()], dim=1)
            yield joined[start - first * BLOCK :] if index == first else joined

    seen = 0
    for joined in rechunk(blocks(), batch_size):
        take = min(joined.shape[0], n_tokens - seen)
        yield ActivationBatch(joined[:take, :d_in].contiguous(), joined[:take, d_in:].bool())
        seen += take
        if seen >= n_tokens:
            return


class SyntheticActivations:
    """An ActivationSource over the synthetic stream (concept labels included)."""

    def __init__(self, truth: GroundTruth, n_tokens: int, start: int = 0):
        self.truth, self.n_tokens, self.start = truth, n_tokens, start
        self.d_in = truth.config.d_in
        self.concept_names = truth.concept_names

    def describe(self) -> str:
        c = self.truth.config
        return f"synthetic benchmark (d_in {c.d_in}, {c.n_features} features, seed {c.seed}, {self.n_tokens} tokens)"

    def identity(self) -> dict:
        config = asdict(self.truth.config)
        return {"synthetic": config, "start": self.start, "n_tokens": self.n_tokens}

    def iter_batches(self, batch_size: int) -> Iterator[ActivationBatch]:
        return stream(self.truth, self.n_tokens, batch_size, self.start)


def truth_path(activation_file: str | Path) -> Path:
    """The sidecar beside an activation file: ``<file>.truth.safetensors``."""
    return Path(f"{activation_file}.truth.safetensors")


def write_synthetic(
    out: str | Path, config: SyntheticConfig, n_tokens: int, start: int = 0
) -> tuple[Path, Path]:
    """Write tokens [start, start + n_tokens) as an activation file (activations, concepts,
    concept_names) and the truth sidecar ``<out>.truth.safetensors``."""
    from safetensors.torch import save_file

    from sae_bench_amortization.activations.file import ActivationFileWriter
    from sae_bench_amortization.runner.results import write_file_atomic

    out = Path(out)
    if out.is_dir():
        raise InputError(f"--out is a folder, expected a file path: {out}")
    if not out.parent.is_dir():
        raise InputError(f"output folder does not exist: {out.parent}")
    truth = ground_truth(config)
    with ActivationFileWriter(out, config.d_in, concept_names=truth.concept_names) as writer:
        for batch in stream(truth, n_tokens, 8192, start):
            writer.write(batch.acts, batch.concepts)
    sidecar = truth_path(out)
    tensors = {
        "dictionary": truth.dictionary.contiguous(),
        "context_directions": truth.context_directions.contiguous(),
        "firing_probability": truth.firing_probability.contiguous(),
    }
    write_file_atomic(sidecar, lambda temporary: save_file(tensors, temporary, truth.metadata()))
    return out, sidecar


def load_truth(sidecar: str | Path) -> GroundTruth:
    from safetensors import safe_open

    with safe_open(str(sidecar), framework="pt") as handle:
        metadata = handle.metadata()
        tensors = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118
    config = SyntheticConfig(**json.loads(metadata["config"]))
    return GroundTruth(
        config,
        tensors["dictionary"],
        tensors["context_directions"],
        tensors["firing_probability"],
        [tuple(pair) for pair in json.loads(metadata["hierarchies"])],
        json.loads(metadata["composites"]),
    )
