#!/usr/bin/env bash
# Set up a development environment in .venv: torch, plif-zoo (editable) with its test extras,
# and the real Fashion-MNIST files from Debian's dataset-fashion-mnist package.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q torch==2.14.1 torchvision==0.29.1
.venv/bin/python -m pip install -q -e '.[test]'
if [ ! -f /usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    (apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist) >/dev/null \
      || echo "setup: could not install dataset-fashion-mnist; tests that need it will skip" >&2
  else
    echo "setup: run 'sudo apt-get install dataset-fashion-mnist' for the Fashion-MNIST tests" >&2
  fi
fi
