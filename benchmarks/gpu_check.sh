#!/usr/bin/env bash
# The one device run of the CuPy backend: GPU tests, then benchmarks/neurons.py; results in $OUT.
#
# 1. Here, on a machine that reaches PyPI, in the repo root, once:
#      bash benchmarks/gpu_check.sh --fetch-wheels
#    puts SpikingJelly 2.0.0 + loguru (the image lacks them) and SpikingJelly 0.0.0.0.14 (the
#    old CuPy peer) as pure-Python wheels in .whl/ (git-ignored through .git/info/exclude).
# 2. Through the device tool, from the repo root (about 6-8 minutes on an H200):
#      run(command="bash benchmarks/gpu_check.sh", carry=[".whl"], timeout_s=600)
#    $OUT then holds gpu_check.log (everything), gpu_tests.xml, bench.txt and bench.json.
#    Copy the figures into benchmarks/RESULTS.md with the date, the GPU and this command.
set -uo pipefail
cd "$(dirname "$0")/.."

if [ "${1:-}" = "--fetch-wheels" ]; then
  grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
  mkdir -p .whl/sj2 .whl/sj014
  fetch() { python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
              --implementation cp --platform manylinux_2_17_x86_64 --platform any -d "$@"; }
  fetch .whl/sj2 spikingjelly==2.0.0 && fetch .whl/sj2 loguru==0.7.3 \
    && fetch .whl/sj014 spikingjelly==0.0.0.0.14 || exit 1
  ls -l .whl/sj2 .whl/sj014
  exit 0
fi

OUT=${OUT:-/tmp/plif_zoo_gpu_check}
mkdir -p "$OUT"
exec > >(tee "$OUT/gpu_check.log") 2>&1
export PYTHONUNBUFFERED=1 PLIF_ZOO_CACHE=/tmp/plif_zoo_kernels
PY=python3

if ! ls .whl/sj2/*.whl >/dev/null 2>&1; then
  echo "gpu_check: .whl/sj2 is missing; run 'bash benchmarks/gpu_check.sh --fetch-wheels' first and carry .whl"
  exit 1
fi
$PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/sj2/*.whl || exit 1
SJ014=""
if ls .whl/sj014/*.whl >/dev/null 2>&1 \
   && $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/sj014 .whl/sj014/*.whl; then
  SJ014="--sj014 /tmp/sj014"
fi
export PYTHONPATH="$PWD:/tmp/site${PYTHONPATH:+:$PYTHONPATH}"

date -u
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,clocks.max.mem --format=csv
$PY - <<'PY'
import cupy, spikingjelly, torch
import plif_zoo.cuda as k
print("torch", torch.__version__, "cupy", cupy.__version__, "spikingjelly", spikingjelly.__file__)
print("cupy backend available:", k.available(), k.why_unavailable())
PY

echo "== compile-only (NVRTC) =="
$PY -m plif_zoo.cuda --compile-only --arch sm_90 | tail -n 3

echo "== GPU tests =="
timeout 180 $PY -m pytest -q -p no:cacheprovider tests/test_kernels_gpu.py tests/test_kernels_compile.py \
  --junitxml="$OUT/gpu_tests.xml"
tests_rc=$?

echo "== benchmarks =="
# shellcheck disable=SC2086
timeout 360 $PY benchmarks/neurons.py --steps 4 8 16 32 --neurons-log2 20 24 \
  --dtypes float32 bfloat16 float16 $SJ014 --json "$OUT/bench.json" 2>&1 | tee "$OUT/bench.txt"
bench_rc=$?

echo "gpu_check: tests rc=$tests_rc, benchmarks rc=$bench_rc"
[ "$tests_rc" = 0 ] && [ "$bench_rc" = 0 ]
