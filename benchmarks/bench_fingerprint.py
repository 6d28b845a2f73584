"""What checking a command before any work costs: hashing an SAE's weights and an activation file (the
result fingerprint) against loading that SAE and against the first eval on it, side by side in one run.

Problem: a TopK SAE at Gemma-2-2B's d_in (2304) and a given width, saved as an SAE-Lens folder; an
activation file of N float16 tokens. Timed (best of 3 after a warm-up): ``SAE.load_from_disk``, the sanity checks, the SHA-256
of the loaded weights, the SHA-256 of the activation file (cold: its per-process cache cleared), and
``saebench run --eval dead_dense`` end to end, then the same command again (every result up to date: the
rerun loads, checks and hashes, then skips).

    .venv/bin/python benchmarks/bench_fingerprint.py [--d-sae 65536] [--tokens 20000]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from timing import best_of


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--d-sae", type=int, default=65536)
    parser.add_argument("--d-in", type=int, default=2304)
    parser.add_argument("--tokens", type=int, default=20000)
    args = parser.parse_args()

    import torch
    from sae_lens import SAE, TopKSAE, TopKSAEConfig

    from sae_bench_amortization import digest
    from sae_bench_amortization.activations.file import ActivationFileWriter
    from sae_bench_amortization.sources.sanity import check_sae

    folder = Path(tempfile.mkdtemp(prefix="bench-fingerprint-"))
    torch.manual_seed(0)
    sae = TopKSAE(TopKSAEConfig(d_in=args.d_in, d_sae=args.d_sae, k=64))
    with torch.no_grad():
        sae.W_dec.copy_(torch.nn.functional.normalize(torch.randn(args.d_sae, args.d_in), dim=1))
        sae.W_enc.copy_(0.9 * sae.W_dec.T)
    sae.save_model(folder / "sae")
    weights_gib = sum(p.numel() * p.element_size() for p in sae.parameters()) / 2**30
    del sae
    acts = folder / "acts.safetensors"
    with ActivationFileWriter(acts, args.d_in, torch.float16) as writer:
        for start in range(0, args.tokens, 4096):
            writer.write(torch.randn(min(4096, args.tokens - start), args.d_in))
    file_gib = acts.stat().st_size / 2**30

    loaded = {}

    def load():
        loaded["sae"] = SAE.load_from_disk(folder / "sae", device="cpu")

    def check():
        check_sae(loaded["sae"], "bench")

    def hash_weights():
        digest.tensors_digest(loaded["sae"].state_dict())

    def hash_file():
        digest._FILE_CACHE.clear()
        digest.file_digest(acts)

    load_s, check_s = best_of(load), best_of(check)
    weights_s, file_s = best_of(hash_weights), best_of(hash_file)
    command = [sys.executable, "-m", "sae_bench_amortization.cli", "run", "--eval", "dead_dense",
               "--sae-path", str(folder / "sae"), "--activations", str(acts),
               "--output-dir", str(folder / "out"), "--device", "cpu"]  # fmt: skip
    timings = []
    for _ in range(2):
        start = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True)
        timings.append(time.perf_counter() - start)
    first, rerun = timings
    print(f"TopK SAE d_in {args.d_in} x d_sae {args.d_sae}: weights {weights_gib:.2f} GiB; "
          f"activation file {args.tokens} tokens, {file_gib:.2f} GiB (float16)")  # fmt: skip
    print(f"load_from_disk            {load_s:7.2f} s")
    print(f"sanity checks             {check_s:7.2f} s   {check_s / first:6.1%} of the first run")
    print(f"SHA-256 of the weights    {weights_s:7.2f} s   {weights_s / first:6.1%} of the first run "
          f"({weights_gib / weights_s:.2f} GiB/s)")  # fmt: skip
    print(f"SHA-256 of the file       {file_s:7.2f} s   ({file_gib / file_s:.2f} GiB/s)")
    print(f"run --eval dead_dense     {first:7.2f} s   (whole command, fresh process)")
    print(
        f"same command again        {rerun:7.2f} s   x{rerun / first:.2f}: load, check, hash, skip"
    )


if __name__ == "__main__":
    main()
