#!/usr/bin/env bash
# Start or resume the issue-11 run (fashion-mnist-plif, batch 16, 32 epochs; benchmarks/RESULTS.md)
# in the background, from a frozen copy of the code outside the work tree, so that later commits
# and a new work tree change nothing in it. Safe to call again: it resumes from the checkpoint
# and does nothing while the run is going.
#
#   bash scripts/issue11_run.sh [COMMIT]    # default 71e517b, the commit the current run started from
#
# Folder: $PLIF_ZOO_RUNS (default ~/plif-zoo-runs): src-COMMIT/ (git archive), venv/ (torch and
# that copy installed), fashion-mnist-plif-b16/ (the run: checkpoint.pt, metrics.csv, best/) and
# fashion-mnist-plif-b16.log.
set -euo pipefail
commit=${1:-71e517b}
runs=${PLIF_ZOO_RUNS:-$HOME/plif-zoo-runs}
run=$runs/fashion-mnist-plif-b16
if pgrep -f -- "--out $run( |$)" >/dev/null; then
  echo "issue11_run: the run in $run is going already (tail -f $run.log)"
  exit 0
fi
git -C "$(dirname "$0")/.." cat-file -e "$commit^{commit}" 2>/dev/null \
  || { echo "issue11_run: no commit $commit in this repository; give the run's commit" >&2; exit 2; }
mkdir -p "$runs"
src=$runs/src-$commit
if [ ! -d "$src" ]; then
  git -C "$(dirname "$0")/.." archive "$commit" --prefix="src-$commit/" | tar -x -C "$runs"
fi
if [ ! -x "$runs/venv/bin/plif-zoo" ]; then
  python3 -m venv "$runs/venv"
  "$runs/venv/bin/pip" install -q torch==2.14.1 torchvision==0.29.1
  "$runs/venv/bin/pip" install -q "$src"
fi
resume=() how=started
[ -f "$run/checkpoint.pt" ] && resume=(--resume) how=resumed
nohup "$runs/venv/bin/plif-zoo" train fashion-mnist-plif \
  --data-dir /usr/share/datasets/fashion-mnist --out "$run" \
  --epochs 32 --t-max 32 --batch-size 16 --lr 1e-3 --seed 2020 --T 8 --amp --compile \
  --threads 2 --checkpoint-every 1500 "${resume[@]}" >>"$run.log" 2>&1 &
echo "issue11_run: $how in $run (pid $!); log $run.log"
