#!/usr/bin/env bash
# The test command: set up .venv, lint (ruff, import layers), prove every CUDA kernel compiles, run the test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
ruff check plif_zoo tests benchmarks examples scripts
ruff format --check plif_zoo tests benchmarks examples scripts
lint-imports --no-cache  # pyproject.toml [tool.importlinter]: imports point down the layers, no cycle
if [ -f plif_zoo/cuda/__main__.py ]; then
  python -m plif_zoo.cuda --compile-only --arch sm_80 --arch sm_90
  # The same with NVRTC 12 and CUDA 12's headers (plif-zoo[cuda12], for CUDA 12 drivers), from a
  # folder of its own so that the venv keeps NVRTC 13. libnvrtc.so.12 is preloaded: cuda.pathfinder
  # would find the venv's libnvrtc.so.13 first.
  N12=.venv/nvrtc12
  [ -f "$N12/.complete" ] || { rm -rf "$N12" && python -m pip install -q --no-deps --target "$N12" \
    'cuda-bindings>=12.9,<13' cuda-pathfinder nvidia-cuda-nvrtc-cu12 nvidia-cuda-runtime-cu12 \
    && touch "$N12/.complete"; }
  nvrtc12=$(LD_PRELOAD="$PWD/$N12/nvidia/cuda_nvrtc/lib/libnvrtc.so.12" PYTHONPATH="$PWD/$N12" \
    CUDA_PATH="$PWD/$N12/nvidia/cuda_runtime" python -m plif_zoo.cuda --compile-only --arch sm_80 --arch sm_90) \
    || { echo "$nvrtc12"; echo "test.sh: the NVRTC 12 compile check failed" >&2; exit 1; }
  grep -q '^NVRTC 12\.' <<<"$nvrtc12" || { echo "$nvrtc12"; echo "test.sh: NVRTC 12 was not the one used" >&2; exit 1; }
  grep -c '^ok' <<<"$nvrtc12" | sed 's/^/NVRTC 12 compile check: kernel entries ok: /'
fi
python -m pytest -q "$@"
