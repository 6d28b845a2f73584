"""Synthetic activations with planted ground truth, built on SAE-Lens's synthetic toolkit.

SAE-Lens's :class:`~sae_lens.synthetic.SyntheticModel` supplies the true features (its
``FeatureDictionary`` [F, d_in], F > d_in: superposition), their Zipfian firing probabilities, firing
magnitudes, optional low-rank correlations and hierarchies (``HierarchyConfig``: a child fires only with
its parent — where SAEs absorb). What it lacks is this thin layer:

  composites  concept c = feature i_c whose every occurrence also carries one of two sub-context directions
              g_{c,1}, g_{c,2} (magnitude ``context_scale``·a_{i_c}): one concept, two contexts — where SAEs
              split;
  noise       isotropic Gaussian noise;
  labels      ``concepts`` [N, F + C] bool: each true feature firing, then each composite's sub-context 1,
              with names carrying the planted roles (``parent_of_…``, ``child_of_…``, ``composite_…``).

x = feature_dict(a) + Σ_c a_{i_c}·context_scale·g_{c,s} + noise.

Deterministic per seed and independent of the chunk schedule: tokens come in fixed blocks of
:data:`BLOCK`; block b draws SAE-Lens's sampler under the global torch RNG seeded from (seed, b) inside
``torch.random.fork_rng`` (the caller's RNG state is untouched), and the thin layer from its own generator
seeded from (seed, b) for another purpose (:func:`derived_seed`). So tokens [s, s + n) are the same whatever the batch size or start offset.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from sae_lens.synthetic import (
    FeatureDictionary,
    Hierarchy,
    HierarchyConfig,
    LowRankCorrelationMatrix,
    SyntheticModel,
    SyntheticModelConfig,
    ZipfianFiringProbabilityConfig,
)

from sae_bench_amortization.activations.base import ActivationBatch, rechunk
from sae_bench_amortization.activations.file import ActivationFileWriter, truth_path
from sae_bench_amortization.atomic import write_file_atomic
from sae_bench_amortization.digest import tensors_digest
from sae_bench_amortization.errors import InputError

BLOCK = 4096  # tokens per seeded block
TRUTH_FORMAT = "sae-bench-amortization-truth/2"


@dataclass(frozen=True)
class PlantedExtras:
    """What SAE-Lens's SyntheticModel lacks: composites (split), noise, and the stream's seed."""

    n_composites: int = 2
    context_scale: float = 1.0
    noise: float = 0.02
    seed: int = 0

    def __post_init__(self) -> None:
        if self.n_composites < 0:
            raise InputError(f"--n-composites must be >= 0, got {self.n_composites}")
        if self.noise < 0:
            raise InputError(f"--noise must be >= 0, got {self.noise}")


@dataclass(frozen=True)
class SyntheticConfig:
    """``saebench synth``'s flags: a SAE-Lens :class:`SyntheticModelConfig` (:meth:`model_config`) and the
    planted extras (:meth:`extras`). Hierarchies: ``n_hierarchies`` roots (the most frequent features),
    ``branching`` children each (mutually exclusive under a ``mutually_exclusive`` share of parents); a child fires only with its parent (SAE-Lens's hierarchy modifier), on
    ``child_share`` of the parent's occurrences (its base firing probability, set after SAE-Lens draws
    the Zipfian ones and saved with the truth)."""

    d_in: int = 128
    n_features: int = 256
    p_max: float = 0.04  # firing probability of the most frequent feature
    zipf_exponent: float = 0.7  # Zipfian over the feature index, scaled into [p_min, p_max]
    p_min: float = 0.004
    magnitude_mean: float = 1.0  # a = relu(mean + std·N(0, 1)) when a feature fires
    magnitude_std: float = 0.1
    n_hierarchies: int = 4
    # P(child | parent): a child refines a share of its parent's occurrences
    child_share: float = 0.1
    branching: int = 2  # children per parent
    # share of parents whose children exclude each other (SAE-Lens's mutually_exclusive_portion)
    mutually_exclusive: float = 0.0
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
        if self.branching < 1 or not 0 <= self.mutually_exclusive <= 1:
            raise InputError(
                f"need branching >= 1 and mutually_exclusive in [0, 1], got {self.branching}, "
                f"{self.mutually_exclusive}"
            )
        if self.n_features < (1 + self.branching) * self.n_hierarchies + self.n_composites:
            raise InputError(
                "--n-features is too small for the hierarchies and composites asked for"
            )
        if not 0 < self.p_min < self.p_max < 1:
            raise InputError(f"need 0 < p_min < p_max < 1, got {self.p_min}, {self.p_max}")
        if self.noise < 0:
            raise InputError(f"--noise must be >= 0, got {self.noise}")
        if not 0 < self.child_share <= 1:
            raise InputError(f"child_share must be in (0, 1], got {self.child_share}")

    def model(self) -> SyntheticModel:
        """SAE-Lens's model of :meth:`model_config`, children firing on ``child_share`` of their parent."""
        model = SyntheticModel(self.model_config())
        probabilities = model.activation_generator.firing_probabilities.clone()
        for _, child in hierarchy_edges(model.hierarchy):
            probabilities[child] = self.child_share
        model.activation_generator.firing_probabilities = probabilities
        return model

    def model_config(self) -> SyntheticModelConfig:
        hierarchy = (
            HierarchyConfig(
                total_root_nodes=self.n_hierarchies,
                branching_factor=self.branching,
                max_depth=1,
                mutually_exclusive_portion=self.mutually_exclusive,
            )
            if self.n_hierarchies
            else None
        )
        return SyntheticModelConfig(
            num_features=self.n_features,
            hidden_dim=self.d_in,
            firing_probability=ZipfianFiringProbabilityConfig(
                exponent=self.zipf_exponent, max_prob=self.p_max, min_prob=self.p_min
            ),
            hierarchy=hierarchy,
            std_firing_magnitudes=self.magnitude_std,
            mean_firing_magnitudes=self.magnitude_mean,
            bias=False,
            seed=self.seed,
        )

    def extras(self) -> PlantedExtras:
        return PlantedExtras(self.n_composites, self.context_scale, self.noise, self.seed)


@dataclass
class GroundTruth:
    """SAE-Lens's synthetic model plus the planted extras: composites (feature indices) and their
    sub-context directions [C, 2, d_in]. ``config``: the flags it was made from, when it was."""

    model: SyntheticModel
    extras: PlantedExtras
    composites: list[int]
    context_directions: torch.Tensor
    config: SyntheticConfig | None = None
    hierarchies: list[tuple[int, int]] = field(init=False)  # (parent, child) feature indices

    def __post_init__(self) -> None:
        self.hierarchies = hierarchy_edges(self.model.hierarchy)

    @property
    def dictionary(self) -> torch.Tensor:
        """The true features [F, d_in] (SAE-Lens's ``feature_vectors``)."""
        return self.model.feature_dict.feature_vectors.detach()

    @property
    def bias(self) -> torch.Tensor:
        return self.model.feature_dict.bias.detach()

    @property
    def firing_probability(self) -> torch.Tensor:
        return self.model.activation_generator.firing_probabilities

    @property
    def n_features(self) -> int:
        return self.model.cfg.num_features

    @property
    def d_in(self) -> int:
        return self.model.cfg.hidden_dim

    @property
    def concept_names(self) -> list[str]:
        children: dict[int, list[int]] = {}
        for parent, child in self.hierarchies:
            children.setdefault(parent, []).append(child)
        roles: dict[int, list[str]] = {}
        for parent, child in self.hierarchies:
            roles.setdefault(child, []).append(f"child_of_{parent}")
        for parent, kids in children.items():
            roles.setdefault(parent, []).append("parent_of_" + "_".join(map(str, kids)))
        for j, feature in enumerate(self.composites):
            roles.setdefault(feature, []).append(f"composite_{j}")
        names = ["_".join([f"feature_{i}", *roles.get(i, [])]) for i in range(self.n_features)]
        return names + [f"composite_{j}_context_1" for j in range(len(self.composites))]

    def identity(self) -> dict[str, Any]:
        """What determines the tokens: SAE-Lens's config, the extras, and a digest of the weights."""

        return {
            "synthetic_model_config": self.model.cfg.to_dict(),
            "extras": asdict(self.extras),
            "weights_sha256": tensors_digest(truth_tensors(self)),
        }


def hierarchy_edges(hierarchy: Hierarchy | None) -> list[tuple[int, int]]:
    """(parent, child) feature-index pairs of SAE-Lens's hierarchy forest, depth first."""
    edges: list[tuple[int, int]] = []

    def walk(node, parent: int | None) -> None:
        if parent is not None and node.feature_index is not None:
            edges.append((parent, node.feature_index))
        here = node.feature_index if node.feature_index is not None else parent
        for child in node.children:
            walk(child, here)

    for root in hierarchy.roots if hierarchy is not None else []:
        walk(root, None)
    return edges


def derived_seed(seed: int, purpose: str, index: int = 0) -> int:
    """A 63-bit seed for one purpose and block, unrelated to ``seed`` itself and to the other purposes
    (SAE-Lens seeds its feature dictionary with ``seed`` and its other draws with seed + 1…4)."""
    digest = hashlib.sha256(f"{seed}/{purpose}/{index}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


def _plant_composites(
    model: SyntheticModel, extras: PlantedExtras
) -> tuple[list[int], torch.Tensor]:
    """The most frequent features outside the hierarchy, and their sub-context directions [C, 2, d_in]."""
    in_hierarchy = {i for edge in hierarchy_edges(model.hierarchy) for i in edge}
    if model.hierarchy is not None:
        in_hierarchy |= model.hierarchy.feature_indices_used
    probability = model.activation_generator.firing_probabilities.cpu()
    order = sorted(range(len(probability)), key=lambda i: (-float(probability[i]), i))
    free = [i for i in order if i not in in_hierarchy]
    if len(free) < extras.n_composites:
        raise InputError(
            f"--n-composites {extras.n_composites}: only {len(free)} features are outside the hierarchy"
        )
    generator = torch.Generator().manual_seed(derived_seed(extras.seed, "contexts"))
    contexts = torch.nn.functional.normalize(
        torch.randn(extras.n_composites, 2, model.cfg.hidden_dim, generator=generator), dim=-1
    )
    return free[: extras.n_composites], contexts


def ground_truth(
    config: SyntheticConfig | SyntheticModelConfig | SyntheticModel,
    extras: PlantedExtras | None = None,
) -> GroundTruth:
    """The planted world of flags (``SyntheticConfig``), of a SAE-Lens config, or of a SAE-Lens model."""
    flags = config if isinstance(config, SyntheticConfig) else None
    extras = extras or (flags.extras() if flags is not None else PlantedExtras())
    try:
        if isinstance(config, SyntheticConfig):
            model = config.model()
        elif isinstance(config, SyntheticModel):
            model = config
        else:
            model = SyntheticModel(config)
    except ValueError as error:  # SAE-Lens's own validation
        raise InputError(f"synthetic model: {error}") from None
    composites, contexts = _plant_composites(model, extras)
    return GroundTruth(model, extras, composites, contexts, flags)


def load_synthetic_model(path: str | Path) -> SyntheticModel:
    """A SAE-Lens synthetic model: a saved folder (``SyntheticModel.save``), or a
    ``SyntheticModelConfig`` as a JSON or YAML file (``to_dict`` form)."""
    path = Path(path)
    if path.is_dir():
        try:
            return SyntheticModel.load_from_disk(path)
        except (OSError, KeyError, ValueError) as error:
            raise InputError(
                f"--synthetic-model {path}: not a saved SAE-Lens SyntheticModel ({error})"
            ) from None
    if not path.is_file():
        raise InputError(f"--synthetic-model not found: {path}")
    text = path.read_text()
    try:
        if path.suffix.lower() in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text)
        else:
            data = json.loads(text)
    except Exception as error:  # noqa: BLE001 — any parse error is the user's file
        raise InputError(f"--synthetic-model {path}: not valid JSON/YAML ({error})") from None
    if not isinstance(data, dict):
        raise InputError(f"--synthetic-model {path}: expected a SyntheticModelConfig mapping")
    try:
        config = SyntheticModelConfig.from_dict(data)
        return SyntheticModel(config)
    except (KeyError, TypeError, ValueError) as error:
        raise InputError(
            f"--synthetic-model {path}: not a SyntheticModelConfig ({error})"
        ) from None


def _block(truth: GroundTruth, index: int) -> tuple[torch.Tensor, torch.Tensor]:
    """One seeded block: activations [BLOCK, d_in], concepts [BLOCK, F + C] bool."""
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        torch.manual_seed(derived_seed(truth.extras.seed, "features", index))
        features = truth.model.activation_generator.sample(BLOCK)
        if features.is_sparse:
            features = features.to_dense()
        acts = truth.model.feature_dict(features).float()
    features = features.float()
    fires = features > 0
    generator = torch.Generator().manual_seed(derived_seed(truth.extras.seed, "extras", index))
    context_one = torch.zeros(BLOCK, len(truth.composites), dtype=torch.bool)
    for j, feature in enumerate(truth.composites):
        which = torch.rand(BLOCK, generator=generator) < 0.5  # sub-context 1 or 2
        direction = torch.where(
            which[:, None], truth.context_directions[j, 0], truth.context_directions[j, 1]
        )
        acts += (truth.extras.context_scale * features[:, feature])[:, None] * direction
        context_one[:, j] = fires[:, feature] & which
    acts += truth.extras.noise * torch.randn(BLOCK, truth.d_in, generator=generator)
    return acts, torch.cat([fires, context_one], dim=1)


def stream(
    truth: GroundTruth, n_tokens: int, batch_size: int = 4096, start: int = 0
) -> Iterator[ActivationBatch]:
    """Tokens [start, start + n_tokens) as ActivationBatches of batch_size (the same for any batch_size)."""
    if n_tokens <= 0:
        raise InputError(f"--n-tokens must be positive, got {n_tokens}")
    d_in = truth.d_in
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
        self.d_in = truth.d_in
        self.concept_names = truth.concept_names

    def describe(self) -> str:
        return (
            f"synthetic benchmark (d_in {self.d_in}, {self.truth.n_features} features, seed "
            f"{self.truth.extras.seed}, {self.n_tokens} tokens)"
        )

    def identity(self) -> dict:
        return {"synthetic": self.truth.identity(), "start": self.start, "n_tokens": self.n_tokens}

    def iter_batches(self, batch_size: int) -> Iterator[ActivationBatch]:
        return stream(self.truth, self.n_tokens, batch_size, self.start)


def truth_tensors(truth: GroundTruth) -> dict[str, torch.Tensor]:
    """Everything drawn at random when the world was made (SAE-Lens's saved weights and ours)."""
    tensors = {
        "dictionary": truth.dictionary,
        "bias": truth.bias,
        "firing_probability": truth.firing_probability,
        "context_directions": truth.context_directions,
    }
    correlation = truth.model.correlation_matrix
    if correlation is not None:
        tensors["correlation_factor"] = correlation.correlation_factor
        tensors["correlation_diag"] = correlation.correlation_diag
    return {name: t.detach().float().cpu().contiguous() for name, t in tensors.items()}


def truth_metadata(truth: GroundTruth) -> dict[str, str]:
    hierarchy = truth.model.hierarchy
    return {
        "format": TRUTH_FORMAT,
        "synthetic_model_config": json.dumps(truth.model.cfg.to_dict()),
        "hierarchy": json.dumps(hierarchy.to_dict() if hierarchy is not None else None),
        "extras": json.dumps(asdict(truth.extras)),
        "config": json.dumps(asdict(truth.config) if truth.config is not None else None),
        "hierarchies": json.dumps(truth.hierarchies),
        "composites": json.dumps(truth.composites),
        "concept_names": json.dumps(truth.concept_names),
    }


def write_synthetic(
    out: str | Path, config: SyntheticConfig | GroundTruth, n_tokens: int, start: int = 0
) -> tuple[Path, Path]:
    """Write tokens [start, start + n_tokens) as an activation file (activations, concepts,
    concept_names) and the truth sidecar ``<out>.truth.safetensors``."""
    from safetensors.torch import save_file

    out = Path(out)
    if out.is_dir():
        raise InputError(f"--out is a folder, expected a file path: {out}")
    if not out.parent.is_dir():
        raise InputError(f"output folder does not exist: {out.parent}")
    truth = config if isinstance(config, GroundTruth) else ground_truth(config)
    with ActivationFileWriter(out, truth.d_in, concept_names=truth.concept_names) as writer:
        for batch in stream(truth, n_tokens, 8192, start):
            writer.write(batch.acts, batch.concepts)
    sidecar = truth_path(out)
    tensors = truth_tensors(truth)
    metadata = {**truth_metadata(truth), "start_token": str(start), "n_tokens": str(n_tokens)}
    write_file_atomic(sidecar, lambda temporary: save_file(tensors, temporary, metadata))
    return out, sidecar


def load_truth(sidecar: str | Path) -> GroundTruth:
    """The world a sidecar records: SAE-Lens's model rebuilt from its config and saved weights (as
    ``SyntheticModel.load_from_disk`` does), and the extras."""
    from safetensors import safe_open

    with safe_open(str(sidecar), framework="pt") as handle:
        metadata = handle.metadata() or {}
        tensors = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118
    if metadata.get("format") != TRUTH_FORMAT:
        raise InputError(
            f"{sidecar}: a truth sidecar of an earlier version; write it again with saebench synth"
        )
    cfg = SyntheticModelConfig.from_dict(json.loads(metadata["synthetic_model_config"]))
    feature_dict = FeatureDictionary(
        cfg.num_features, cfg.hidden_dim, bias=cfg.bias, initializer=None
    )
    feature_dict.feature_vectors.data = tensors["dictionary"]
    feature_dict.bias.data = tensors["bias"]
    hierarchy_dict = json.loads(metadata["hierarchy"])
    correlation = (
        LowRankCorrelationMatrix(tensors["correlation_factor"], tensors["correlation_diag"])
        if "correlation_factor" in tensors
        else None
    )
    model = SyntheticModel(
        cfg,
        feature_dict=feature_dict,
        hierarchy=Hierarchy.from_dict(hierarchy_dict) if hierarchy_dict else None,
        correlation_matrix=correlation,
    )
    model.activation_generator.firing_probabilities = tensors["firing_probability"]
    flags = json.loads(metadata["config"])
    return GroundTruth(
        model,
        PlantedExtras(**json.loads(metadata["extras"])),
        json.loads(metadata["composites"]),
        tensors["context_directions"],
        SyntheticConfig(**flags) if flags else None,
    )


def ground_truth_of(source) -> GroundTruth | None:
    """The planted truth behind an activation source: a synthetic stream's own, or the sidecar beside an
    activation file (None for anything else, or a sidecar of an earlier version)."""
    inner = source
    while "source" in vars(inner):  # wrappers (counting, truncation) keep the source they wrap here
        inner = vars(inner)["source"]
    if isinstance(inner, SyntheticActivations):
        return inner.truth
    path = getattr(inner, "path", None)
    if path is None or not truth_path(path).is_file():
        return None
    sidecar = truth_path(path)
    stat = sidecar.stat()
    try:  # read once per sidecar version, not once per eval × mode
        return _load_truth_once(str(sidecar.resolve()), stat.st_mtime_ns, stat.st_size)
    except InputError:
        return None


@functools.lru_cache(maxsize=4)
def _load_truth_once(sidecar: str, mtime_ns: int, size: int) -> GroundTruth:
    """:func:`load_truth`, cached by the sidecar's path and version (modification time, size)."""
    return load_truth(sidecar)
