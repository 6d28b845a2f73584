"""LocA-SAE encode against SAE-Lens TopK encode at the same d_in and d_sae, side by side in one run.

LocA (G = 8, budgets 6,5,4,3,3,2,2,1, Σ = 26; groups as angular variance makes them: latents of a group
scattered over the index range) against an SAE-Lens ``TopKSAE`` with k = 26. Also a per-group Python loop
(one matmul + top-k per group), to show why the fused form is used. Times: best of --repeats, in one process.

    .venv/bin/python benchmarks/bench_loca.py [--d-in 768] [--d-sae 16384] [--tokens 4096] [--device cuda]
"""

from __future__ import annotations

import argparse

import torch
from sae_lens.saes.topk_sae import TopKSAE, TopKSAEConfig
from timing import best_of

from sae_bench_amortization.adapters.loca import LocASAE, LocASAEConfig

GROUP_K = [6, 5, 4, 3, 3, 2, 2, 1]


def loop_encode(loca: LocASAE, x: torch.Tensor) -> torch.Tensor:
    """The unfused reference: one encoder matmul and one top-k per group."""
    codes = x.new_zeros(x.shape[0], loca.cfg.d_sae)
    sae_in = loca.process_sae_in(x)
    for g, k in enumerate(loca.cfg.group_k):
        members = loca.group_members(g).to(x.device)
        W, b = loca.group_encoder(g)
        values, positions = (sae_in @ W + b).relu().topk(k, dim=-1)
        codes.scatter_(1, members[positions], values)
    return codes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--d-in", type=int, default=768)
    parser.add_argument("--d-sae", type=int, default=16384)
    parser.add_argument("--tokens", type=int, default=4096)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    torch.manual_seed(0)
    device = torch.device(args.device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    topk = TopKSAE(TopKSAEConfig(d_in=args.d_in, d_sae=args.d_sae, k=sum(GROUP_K))).to(device)
    groups = torch.randperm(args.d_sae) % len(GROUP_K)  # scattered groups, as AVar sorting gives
    loca = LocASAE(
        LocASAEConfig(
            d_in=args.d_in, d_sae=args.d_sae, latent_groups=groups.tolist(), group_k=GROUP_K
        )
    ).to(device)
    with torch.no_grad():
        for sae in (topk, loca):
            sae.W_enc.normal_(0, args.d_in**-0.5)
        loca.W_dec.copy_(topk.W_dec)
    x = torch.randn(args.tokens, args.d_in, device=device)

    with torch.no_grad():
        assert torch.equal(loop_encode(loca, x) > 0, loca.encode(x) > 0)
        times = {
            "SAE-Lens TopK encode": best_of(lambda: topk.encode(x), args.repeats, False, sync),
            "LocA encode (fused)": best_of(lambda: loca.encode(x), args.repeats, False, sync),
            "LocA encode (loop over groups)": best_of(
                lambda: loop_encode(loca, x), args.repeats, False, sync
            ),
        }
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.device}; d_in {args.d_in}, "
        f"d_sae {args.d_sae}, {args.tokens} tokens, G {len(GROUP_K)}, Σk {sum(GROUP_K)}"
    )
    reference = times["SAE-Lens TopK encode"]
    for name, seconds in times.items():
        print(f"{name:32s} {seconds * 1e3:9.2f} ms   x{seconds / reference:.2f} of TopK")


if __name__ == "__main__":
    main()
