#!/usr/bin/env bash
# The one device run of the CuPy backend: every GPU test (the zoo model on backend="cupy" against
# "torch" in float32 / float16 / bfloat16 among them), memcheck where compute-sanitizer exists,
# then benchmarks/neurons.py (timed with the host, then as CUDA graphs: the kernels alone);
# results in $OUT. Fails fast without a GPU, and fails when every GPU test skipped or every
# cupy benchmark row failed: a run that executed no kernel is no pass.
#
# 1. Here, on a machine that reaches PyPI, in the repo root, once:
#      bash benchmarks/gpu_check.sh --fetch-wheels
#    puts SpikingJelly 2.0.0 + loguru (the image lacks them) and SpikingJelly 0.0.0.0.14 (the
#    old CuPy peer) as pure-Python wheels in .whl/ (git-ignored through .git/info/exclude).
#    Then take weights/ (130 MB) out of what travels, which must stay under 64 MiB:
#      bash scripts/device_tree.sh slim .whl
# 2. Through the device tool, from the repo root (about 4 minutes on an H200 on 2026-12-04, before
#    --graphs added a second timing of every case):
#      run(command="bash benchmarks/gpu_check.sh", carry=[".whl"], timeout_s=600)
#    then, here: bash scripts/device_tree.sh restore
#    $OUT then holds gpu_check.log (everything), compile_only.txt, gpu_tests.xml, memcheck.txt,
#    bench.txt and bench.json.
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

# Fail fast, before installing anything, where there is no GPU to check.
if ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi -L >/dev/null 2>&1; then
  echo "gpu_check: FAILED: no NVIDIA GPU here (nvidia-smi is missing or lists none);"
  echo "gpu_check: run this on the device machine (see the top of this file)"
  exit 2
fi
if ! $PY -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)"; then
  echo "gpu_check: FAILED: torch sees no CUDA device (torch without CUDA, or a driver too old)"
  exit 2
fi

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
$PY - <<'PY' || exit 2
import sys
import cupy, spikingjelly, torch
import plif_zoo.cuda as k
print("torch", torch.__version__, "cupy", cupy.__version__, "spikingjelly", spikingjelly.__file__)
if not k.available():  # availability = the kernels were built and loaded on this GPU
    sys.exit(f"gpu_check: FAILED: the cupy backend cannot run here: {k.why_unavailable()}")
print("cupy backend available: kernels built and loaded")
PY

echo "== compile-only (NVRTC) =="
$PY -m plif_zoo.cuda --compile-only --arch sm_90 >"$OUT/compile_only.txt" 2>&1
echo "compile-only rc=$? (every line: compile_only.txt)"
head -n 1 "$OUT/compile_only.txt"; tail -n 3 "$OUT/compile_only.txt"

echo "== GPU tests (every test marked gpu, the zoo-model cupy-vs-torch check included) =="
timeout 240 $PY -m pytest -q -rs -p no:cacheprovider -m gpu tests/ --junitxml="$OUT/gpu_tests.xml"
tests_rc=$?
# A run where every GPU test skipped proves nothing: count what ran.
$PY - "$OUT/gpu_tests.xml" <<'PY' || tests_rc=1
import sys
import xml.etree.ElementTree as ET
cases = list(ET.parse(sys.argv[1]).getroot().iter("testcase"))
skipped = [c for c in cases if c.find("skipped") is not None]
ran = len(cases) - len(skipped)
print(f"gpu_check: {ran} GPU tests ran, {len(skipped)} skipped")
sys.exit(0 if ran > 0 else "gpu_check: FAILED: every GPU test was skipped")
PY

if command -v compute-sanitizer >/dev/null 2>&1; then
  echo "== compute-sanitizer memcheck: odd sizes, misaligned views, max-pool =="
  timeout 240 compute-sanitizer --tool memcheck --error-exitcode 1 \
    $PY -m pytest -q -p no:cacheprovider tests/test_kernels_gpu.py -k "odd or misaligned or max_pool" \
    > "$OUT/memcheck.txt" 2>&1 || tests_rc=1
  tail -n 5 "$OUT/memcheck.txt"
else
  echo "(compute-sanitizer is not installed here: no memcheck run)"
fi

echo "== benchmarks =="
# shellcheck disable=SC2086
timeout 480 $PY benchmarks/neurons.py --steps 4 8 16 32 --neurons-log2 20 24 --graphs \
  --dtypes float32 bfloat16 float16 $SJ014 --json "$OUT/bench.json" 2>&1 | tee "$OUT/bench.txt"
bench_rc=$?

echo "gpu_check: tests rc=$tests_rc, benchmarks rc=$bench_rc"
if [ "$tests_rc" = 0 ] && [ "$bench_rc" = 0 ]; then echo "gpu_check: PASSED"; else echo "gpu_check: FAILED"; exit 1; fi
