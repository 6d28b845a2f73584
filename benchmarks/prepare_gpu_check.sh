#!/usr/bin/env bash
# Prepare .gpu_check/ here (network to PyPI, the project's .venv) for benchmarks/gpu_check.sh on a GPU machine
# that has Python 3.12 and its own torch but no sae-lens / sae-bench / transformer-lens and no network.
#   wheels/   this package + the imported distributions the GPU image lacks (cp312, manylinux x86_64)
#   inputs/   the default TopK SAE with 4096 of its held-out synthetic tokens (fp16), MiniLM in fp16 and an
#             SAE of its width (for the HF path),
#             and the CPU reference results computed here
# Then carry .gpu_check (device tool: carry [".gpu_check"]) and run: bash benchmarks/gpu_check.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
G=.gpu_check
rm -rf "$G" && mkdir -p "$G/wheels" "$G/inputs"
grep -qx "/.gpu_check/" .git/info/exclude 2>/dev/null || echo "/.gpu_check/" >> .git/info/exclude

$PY -m pip wheel -q --no-deps -w "$G/wheels" .
TQDM_DISABLE=1 $PY benchmarks/gpu_wheels.py 2>/dev/null | grep "==" > "$G/requirements.txt"
plat=""; for n in 28 27 17; do plat="$plat --platform manylinux_2_${n}_x86_64"; done
$PY -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  $plat --platform manylinux2014_x86_64 --platform any -d "$G/wheels" -r "$G/requirements.txt"

TQDM_DISABLE=1 $PY - <<'PY'
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from sae_bench_amortization.synthetic import default
from sae_bench_amortization.activations.file import ActivationFile, ActivationFileWriter
from sae_bench_amortization.activations.models import resolve_hf_model
from sae_bench_amortization.cli import main

inputs = Path(".gpu_check/inputs")
bench = default.default_benchmark()
shutil.copytree(bench.sae_path, inputs / "sae")
acts = next(ActivationFile(bench.activations).iter_batches(4096)).acts
with ActivationFileWriter(inputs / "acts.safetensors", acts.shape[1], torch.float16) as writer:
    writer.write(acts)
model = Path(resolve_hf_model("all-MiniLM-L6-v2"))
(inputs / "minilm").mkdir()
for item in model.iterdir():
    if item.name == "model.safetensors":
        save_file({k: v.half() for k, v in load_file(item).items()}, inputs / "minilm" / item.name, {"format": "pt"})
    elif item.is_file():
        shutil.copy(item, inputs / "minilm" / item.name)
from sae_lens.saes.standard_sae import StandardSAE, StandardSAEConfig

torch.manual_seed(0)
StandardSAE(StandardSAEConfig(d_in=384, d_sae=1536)).save_model(inputs / "minilm_sae")  # MiniLM width
main(["run", "--eval", "dead_dense", "--sae-path", str(inputs / "sae"), "--activations",
      str(inputs / "acts.safetensors"), "--output-dir", str(inputs / "cpu_reference"), "--device", "cpu"])
PY
du -sh "$G" "$G/wheels" "$G/inputs"
