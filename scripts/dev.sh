#!/usr/bin/env bash
# Set-up and the two jobs of this repository, on a fresh machine:
#   bash scripts/dev.sh demo   create .venv, install, run the main job on the embedded offline default
#                              (and write its page, eval_results/report.html)
#   bash scripts/dev.sh test   create .venv if missing, install, run the whole test suite
# TORCH_SPEC picks the torch build (default torch==2.13.0, the CPU build; on a GPU box e.g. TORCH_SPEC=torch).
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-$(command -v python3.11 || command -v python3)}
TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}
stamp=.venv/.installed

if [ ! -x .venv/bin/python ]; then
  echo "creating .venv with $PYTHON"
  "$PYTHON" -m venv .venv
fi
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || [ constraints.txt -nt "$stamp" ]; then
  echo "installing (a few minutes the first time)"
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q "$TORCH_SPEC"
  # keep that torch: sae-bench's torchvision would otherwise pull a newer (CUDA, 5 GB) torch in
  .venv/bin/python -c "import importlib.metadata as m; print('torch==' + m.version('torch'))" > .venv/torch-pin.txt
  .venv/bin/python -m pip install -q -c constraints.txt -c .venv/torch-pin.txt -e ".[dev,offline,ray]"
  # sae-bench declares torchvision, but nothing here uses it and it breaks transformers and datasets
  # beside the CPU torch build (see README, "Installing"): remove it.
  .venv/bin/python -m pip uninstall -y -q torchvision 2>/dev/null || true
  .venv/bin/python -c "import sae_bench_amortization, transformer_lens, sae_lens, sae_bench, datasets"
  touch "$stamp"
fi

case "${1:-}" in
  demo) shift; exec .venv/bin/saebench run --eval amortization_gap --report "$@" ;;
  # two workers (pytest-xdist), each file whole on one of them, the longest first (tests/conftest.py)
  test) shift; exec .venv/bin/python -m pytest -q -n 2 --durations=15 "$@" ;;
  install) ;;
  *) echo "usage: bash scripts/dev.sh demo|test|install" >&2; exit 2 ;;
esac
