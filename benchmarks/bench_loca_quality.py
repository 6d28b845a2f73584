"""LocA-SAE against the TopK SAE it starts from, on the ground-truth benchmark (the embedded default).

The default TopK SAE (d_sae 512, k 4, trained on 240k synthetic tokens) is turned into LocA-SAEs and
fine-tuned on the same 60k training tokens (epochs, shuffled) for --tokens tokens. Control: the same
fine-tuning with G = 1 (one group, budget k: exactly a TopK SAE), so the extra training itself is not
credited to the grouping. Every SAE is evaluated on the 20k held-out tokens by amortization_gap's code
(NMSE, L0, dead, dense, ΔF1, absorption); the table prints one row per SAE.

    .venv/bin/python benchmarks/bench_loca_quality.py [--tokens 240000] [--lr 1e-3] [--aux-loss-coefficient 1]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
from sae_lens import SAE

import sae_bench_amortization  # noqa: F401 - registers the architectures
from sae_bench_amortization.activations.sources import FileActivations
from sae_bench_amortization.adapters import LocASAE
from sae_bench_amortization.evals.amortization_gap.eval_config import AmortizationGapEvalConfig
from sae_bench_amortization.evals.amortization_gap.main import compare_modes
from sae_bench_amortization.loca.training import LocATrainingConfig, train_loca
from sae_bench_amortization.modes import InferenceSettings, parse_modes
from sae_bench_amortization.synthetic import default
from sae_bench_amortization.synthetic.generator import (
    SyntheticActivations,
    SyntheticConfig,
    ground_truth,
)
from sae_bench_amortization.synthetic.training import train_sae

PAPER_K = (6, 5, 4, 3, 3, 2, 2, 1)


def configs(k: int) -> dict[str, tuple[int, tuple[int, ...]]]:
    """name → (groups, requested budgets; scaled to the global k with --budget-scaling match_k)."""
    return {
        f"TopK k{k} fine-tuned (G=1 control)": (1, (k,)),
        "LocA G=2 (3,1)": (2, (3, 1)),
        "LocA G=4 (1,1,1,1)": (4, (1, 1, 1, 1)),
        "LocA G=8 paper budgets": (8, PAPER_K),
    }


def evaluate(sae, source) -> dict:
    config = AmortizationGapEvalConfig(modes=["amortized"])
    (row,) = compare_modes(
        sae, source, parse_modes(["amortized"]), 0.0, InferenceSettings(), config=config
    )
    return row


def number(value: float | None, width: int, decimals: int) -> str:
    """``value`` right-aligned, or ``-`` when it is null (not measurable)."""
    return f"{'-':>{width}s}" if value is None else f"{value:{width}.{decimals}f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=240_000)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--aux-loss-coefficient", type=float, default=1.0)
    parser.add_argument(
        "--base-k", type=int, default=default.K, help="k of the TopK SAE LocA starts from"
    )
    parser.add_argument("--group-order", choices=["avar_desc", "avar_asc"], default="avar_desc")
    parser.add_argument("--budget-scaling", choices=["none", "match_k"], default="none")
    args = parser.parse_args()
    torch.manual_seed(0)
    bench = default.default_benchmark()
    eval_source = FileActivations(str(bench.activations)).source
    train_source = SyntheticActivations(ground_truth(SyntheticConfig()), default.N_TRAIN_TOKENS)
    with tempfile.TemporaryDirectory() as work:
        if args.base_k == default.K:
            base_path, base_name = bench.sae_path, f"TopK k{default.K} (the default SAE)"
        else:  # the default's recipe with another k
            steps = default.N_EPOCHS * default.N_TRAIN_TOKENS
            trained = train_sae(train_source, "topk", default.D_SAE, steps, k=args.base_k, seed=0)
            base_path, base_name = Path(work) / "base", f"TopK k{args.base_k} (default recipe)"
            trained.save_inference_model(base_path)
        base = SAE.load_from_disk(str(base_path))
        rows = {base_name: evaluate(base, eval_source)}
        budgets, seconds = {base_name: f"k={args.base_k}"}, {}
        for name, (groups, group_k) in configs(args.base_k).items():
            loca = LocASAE.from_sae(
                base,
                train_source,
                n_groups=groups,
                group_k=group_k,
                group_order=args.group_order,
                budget_scaling=args.budget_scaling,
            )
            config = LocATrainingConfig(
                n_tokens=args.tokens,
                lr=args.lr,
                batch_size=1024,
                dead_after_tokens=20_000,
                aux_loss_coefficient=args.aux_loss_coefficient,
                checkpoint_every=args.tokens,
            )
            start = time.perf_counter()
            tuned = train_loca(loca, train_source, Path(work) / f"g{groups}", config)
            seconds[name] = time.perf_counter() - start
            rows[name] = evaluate(tuned.eval(), eval_source)
            budgets[name] = ",".join(map(str, tuned.cfg.group_k))
    print(
        f"ground-truth benchmark ({default.VERSION}), 20k held-out tokens; fine-tuning {args.tokens} tokens, "
        f"lr {args.lr}, aux loss {args.aux_loss_coefficient} (dead after 20k tokens)"
    )
    header = f"{'SAE':38s}{'budgets':>18s}{'NMSE':>8s}{'L0':>7s}{'dead':>7s}{'dense':>7s}{'ΔF1':>8s}{'absorb':>8s}{'train s':>9s}"
    print(header)
    for name, row in rows.items():
        print(
            f"{name:38s}{budgets[name]:>18s}{row['nmse']:8.4f}{row['l0']:7.2f}{row['dead_rate']:7.3f}"
            f"{row['dense_rate']:7.3f}{number(row['delta_f1'], 8, 4)}{number(row['absorption_rate'], 8, 3)}"
            f"{seconds.get(name, 0.0):9.1f}"
        )


if __name__ == "__main__":
    main()
