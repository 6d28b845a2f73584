#!/usr/bin/env bash
# The offline end-to-end path with --device cuda, on a GPU machine without network.
# Prepare here first: bash benchmarks/prepare_gpu_check.sh  (writes .gpu_check/, carried to the GPU machine)
# Checks: (1) dead_dense on the carried MiniLM activations with --device cuda equals the CPU reference;
#         (2) `saebench activations` from MiniLM on CUDA, then dead_dense on CUDA; (3) the TransformerLens
#         reader on CUDA (an offline HookedTransformer); (4) benchmarks/bench_sparse_coding.py --device cuda
#         (semi:25 tokens/s at Gemma-2-2B width); (5) benchmarks/bench_wide.py on CUDA in fp32 and bf16
#         (every mode's tokens/s at d_sae 16k and 65k, share of the GEMM limit); and times dead_dense on
#         cuda vs cpu side by side; (6) amortization_gap on a published release read from a local Hugging
#         Face cache (tests/hf_cache.py) with every offline switch on, --device cuda; (7) saebench reproduce
#         pythia-topk end to end on CUDA at a reduced scale from that cache (each step's seconds).
set -euo pipefail
cd "$(dirname "$0")/.."
G=.gpu_check
OUT=${OUT:-/tmp/gpu_check_out}
mkdir -p "$OUT"
[ -d "$G/wheels" ] || { echo "no $G/wheels: run benchmarks/prepare_gpu_check.sh first and carry $G" >&2; exit 2; }

python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site "$G"/wheels/*.whl
export PYTHONPATH=/tmp/site TQDM_DISABLE=1 PYTHONUNBUFFERED=1
if ! python3 -c "import wandb" 2>/dev/null; then
  # sae_lens.config imports wandb at module level; nothing on this path calls it.
  mkdir -p /tmp/shim/wandb && echo '"""Empty stand-in for an unused import."""' > /tmp/shim/wandb/__init__.py
  export PYTHONPATH=$PYTHONPATH:/tmp/shim
fi
python3 -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; print('torch', torch.__version__, torch.cuda.get_device_name())"
S="python3 -m sae_bench_amortization.cli"

echo "== 1. dead_dense on the default synthetic SAE, --device cuda vs the CPU reference"
t0=$(date +%s.%N)
$S run --eval dead_dense --sae-path $G/inputs/sae --activations $G/inputs/acts.safetensors --device cuda --output-dir "$OUT/cuda"
t1=$(date +%s.%N)
$S run --eval dead_dense --sae-path $G/inputs/sae --activations $G/inputs/acts.safetensors --device cpu --output-dir "$OUT/cpu"
t2=$(date +%s.%N)
python3 - "$G/inputs/cpu_reference" "$OUT/cuda" "$OUT/cpu" "$t0" "$t1" "$t2" <<'PY'
import json, sys
from pathlib import Path
load = lambda d: json.loads(next(Path(d, "dead_dense").glob("*_eval_results.json")).read_text())["eval_result_metrics"]["pathologies"]
ref, cuda, cpu = (load(d) for d in sys.argv[1:4])
t0, t1, t2 = map(float, sys.argv[4:7])
print("reference (prep machine, cpu):", ref)
print("here, cuda:                   ", cuda)
print("here, cpu:                    ", cpu)
d_sae = json.loads(next(Path(sys.argv[2], "dead_dense").glob("*_eval_results.json")).read_text())["sae_cfg_dict"]["d_sae"]
assert cuda["n_tokens"] == ref["n_tokens"]
assert abs(cuda["dead_rate"] - ref["dead_rate"]) * d_sae <= 2, "dead latents differ by more than 2"
assert abs(cuda["mean_l0"] - ref["mean_l0"]) < 1e-3
print(f"whole command (load + eval), cuda {t1 - t0:.1f} s, cpu {t2 - t1:.1f} s, cpu/cuda {(t2 - t1) / (t1 - t0):.2f}")
PY

echo "== 2. MiniLM activations on CUDA, then dead_dense on CUDA"
$S activations --hf-model $G/inputs/minilm --hf-module encoder.layer.3 --n-tokens 20000 --device cuda --out "$OUT/minilm_cuda.safetensors"
$S run --eval dead_dense --sae-path $G/inputs/minilm_sae --activations "$OUT/minilm_cuda.safetensors" --device cuda --output-dir "$OUT/cuda_hf"
$S run --eval dead_dense --sae-path $G/inputs/minilm_sae --hf-model $G/inputs/minilm --hf-module encoder.layer.3 --n-tokens 20000 --device cuda --output-dir "$OUT/cuda_hf_direct"

echo "== 3. TransformerLens reader on CUDA (offline HookedTransformer)"
python3 - "$G/inputs/minilm" <<'PY'
import sys
import torch
from transformer_lens import HookedTransformer, HookedTransformerConfig
from transformers import AutoTokenizer
from sae_lens.saes.standard_sae import StandardSAE, StandardSAEConfig
from sae_bench_amortization.activations.models import TransformerLensActivations
from sae_bench_amortization.activations.text import iter_fortunes
from sae_bench_amortization.evals.dead_dense.eval_config import DeadDenseEvalConfig
from sae_bench_amortization.evals.dead_dense.main import evaluate_sae
tokenizer = AutoTokenizer.from_pretrained(sys.argv[1])
cfg = HookedTransformerConfig(n_layers=2, d_model=64, n_ctx=128, d_head=16, n_heads=4, d_mlp=256,
                              d_vocab=tokenizer.vocab_size, act_fn="gelu", device="cuda", seed=0)
model = HookedTransformer(cfg, tokenizer=tokenizer)
source = TransformerLensActivations(model, "blocks.1.hook_resid_post", lambda: iter_fortunes(), 5000)
sae = StandardSAE(StandardSAEConfig(d_in=64, d_sae=256, device="cuda"))
metrics, counter = evaluate_sae(sae, source, DeadDenseEvalConfig())
print("TransformerLens on", model.cfg.device, metrics)
assert metrics.n_tokens == 5000
PY
echo "== 4. sparse coding benchmark on CUDA (CPU rows too), incl. semi:25 tokens/s at d_in 2304, d_sae 16384"
python3 benchmarks/bench_sparse_coding.py --device cuda --repeats 3
echo "== 5. wide SAEs on CUDA: every mode's tokens/s at d_in 2304, d_sae 16k and 65k, fp32 and bf16"
python3 benchmarks/bench_wide.py --device cuda --widths 16384 65536 --dtype float32
python3 benchmarks/bench_wide.py --device cuda --widths 16384 65536 --dtype bfloat16
echo "== 6. the published-release path from a carried Hugging Face cache, offline, on CUDA"
python3 tests/hf_cache.py /tmp/hf_home   # the test cache: pythia-70m-deduped, SAEBench's sweep, the dataset
HF_HOME=/tmp/hf_home HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1 \
  $S run --eval amortization_gap --sae-release sae_bench_pythia70m_sweep_topk_ctx128_0730 \
  --sae-id blocks.3.hook_resid_post__trainer_0 --n-tokens 20000 --device cuda --output-dir "$OUT/release_cuda"
echo "== 7. saebench reproduce pythia-topk on CUDA at a reduced scale (pythia-70m-deduped stands in for 160m)"
# the whole chain — activations, held-out tokens, TopK training, LocA fine-tuning, the paper-protocol eval —
# with the paper's SAE shape (d_sae 16384, k 20, batch 2048) and fewer tokens; TARGET.md lists each step's s
HF_HOME=/tmp/hf_home HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1 \
  $S reproduce pythia-topk --model pythia-70m-deduped --layer 3 --dataset Skylion007/openwebtext \
  --activation-tokens 30000 --eval-tokens 5000 --train-tokens 2048000 --loca-tokens 1024000 \
  --device cuda --out "$OUT/reproduce_pythia_topk"
cat "$OUT/reproduce_pythia_topk/pythia-topk.md"
echo "gpu_check: all passed"
