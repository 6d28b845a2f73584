"""What a synthetic world's planted structure lets a concept-averaged metric reach: each concept's role in the
truth (read from its name, ``synthetic.generator``'s ``parent_of_…``, ``child_of_…``, ``composite_…``) and the
absorption ceiling of each parent — the share of its tokens on which one of its children fires, the only
tokens where a child latent can take the parent's place. Pure numpy/torch on label batches."""

from __future__ import annotations

import re
from collections.abc import Iterable

import torch

PARENT = re.compile(r"^feature_(\d+)_.*?parent_of_((?:\d+_?)+)")


def concept_role(name: str) -> str:
    """'parent', 'child', 'composite' (a feature split by sub-contexts), 'context' (a composite's
    sub-context label) or 'plain'."""
    if "parent_of_" in name:
        return "parent"
    if "child_of_" in name:
        return "child"
    if "_context_" in name:
        return "context"
    if "composite_" in name:
        return "composite"
    return "plain"


def planted_roles(role: str) -> tuple[bool, bool]:
    """(carries planted absorption, carries planted splitting): a parent can be absorbed by its children
    and split into them; a composite is split by its two sub-contexts."""
    return role == "parent", role in ("parent", "composite")


def _children(name: str) -> list[int]:
    match = PARENT.match(name)
    return [] if match is None else [int(i) for i in match.group(2).strip("_").split("_")]


def absorption_ceilings(
    names: list[str], label_batches: Iterable[torch.Tensor]
) -> dict[str, float]:
    """Per concept (by name), the largest share of its tokens absorption can take under the planted truth:
    for a parent, the share of its tokens where some child fires; 0 for every other concept (nothing
    planted can absorb it). ``label_batches``: the concept labels [B, n_concepts] (bool), columns in
    ``names`` order, streamed. A parent that never fires is left out (no share to bound)."""
    parents = {i: _children(name) for i, name in enumerate(names) if concept_role(name) == "parent"}
    fires = dict.fromkeys(parents, 0)
    with_child = dict.fromkeys(parents, 0)
    for labels in label_batches:
        for i, children in parents.items():
            on = labels[:, i].bool()
            fires[i] += int(on.sum())
            if children:
                with_child[i] += int((on & labels[:, children].bool().any(dim=1)).sum())
    out = {name: 0.0 for name in names}
    for i in parents:
        if fires[i]:
            out[names[i]] = with_child[i] / fires[i]
        else:
            del out[names[i]]
    return out
