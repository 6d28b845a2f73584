"""What `nmse_refit` costs: refitting each token's codes on their own support by NNLS, against the encoder
GEMM x·Dᵀ of the same chunk, side by side in one run (best of 3).

Problem: unit decoder rows D [d_sae, d_in], Gaussian tokens, codes = the top-k of x·Dᵀ (ReLU); plus a
ragged case where supports range from 1 to 4k latents (semi:T codes look like that).

    .venv/bin/python benchmarks/bench_refit.py [--d-sae 16384] [--d-in 768] [--k 32] [--tokens 4096]
"""

from __future__ import annotations

import argparse

from timing import best_of


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--d-sae", type=int, default=16384)
    parser.add_argument("--d-in", type=int, default=768)
    parser.add_argument("--k", type=int, default=32)
    parser.add_argument("--tokens", type=int, default=4096)
    args = parser.parse_args()

    import torch

    from sae_bench_amortization.metrics.refit import refit_on_support

    torch.manual_seed(0)
    D = torch.nn.functional.normalize(torch.randn(args.d_sae, args.d_in), dim=1)
    x = torch.randn(args.tokens, args.d_in)
    values, index = (x @ D.T).topk(args.k, dim=1)
    topk = torch.zeros(args.tokens, args.d_sae).scatter_(1, index, values.relu())
    sizes = torch.randint(1, 4 * args.k + 1, (args.tokens, 1))
    ranks = torch.arange(4 * args.k)[None, :]
    wide_values, wide_index = (x @ D.T).topk(4 * args.k, dim=1)
    ragged = torch.zeros_like(topk).scatter_(1, wide_index, wide_values.relu() * (ranks < sizes))
    encode = best_of(lambda: x @ D.T, warmup=False)
    print(
        f"d_sae {args.d_sae}, d_in {args.d_in}, {args.tokens} tokens; encoder GEMM {encode:.3f} s"
    )
    for name, codes in (
        (f"top-{args.k} codes", topk),
        (f"ragged supports 1..{4 * args.k}", ragged),
    ):
        seconds = best_of(lambda codes=codes: refit_on_support(D, x, codes), warmup=False)
        print(f"refit, {name:24s} {seconds:7.3f} s   x{seconds / encode:.2f} of the encoder GEMM")


if __name__ == "__main__":
    main()
