"""``LocASAE``: latents in G groups, each group with its own encoder and TopK budget; one shared decoder.

Encode: pre = process(x) @ W_enc + b_enc; per group g: ReLU, keep its k_g largest; codes in the original
latent order. Group g's encoder is ``W_enc[:, latent_groups == g]`` and ``b_enc[latent_groups == g]`` —
all groups run as one fused matmul plus one batched top-k over a [B, G, max group size] view (a Python
loop over groups is slower). It is an SAE-Lens ``SAE`` (architecture ``"loca"``): ``save_model`` /
``SAE.load_from_disk``, HookedSAETransformer and SAEBench take it like any other.

``LocASAE.from_sae(sae, activations)`` builds one from a pretrained SAE (angular-variance grouping,
encoders initialised from the global encoder, decoder kept); ``sae_bench_amortization.loca.training``
fine-tunes it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from sae_lens import SAE
from sae_lens.saes.sae import SAEConfig
from torch import nn

from sae_bench_amortization.adapters._base import inherited_cfg_fields
from sae_bench_amortization.adapters.loca_grouping import (
    BUDGET_SCALINGS,
    BudgetScaling,
    GroupOrder,
    angular_variance_and_l0,
    global_encoder,
    group_by_angular_variance,
    scale_budgets,
)
from sae_bench_amortization.digest import tensors_digest

PAPER_GROUP_K = (6, 5, 4, 3, 3, 2, 2, 1)


@dataclass
class LocASAEConfig(SAEConfig):
    """SAE-Lens config plus the grouping: ``latent_groups`` [d_sae] (group of each latent), ``group_k`` [G]."""

    latent_groups: list[int] = field(default_factory=list)  # empty: contiguous equal groups
    group_k: list[int] = field(default_factory=lambda: list(PAPER_GROUP_K))
    grouping: dict[str, Any] = field(default_factory=dict)  # how the groups were made (report)
    # the SAE it was built from: weights_sha256 (digest.tensors_digest of its float32 state dict), d_sae,
    # d_in, architecture, and where it came from (path, or release + sae_id) when known; None: unknown
    base_sae: dict[str, Any] | None = None

    @classmethod
    def architecture(cls) -> str:
        return "loca"

    def __post_init__(self) -> None:
        super().__post_init__()
        n_groups = len(self.group_k)
        if n_groups == 0 or any(int(k) < 1 for k in self.group_k):
            raise ValueError(f"group_k must be positive integers, got {self.group_k}")
        self.group_k = [int(k) for k in self.group_k]
        if not self.latent_groups:
            self.latent_groups = _contiguous_groups(self.d_sae, n_groups)
        if len(self.latent_groups) != self.d_sae:
            raise ValueError(
                f"latent_groups has {len(self.latent_groups)} entries for d_sae={self.d_sae}"
            )
        if not all(isinstance(g, int) and 0 <= g < n_groups for g in self.latent_groups):
            raise ValueError(f"latent_groups must be group indices in [0, {n_groups})")
        sizes = torch.bincount(torch.tensor(self.latent_groups), minlength=n_groups)
        for g, (size, k) in enumerate(zip(sizes.tolist(), self.group_k, strict=True)):
            if k > size:
                raise ValueError(f"group {g} has {size} latents but a budget of {k}")


def _contiguous_groups(d_sae: int, n_groups: int) -> list[int]:
    groups = torch.empty(d_sae, dtype=torch.int64)
    for g, members in enumerate(torch.tensor_split(torch.arange(d_sae), n_groups)):
        groups[members] = g
    return groups.tolist()


class GroupTopK(nn.Module):
    """pre-activations [..., d_sae] → codes [..., d_sae]: per group ReLU then its k_g largest, rest zero."""

    slots: torch.Tensor  # [G, width] latent per slot (d_sae: padding), a buffer
    keep: torch.Tensor  # [G, k_max] whether rank r of group g is kept, a buffer

    def __init__(self, latent_groups: Sequence[int], group_k: Sequence[int]):
        super().__init__()
        groups = torch.as_tensor(list(latent_groups), dtype=torch.int64)
        d_sae, n_groups = groups.shape[0], len(group_k)
        sizes = torch.bincount(groups, minlength=n_groups)
        width = int(sizes.max())
        order = torch.sort(groups, stable=True).indices
        slots = torch.full((n_groups, width), d_sae, dtype=torch.int64)  # d_sae: padding slot
        start = 0
        for g, size in enumerate(sizes.tolist()):
            slots[g, :size] = order[start : start + size]
            start += size
        self.d_sae, self.n_groups, self.width = d_sae, n_groups, width
        self.k_max = int(max(group_k))
        self.padded = bool((sizes < width).any())
        self.contiguous = not self.padded and torch.equal(slots.flatten(), torch.arange(d_sae))
        self.register_buffer("slots", slots, persistent=False)  # [G, width] latent per slot
        ranks = torch.arange(self.k_max)
        keep = ranks.unsqueeze(0) < torch.as_tensor(list(group_k)).unsqueeze(1)
        self.register_buffer("keep", keep, persistent=False)  # [G, k_max]

    def _to(self, device: torch.device) -> None:
        if self.slots.device != device:
            self.to(device)

    def forward(self, hidden_pre: torch.Tensor) -> torch.Tensor:
        """hidden_pre [..., d_sae] in latent order → codes [..., d_sae]."""
        self._to(hidden_pre.device)
        flat = hidden_pre.reshape(-1, self.d_sae)
        if self.padded:
            flat = torch.cat([flat, flat.new_full((flat.shape[0], 1), -torch.inf)], dim=1)
        grouped = flat if self.contiguous else flat[:, self.slots.flatten()]
        return self.select(grouped).reshape(hidden_pre.shape)

    def select(self, grouped: torch.Tensor) -> torch.Tensor:
        """grouped pre-activations [N, G·width] (slot order) → codes [N, d_sae] in latent order."""
        self._to(grouped.device)
        grouped = grouped.view(-1, self.n_groups, self.width)
        values, positions = grouped.topk(self.k_max, dim=-1, sorted=True)  # [N, G, k_max]
        values = torch.where(self.keep, values.relu(), 0.0)
        latents = self.slots.unsqueeze(0).expand(values.shape[0], -1, -1).gather(2, positions)
        codes = grouped.new_zeros(grouped.shape[0], self.d_sae + int(self.padded))
        codes.scatter_(1, latents.flatten(1), values.flatten(1))
        return codes[:, : self.d_sae]


class LocASAE(SAE[LocASAEConfig]):
    """Group encoders with per-group TopK budgets over one shared decoder (see module docstring)."""

    b_enc: nn.Parameter

    def initialize_weights(self) -> None:
        super().initialize_weights()
        self.b_enc = nn.Parameter(torch.zeros(self.cfg.d_sae, dtype=self.dtype, device=self.device))

    def get_activation_fn(self) -> GroupTopK:
        device = (
            "cpu" if str(self.cfg.device) == "meta" else self.cfg.device
        )  # SAE-Lens loads on meta first
        return GroupTopK(self.cfg.latent_groups, self.cfg.group_k).to(device)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """x [..., d_in] → codes [..., d_sae]; group g has at most k_g actives.

        One matmul against the encoder columns laid out group by group, one top-k over [N, G, max group
        size], one scatter back to latent order. With a hook on
        ``hook_sae_acts_pre`` the pre-activations are formed in latent order first, so the hook sees them.
        """
        if self.hook_sae_acts_pre._forward_hooks:
            return self.encode_with_hidden_pre(x)[0]
        sae_in = self.process_sae_in(x)
        W, b = self._grouped_encoder()
        grouped = sae_in.reshape(-1, sae_in.shape[-1]) @ W + b
        codes = self.activation_fn.select(grouped)
        return self.hook_sae_acts_post(codes.reshape(*sae_in.shape[:-1], self.cfg.d_sae))

    def _grouped_encoder(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(W [d_in, G·width], b [G·width]): encoder columns in slot order, padding slots 0 and −inf.

        Built on every call (one copy of W_enc, ~1/N of the matmul's cost): never stale, whatever edited
        the weights (optimizer steps, ``.data`` writes, SAE-Lens's ``fold_*`` methods)."""
        act = self.activation_fn
        act._to(self.W_enc.device)
        W, b = self.W_enc, self.b_enc
        if act.padded:
            W = torch.cat([W, W.new_zeros(W.shape[0], 1)], dim=1)
            b = torch.cat([b, b.new_full((1,), -torch.inf)])
        if not act.contiguous:
            slots = act.slots.flatten()
            W, b = W.index_select(1, slots), b.index_select(0, slots)
        return W, b

    def encode_with_hidden_pre(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        sae_in = self.process_sae_in(x)
        hidden_pre = self.hook_sae_acts_pre(sae_in @ self.W_enc + self.b_enc)
        return self.hook_sae_acts_post(self.activation_fn(hidden_pre)), hidden_pre

    def decode(self, feature_acts: torch.Tensor) -> torch.Tensor:
        """codes [..., d_sae] → reconstruction [..., d_in] (the shared decoder)."""
        sae_out = self.hook_sae_recons(feature_acts @ self.W_dec + self.b_dec)
        sae_out = self.run_time_activation_norm_fn_out(sae_out)
        return self.reshape_fn_out(sae_out, self.d_head)

    # ------------------------------------------------------------------------------ groups

    @property
    def n_groups(self) -> int:
        return len(self.cfg.group_k)

    def group_members(self, group: int) -> torch.Tensor:
        """Latent indices of ``group`` (ascending) [|g|]."""
        return (
            self.activation_fn.slots[group][self.activation_fn.slots[group] < self.cfg.d_sae]
            .sort()
            .values
        )

    def group_encoder(self, group: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(W_enc^(g) [d_in, |g|], b_enc^(g) [|g|]) of ``group``, columns in ``group_members`` order."""
        members = self.group_members(group).to(self.W_enc.device)
        return self.W_enc[:, members], self.b_enc[members]

    # ------------------------------------------------------------------------------ construction

    @classmethod
    def from_sae(
        cls,
        sae: SAE,
        activations: Any,
        *,
        n_groups: int = 8,
        group_k: Sequence[int] = PAPER_GROUP_K,
        batch_size: int = 4096,
        n_tokens: int | None = None,
        group_order: GroupOrder = "avar_desc",
        budget_scaling: BudgetScaling = "none",
        base_sae: dict[str, Any] | None = None,
    ) -> LocASAE:
        """A LocA-SAE from a pretrained SAE (standard, topk, jumprelu/BatchTopK, gated).

        Latents sorted by angular variance on ``activations`` (tensor [N, d_in], activation-file path or
        any activation source) and cut into ``n_groups`` equal groups: ``group_order`` "avar_desc" (the
        paper's: group 0 = highest AVar, never-firing latents included with AVar 1) or "avar_asc"
        (group 0 = most monosemantic, never-firing last); ``group_k`` lists budgets from group 0 on.
        Group encoders start as the global encoder's columns (a gated SAE's gate path), the decoder and
        b_dec are kept. ``budget_scaling`` "none" (the paper's: budgets as given, e.g. Σ 26 beside a
        global k of 20) or "match_k" (scaled to the global SAE's k — ``cfg.k`` for TopK, else its mean
        L0 on the activations, rounded — keeping their proportions, :func:`scale_budgets`).
        ``cfg.grouping`` records what was done; ``cfg.base_sae`` the SAE it starts from (``base_sae``, else
        :func:`base_sae_identity` of ``sae`` when its weights are float32, else None).
        """
        if len(group_k) != n_groups:
            raise ValueError(f"group_k has {len(group_k)} budgets for n_groups={n_groups}")
        if budget_scaling not in BUDGET_SCALINGS:
            raise ValueError(
                f"budget scaling must be one of {', '.join(BUDGET_SCALINGS)}, got {budget_scaling!r}"
            )
        avar, mean_l0 = angular_variance_and_l0(sae, activations, batch_size, n_tokens)
        groups = group_by_angular_variance(avar, n_groups, group_order)
        global_k = getattr(sae.cfg, "k", None) or max(1, round(mean_l0))
        rescale = budget_scaling == "match_k" and global_k != sum(group_k)
        budgets = scale_budgets(group_k, global_k) if rescale else list(group_k)
        sizes = torch.bincount(groups, minlength=n_groups)
        budgets = [min(k, int(s)) for k, s in zip(budgets, sizes, strict=True)]
        W_enc, b_enc, W_dec = global_encoder(sae)
        never = torch.isnan(avar)
        group_avar = [  # None for a group of never-firing latents only (JSON has no NaN)
            float(avar[(groups == g) & ~never].mean()) if ((groups == g) & ~never).any() else None
            for g in range(n_groups)
        ]
        cfg = LocASAEConfig(
            **inherited_cfg_fields(sae),
            latent_groups=groups.tolist(),
            group_k=budgets,
            grouping={
                "method": "angular_variance",
                "group_order": group_order,
                "budget_scaling": budget_scaling,
                "base_architecture": sae.cfg.architecture(),
                "global_k": int(global_k),
                "global_k_source": "cfg.k" if getattr(sae.cfg, "k", None) else "mean L0",
                "requested_group_k": [int(k) for k in group_k],
                "budgets_scaled": budgets != [int(k) for k in group_k],
                "n_never_fired": int(never.sum()),
                "group_mean_angular_variance": group_avar,
            },
            base_sae=dict(base_sae) if base_sae is not None else base_sae_identity(sae),
        )
        loca = cls(cfg)
        with torch.no_grad():
            loca.W_enc.copy_(W_enc)
            loca.b_enc.copy_(b_enc)
            loca.W_dec.copy_(W_dec)
            loca.b_dec.copy_(sae.b_dec)
        return loca


def base_sae_identity(sae: SAE, **origin: Any) -> dict[str, Any] | None:
    """What names a LocA-SAE's base SAE: ``weights_sha256`` (:func:`~sae_bench_amortization.digest.tensors_digest`
    of its state dict: the same bytes on any device), d_sae, d_in, architecture, plus ``origin`` (``path``,
    or ``release`` and ``sae_id``). None when its weights are not float32: the digest names the SAE as
    loaded in float32 (``spec.load(device, "float32")``), which another dtype's weights are not."""
    state = sae.state_dict()
    if any(t.is_floating_point() and t.dtype != torch.float32 for t in state.values()):
        return None
    return {
        "weights_sha256": tensors_digest(state),
        "d_sae": int(sae.cfg.d_sae),
        "d_in": int(sae.cfg.d_in),
        "architecture": sae.cfg.architecture(),
        **{key: str(value) for key, value in origin.items() if value is not None},
    }
