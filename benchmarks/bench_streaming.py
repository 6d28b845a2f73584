"""Memory does not grow with the token count: an eval on activation files of N and 10·N tokens.

--eval dead_dense (default): random activations, d_in 384, a TopK SAE. --eval amortization_gap: the
synthetic benchmark (with concepts, so ΔF1 and absorption run too), d_in 128, a TopK SAE, all four modes.

Each run is a fresh `saebench run` subprocess. A thread in it samples /proc/self/status every 5 ms:
RssAnon (heap: what the process allocated) and RssFile (pages of the memory-mapped safetensors file it
has touched — page cache the kernel can reclaim at will, so it tracks how much of the file was read, not
what was allocated). Prints wall time, throughput and both peaks for the two sizes, side by side.

    .venv/bin/python benchmarks/bench_streaming.py [--n-tokens 100000] [--d-in 384] [--d-sae 1536]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
from sae_lens.saes.topk_sae import TopKSAE, TopKSAEConfig

from sae_bench_amortization.activations.file import ActivationFileWriter


def write_file(path: Path, n_tokens: int, d_in: int) -> None:
    generator = torch.Generator().manual_seed(0)
    with ActivationFileWriter(path, d_in, torch.float16) as writer:
        for start in range(0, n_tokens, 65536):
            writer.write(torch.randn(min(65536, n_tokens - start), d_in, generator=generator))


CHILD = """
import sys, threading, time
peak = {"RssAnon": 0, "RssFile": 0}
def sample():
    while True:
        for line in open("/proc/self/status"):
            key, _, value = line.partition(":")
            if key in peak:
                peak[key] = max(peak[key], int(value.split()[0]))
        time.sleep(0.005)
threading.Thread(target=sample, daemon=True).start()
from sae_bench_amortization.cli import main
t = time.perf_counter()
code = main(sys.argv[1:])
time.sleep(0.02)
print(time.perf_counter() - t, peak["RssAnon"] / 1024, peak["RssFile"] / 1024)
sys.exit(code)
"""


def run(
    sae: Path, acts: Path, out: Path, eval_name: str = "dead_dense"
) -> tuple[float, float, float]:
    """(seconds, peak anonymous MiB, peak file-backed MiB) of one `saebench run --eval dead_dense`."""
    script = CHILD
    args = [
        "run",
        "--eval",
        eval_name,
        "--sae-path",
        str(sae),
        "--activations",
        str(acts),
        "--output-dir",
        str(out),
        "--device",
        "cpu",
        "--force-rerun",
    ]
    done = subprocess.run(
        [sys.executable, "-c", script, *args],
        capture_output=True,
        text=True,
        env={**os.environ, "TQDM_DISABLE": "1"},
        check=True,
    )
    seconds, anon, mapped = done.stdout.strip().splitlines()[-1].split()
    return float(seconds), float(anon), float(mapped)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-tokens", type=int, default=100_000)
    parser.add_argument("--eval", default="dead_dense", choices=["dead_dense", "amortization_gap"])
    parser.add_argument("--d-in", type=int, default=384)
    parser.add_argument("--d-sae", type=int, default=1536)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        synthetic = args.eval == "amortization_gap"
        d_in = 128 if synthetic else args.d_in
        TopKSAE(TopKSAEConfig(d_in=d_in, d_sae=args.d_sae, k=16)).save_model(folder / "sae")
        rows = []
        for n in (args.n_tokens, 10 * args.n_tokens):
            path = folder / f"acts_{n}.safetensors"
            if synthetic:
                from sae_bench_amortization.synthetic.generator import (
                    SyntheticConfig,
                    write_synthetic,
                )

                write_synthetic(path, SyntheticConfig(), n)
            else:
                write_file(path, n, args.d_in)
            size = path.stat().st_size / 2**20
            seconds, anon, mapped = run(folder / "sae", path, folder / "out", args.eval)
            rows.append((n, size, seconds, anon))
            print(
                f"N={n:>9,}  file {size:7.1f} MiB  run {seconds:6.2f} s  {n / seconds:>9,.0f} tok/s  "
                f"peak RssAnon {anon:7.1f} MiB  peak RssFile {mapped:7.1f} MiB"
            )
            path.unlink()
        (_, f1, s1, a1), (_, f2, s2, a2) = rows
        print(
            f"10x tokens ({f2 / f1:.1f}x file): peak anonymous memory x{a2 / a1:.3f} "
            f"({a2 - a1:+.1f} MiB), time x{s2 / s1:.2f}"
        )


if __name__ == "__main__":
    main()
