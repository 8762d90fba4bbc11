#!/usr/bin/env bash
# The test command: set up .venv, lint (ruff, import layers), prove every CUDA kernel compiles, run the test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
ruff check plif_zoo tests benchmarks examples
lint-imports  # pyproject.toml [tool.importlinter]: imports point down the layers, no cycle
if [ -f plif_zoo/cuda/__main__.py ]; then
  python -m plif_zoo.cuda --compile-only --arch sm_80 --arch sm_90
fi
python -m pytest -q "$@"
