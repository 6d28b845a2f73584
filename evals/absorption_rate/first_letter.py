"""SAEBench's first-letter absorption (its k-sparse probing and feature-absorption experiments) on a
TransformerLens model, reported under the ``absorption_rate`` eval's keys.

SAEBench trains a logistic-regression probe for "first letter of the word" on ICL spelling prompts
("{word} has the first letter:") at ``blocks.L.hook_resid_post``, finds each letter's main latents with
k-sparse probes (its F1-jump rule) and measures per word how much of the probe's projection other aligned
latents carry when the main ones miss. Mapping: ``absorption_rate`` ← its ``mean_absorption_fraction``,
``full_absorption_rate`` ← its ``full_absorption_rate``, ``n_tokens`` ← its probe true positives,
``main_latents`` ← its ``split_feats``, ``absorbing_latents`` ← the top-projection latents of its
full-absorption words.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import random
import re
import sys
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, TypedDict
from unittest import mock

import numpy as np
import torch

from sae_bench_amortization.errors import InputError
from sae_bench_amortization.evals.absorption_rate.probe_cache import cached_probe, install_probe

if TYPE_CHECKING:
    from sae_lens import SAE
    from transformer_lens import HookedTransformer

SAEBENCH_DEFINITION = (
    "saebench_first_letter: SAEBench's absorption eval machinery (first-letter probe on ICL spelling prompts "
    "at blocks.L.hook_resid_post); absorption_rate = its mean_absorption_fraction, full_absorption_rate = "
    "its full_absorption_rate, over letters whose probe F1 exceeds first_letter_min_probe_f1"
)
DEFINITIONS = ("auto", "concepts", "saebench_first_letter")
_RESID_POST = re.compile(r"^blocks\.(\d+)\.hook_resid_post$")


def resid_post_layer(source) -> int | None:
    """The block L when ``source`` reads a TransformerLens model at ``blocks.L.hook_resid_post``, else None."""
    model, hook = getattr(source, "model", None), getattr(source, "hook_name", None)
    if model is None or not hasattr(model, "run_with_cache") or hook is None:
        return None
    match = _RESID_POST.match(hook)
    return int(match.group(1)) if match else None


def use_saebench_first_letter(source, definition: str) -> bool:
    """auto: SAEBench's machinery on a TransformerLens resid_post source, concept labels otherwise."""
    if definition not in DEFINITIONS:
        raise InputError(
            f"unknown absorption definition '{definition}'; choose one of {', '.join(DEFINITIONS)}"
        )
    layer = resid_post_layer(source)
    if definition == "saebench_first_letter" and layer is None:
        raise InputError(
            "--absorption-definition saebench_first_letter needs a TransformerLens model read at "
            f"blocks.L.hook_resid_post (SAEBench's probes live there); {source.describe()} is not"
        )
    return definition == "saebench_first_letter" or (definition == "auto" and layer is not None)


@contextlib.contextmanager
def _progress_only_on_a_terminal():
    """SAEBench's progress bars always draw (some with disable=False); when stderr is not a terminal its
    stderr goes to /dev/null while it runs, as this package's bars stay off there. Errors still raise."""
    if sys.stderr.isatty():
        yield
        return
    with open(os.devnull, "w") as sink, contextlib.redirect_stderr(sink):
        yield


def _forward_only_to(model: HookedTransformer, layer: int):
    """SAEBench reads only ``blocks.{layer}.hook_resid_post`` from ``model.run_with_cache``, but runs the
    whole model and its unembedding; while this context is open, that call stops after block ``layer``
    (the same activations: nothing before the hook changes). Pythia-70M layer 3, 2 CPU cores: the eval
    takes 66 s instead of 114 s."""
    full = model.run_with_cache

    def up_to_layer(*args, **kwargs):
        kwargs.setdefault("stop_at_layer", layer + 1)
        return full(*args, **kwargs)

    return mock.patch.object(model, "run_with_cache", up_to_layer)


def _seed(seed: int) -> None:
    """SAEBench draws from ``random`` (its ICL examples), numpy and torch."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def precalc_fits(n_words: int, sae) -> bool:
    """Whether SAEBench may encode its k-sparse probes' training words once (``n_words × d_sae``
    codes kept) instead of once per probe (26 letters × ``max_k_value`` encodes of every word).

    SAEBench recommends the precalculation for small SAEs; here it is used when those codes take no more
    memory than the SAE's own encoder and decoder weights (``2 · d_in · d_sae``), so memory stays of the
    order of the SAE whatever its width. The probes are the same either way.
    """
    return n_words <= 2 * sae.cfg.d_in


def saebench_absorption_config(config, model_name: str, *, precalc_sae_acts: bool = False):
    """SAEBench's AbsorptionEvalConfig with this eval's seed and thresholds."""
    from sae_bench.evals.absorption.eval_config import AbsorptionEvalConfig

    return AbsorptionEvalConfig(
        model_name=model_name,
        random_seed=config.seed,
        f1_jump_threshold=config.f1_jump_threshold,
        min_GT_probe_f1=config.first_letter_min_probe_f1,
        min_feats_for_eval=config.first_letter_min_letters,
        precalc_k_sparse_probe_sae_acts=precalc_sae_acts,
    )


class _Experiment(TypedDict):
    """The arguments SAEBench's two absorption experiments share."""

    model: HookedTransformer
    sae: SAE
    layer: int
    sae_name: str
    force: bool
    max_k_value: int
    prompt_template: str
    prompt_token_pos: int
    device: str
    probes_dir: Path


def first_letter_rows(
    sae, source, config, work_dir: Path, run_name: str
) -> tuple[list[dict], dict[str, object]]:
    """Run SAEBench's two absorption experiments on ``sae`` at the source's model and layer; one row per
    letter whose ground-truth probe F1 passes ``first_letter_min_probe_f1``, and the eval_config fields
    naming the definition and SAEBench's config.

    ``work_dir`` holds SAEBench's intermediate files; its ground-truth probe comes from the package cache
    (:mod:`.probe_cache`: trained once per model, layer and settings).
    """
    from sae_bench.evals.absorption.common import get_alpha_tokens  # the words its probes train on
    from sae_bench.evals.absorption.feature_absorption import run_feature_absortion_experiment
    from sae_bench.evals.absorption.k_sparse_probing import run_k_sparse_probing_experiment
    from sae_bench.evals.absorption.main import _aggregate_results_df

    model, layer = source.model, resid_post_layer(source)
    n_words = len(get_alpha_tokens(model.tokenizer))  # SAEBench's probes train on a part of them
    sb = saebench_absorption_config(
        config, model.cfg.model_name, precalc_sae_acts=precalc_fits(n_words, sae)
    )
    device = str(sae.W_dec.device)
    sae_name = re.sub(r"[^A-Za-z0-9_.-]+", "_", run_name)
    experiments = work_dir / "experiments"
    if layer is None:  # use_saebench_first_letter checked it
        raise InputError(f"{source.describe()} is not read at blocks.L.hook_resid_post")
    if not (work_dir / "probes" / model.cfg.model_name / f"layer_{layer}" / "probe.pth").is_file():
        with (
            _progress_only_on_a_terminal(),
            _forward_only_to(model, layer),
            torch.inference_mode(False),
            torch.enable_grad(),
        ):
            _seed(sb.random_seed)
            cached, _ = cached_probe(model, layer, sb, device)
        install_probe(cached, work_dir / "probes", model.cfg.model_name, layer)
    _seed(
        sb.random_seed
    )  # the same numbers whether the probe was trained now or read from the cache
    common = _Experiment(
        model=model,
        sae=sae,
        layer=layer,
        sae_name=sae_name,
        force=True,  # per-SAE results are never reused: the SAE may have changed under its name
        max_k_value=sb.max_k_value,
        prompt_template=sb.prompt_template,
        prompt_token_pos=sb.prompt_token_pos,
        device=device,
        probes_dir=work_dir / "probes",
    )
    with (
        _progress_only_on_a_terminal(),
        _forward_only_to(model, layer),
        torch.inference_mode(False),
        torch.enable_grad(),
    ):
        probing = run_k_sparse_probing_experiment(
            **common,
            experiment_dir=experiments / "k_sparse_probing",
            f1_jump_threshold=sb.f1_jump_threshold,
            k_sparse_probe_l1_decay=sb.k_sparse_probe_l1_decay,
            k_sparse_probe_batch_size=sb.k_sparse_probe_batch_size,
            k_sparse_probe_num_epochs=sb.k_sparse_probe_num_epochs,
            eval_batch_size=sb.eval_k_sparse_probe_batch_size,
            precalc_k_sparse_probe_sae_acts=sb.precalc_k_sparse_probe_sae_acts,
            verbose=False,
        )
        probe_f1 = dict(zip(probing["letter"], probing["f1_probe"], strict=True))
        present = sorted(letter for letter, f1 in probe_f1.items() if f1 > sb.min_GT_probe_f1)
        if len(present) < sb.min_feats_for_eval:
            raise InputError(
                f"SAEBench first-letter absorption: only {len(present)} of 26 letters have a probe F1 above "
                f"{sb.min_GT_probe_f1} on {model.cfg.model_name} layer {layer} (needs "
                f"{sb.min_feats_for_eval}); use a larger model or --absorption-definition concepts"
            )
        per_word = run_feature_absortion_experiment(
            **common,
            experiment_dir=experiments / "feature_absorption",
            sparse_probing_experiment_dir=experiments / "k_sparse_probing",
            feature_split_f1_jump_threshold=sb.f1_jump_threshold,
            batch_size=sb.llm_batch_size,
        )
    per_letter = _aggregate_results_df(per_word).set_index("letter")
    rows = []
    for letter in present:
        if letter not in per_letter.index:
            continue
        agg = per_letter.loc[letter]
        words = per_word[(per_word["letter"] == letter) & per_word["is_full_absorption"]]
        absorbing = Counter(int(f) for f in words["top_projection_feat"])
        rows.append(
            {
                "concept": f"first_letter_{letter}",
                "absorption_rate": float(agg["mean_absorption_fraction"]),
                "full_absorption_rate": float(agg["full_absorption_rate"]),
                "n_tokens": int(agg["num_probe_true_positives"]),
                "main_latents": [int(f) for f in agg["split_feats"]],
                "absorbing_latents": [f for f, _ in absorbing.most_common()],
            }
        )
    how = {
        "definition": SAEBENCH_DEFINITION,
        "saebench_config": dataclasses.asdict(sb),
        # what was read: SAEBench's prompts, not the source's text tokens
        "n_tokens": None,
        "activation_source": f"SAEBench's ICL spelling prompts over the vocabulary of "
        f"{model.cfg.model_name}, read at blocks.{layer}.hook_resid_post",
    }
    return rows, how
