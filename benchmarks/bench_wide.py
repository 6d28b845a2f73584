"""Wide SAEs: every mode's cost per 1k tokens against the amortized encode, λ calibration against one cold
non-amortized solve, and peak memory against the weights — at Gemma-2-2B's d_in, side by side in one run.

Problem (the issue's): TopK SAE, d_in 2304, d_sae 16,384 / 65,536 / 131,072, random unit decoder rows,
encoder = 0.9 × decoder transpose, k 64; activations = sums of 32 decoder rows with magnitudes U[0.5, 1.5]
plus Gaussian noise 0.05; 1,024 tokens. Each width runs in a fresh process (peak memory is per process);
anonymous memory (RssAnon) is sampled every 20 ms. The encode and the GEMM are timed as the best of 3
runs, each mode as the best of ``--repeats`` runs (default 1: once).

    .venv/bin/python benchmarks/bench_wide.py [--widths 16384 65536 131072] [--tokens 1024] [--device cuda]
        [--objective l1 l1_decoder_norm k_sparse] [--repeats 1]

``--objective``: the problem the modes solve (README, "Which problem the modes solve"); k_sparse has no λ
(no calibration, no cold L1 solve) and k = the SAE's 64. The decoder rows here have unit norm, so
l1_decoder_norm solves the same problem as l1 (it measures the reparametrization's overhead).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import threading
import time


def rss_anon_mib() -> float:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) / 1024
    return float("nan")


class PeakSampler(threading.Thread):
    def __init__(self):
        super().__init__(daemon=True)
        self.peak, self.running = 0.0, True

    def run(self):
        while self.running:
            self.peak = max(self.peak, rss_anon_mib())
            time.sleep(0.02)


def one_width(
    d_sae: int,
    n_tokens: int,
    device: str,
    dtype: str = "float32",
    objective: str = "l1",
    repeats: int = 1,
) -> dict:
    """Everything for one width, in this process."""
    import torch
    from sae_lens.saes.topk_sae import TopKSAE, TopKSAEConfig
    from timing import best_of

    from sae_bench_amortization.inference.calibration import calibrate_l1_coefficient
    from sae_bench_amortization.inference.dictionary import sparse_coding_targets
    from sae_bench_amortization.inference.objectives import problem_of
    from sae_bench_amortization.inference.solver import mean_l0, solve
    from sae_bench_amortization.modes import InferenceSettings, mode_sae, parse_mode

    sampler = PeakSampler()
    sampler.start()
    torch.manual_seed(0)
    d_in = 2304
    sae = TopKSAE(TopKSAEConfig(d_in=d_in, d_sae=d_sae, k=64, device=device))
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        D = torch.nn.functional.normalize(torch.randn(d_sae, d_in, generator=generator), dim=1)
        sae.W_dec.copy_(D)
        sae.W_enc.copy_(0.9 * D.T)
        sae.b_enc.zero_()
        sae.b_dec.zero_()
        rows = torch.stack(
            [torch.randperm(d_sae, generator=generator)[:32] for _ in range(n_tokens)]
        )
        magnitudes = 0.5 + torch.rand(n_tokens, 32, generator=generator)
        x = torch.einsum("nk,nkd->nd", magnitudes, D[rows]) + 0.05 * torch.randn(
            n_tokens, d_in, generator=generator
        )
        sae = sae.to(dtype=getattr(torch, dtype))
        x = x.to(device=device, dtype=getattr(torch, dtype))
        del D, rows
        weights_mib = sum(p.numel() * p.element_size() for p in sae.parameters()) / 2**20
        sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)

        def timed(fn):
            sync()
            start = time.perf_counter()
            out = fn()
            sync()
            return time.perf_counter() - start, out

        sae.encode(x[:64])  # warm-up
        # the encode and the GEMM are short: the best of 3 runs each (a slow one would flatter the ratios)
        encode_s = best_of(lambda: sae.encode(x), repeats=3, warmup=False, sync=sync)
        codes = sae.encode(x)
        W = sae.W_enc
        gemm_s = best_of(
            lambda: x @ W, repeats=3, warmup=False, sync=sync
        )  # one [tokens, d_in] × [d_in, d_sae] product: semi:T does 2·T
        result = {
            "d_sae": d_sae,
            "tokens": n_tokens,
            "objective": objective,
            "weights_mib": weights_mib,
            "encoder_l0": mean_l0(codes),
            "modes": {"amortized": 1000 * encode_s / n_tokens},
        }
        lam = None
        if objective != "k_sparse":
            cold_s, _ = timed(
                lambda: solve(
                    problem_of(sae, objective).dictionary, sparse_coding_targets(sae, x), 0.15
                )
            )  # the cold solve includes the dictionary's Lipschitz constant, as a first solve does
            calibration_s, calibration = timed(
                lambda: calibrate_l1_coefficient(sae, x, objective=objective)
            )
            lam = calibration.l1_coefficient
            result |= {
                "lambda": lam,
                "calibration_s": calibration_s,
                "calibration_solves": calibration.n_solves,
                "calibration_l0": calibration.achieved_l0,
                "cold_solve_s": cold_s,
            }
        settings = InferenceSettings(objective=objective, k=64 if objective == "k_sparse" else None)
        for name in ("semi:5", "semi:25", "non_amortized"):
            mode = parse_mode(name)
            encoder = mode_sae(sae, mode, lam, settings)
            seconds, mode_codes = timed(lambda encoder=encoder: encoder.encode(x))
            for _ in range(repeats - 1):  # the best of ``repeats`` runs (noise only adds time)
                seconds = min(seconds, timed(lambda encoder=encoder: encoder.encode(x))[0])
            result["modes"][name] = 1000 * seconds / n_tokens
            result[f"l0_{name}"] = mean_l0(mode_codes)
            if mode.n_steps:  # share of the GEMM limit: T steps of 2 products (ISTA), 1 (IHT)
                products = (1 if objective == "k_sparse" else 2) * mode.n_steps
                result[f"gemm_share_{name}"] = products * gemm_s / seconds
    sampler.running = False
    sampler.join()
    result["peak_anon_mib"] = sampler.peak
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--widths", type=int, nargs="+", default=[16384, 65536, 131072])
    parser.add_argument("--tokens", type=int, default=1024)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    parser.add_argument(
        "--objective", nargs="+", default=["l1"], choices=["l1", "l1_decoder_norm", "k_sparse"]
    )
    parser.add_argument(
        "--repeats", type=int, default=1, help="time each mode as the best of this many runs"
    )
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)  # internal: one width, JSON out
    args = parser.parse_args()
    if args.one:
        (objective,) = args.objective
        result = one_width(args.one, args.tokens, args.device, args.dtype, objective, args.repeats)
        print(json.dumps(result))
        return
    import torch

    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {args.device}, "
        f"{args.dtype}; encode best of 3, each mode best of {args.repeats}"
    )
    print(
        f"{'d_sae':>8} {'weights MiB':>12} {'peak anon MiB':>14} {'x weights':>10} "
        f"{'calib s':>8} {'solves':>7} {'x cold':>7} | s/1k tokens (x amortized): "
        "amortized, semi:5, semi:25, non_amortized"
    )
    for width, objective in ((w, o) for w in args.widths for o in args.objective):
        done = subprocess.run(
            [sys.executable, __file__, "--one", str(width), "--tokens", str(args.tokens),
             "--device", args.device, "--dtype", args.dtype, "--objective", objective,
             "--repeats", str(args.repeats)],
            capture_output=True, text=True,
        )  # fmt: skip
        if done.returncode != 0:
            print(f"{width:>8} {objective} failed: {done.stderr.strip().splitlines()[-1]}")
            continue
        r = json.loads(done.stdout.strip().splitlines()[-1])
        base = r["modes"]["amortized"]
        modes = ", ".join(f"{v:.3f} (x{v / base:.1f})" for v in r["modes"].values())
        calibrated = "lambda" in r
        calibration = (
            f"{r['calibration_s']:>8.1f} {r['calibration_solves']:>7} "
            f"{r['calibration_s'] / r['cold_solve_s']:>7.2f}"
            if calibrated
            else f"{'-':>8} {'-':>7} {'-':>7}"
        )
        print(
            f"{width:>8} {r['weights_mib']:>12.0f} {r['peak_anon_mib']:>14.0f} "
            f"{r['peak_anon_mib'] / r['weights_mib']:>10.2f} {calibration} | {objective}: {modes}"
        )
        problem = (
            f"λ {r['lambda']:.4g}; calibrated L0 {r['calibration_l0']:.1f}; cold solve "
            f"{r['cold_solve_s']:.1f} s"
            if calibrated
            else "k 64, no λ"
        )
        print(
            f"{'':>8} {problem}; L0 encoder {r['encoder_l0']:.1f}, semi:5 {r['l0_semi:5']:.1f}, "
            f"semi:25 {r['l0_semi:25']:.1f}, non_amortized {r['l0_non_amortized']:.1f}"
        )
        tokens_per_s = ", ".join(f"{name} {1000 / v:,.0f}" for name, v in r["modes"].items())
        print(
            f"{'':>8} tokens/s: {tokens_per_s}; share of the GEMM limit (T·{1 if objective == 'k_sparse' else 2} products per token): "
            f"semi:5 {r['gemm_share_semi:5']:.0%}, semi:25 {r['gemm_share_semi:25']:.0%}"
        )


if __name__ == "__main__":
    main()
