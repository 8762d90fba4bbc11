#!/usr/bin/env bash
# Start or resume an issue-11 run (fashion-mnist-plif, batch 16, EPOCHS epochs with T_max = EPOCHS;
# benchmarks/RESULTS.md) in the background, from a frozen copy of the code outside the work tree,
# so that later commits and a new work tree change nothing in it. Safe to call again: it resumes
# from the checkpoint and does nothing while the run is going.
#
#   bash scripts/issue11_run.sh [COMMIT] [EPOCHS]   # defaults 71e517b and 32: the first b16 run
#   bash scripts/issue11_run.sh 71e517b 64          # the authors' T_max 64, one cosine half-period
#
# Folder: $PLIF_ZOO_RUNS (default ~/plif-zoo-runs): src-COMMIT/ (git archive), venv/ (torch and
# that copy installed; venv/.src names the commit), fashion-mnist-plif-b16/ for 32 epochs or
# fashion-mnist-plif-b16-eEPOCHS/ otherwise (checkpoint.pt, metrics.csv, best/), and RUN.log.
# It checkpoints every 500 steps (a few minutes). A session's end kills it without SIGTERM, so
# before a planned stop ask it to checkpoint and exit (it logs "stopped at epoch E step S"):
#   pkill -TERM -f -- "--out ${PLIF_ZOO_RUNS:-$HOME/plif-zoo-runs}/"
set -euo pipefail
commit=${1:-71e517b}
epochs=${2:-32}
[[ $epochs =~ ^[1-9][0-9]*$ ]] || { echo "issue11_run: EPOCHS must be a positive whole number, got '$epochs'" >&2; exit 2; }
runs=${PLIF_ZOO_RUNS:-$HOME/plif-zoo-runs}
run=$runs/fashion-mnist-plif-b16
[ "$epochs" = 32 ] || run=$run-e$epochs
if pgrep -f -- "--out $run( |$)" >/dev/null; then
  echo "issue11_run: the run in $run is going already (tail -f $run.log)"
  exit 0
fi
if other=$(pgrep -af -- "$runs/venv/bin/plif-zoo train"); then  # 2 cores: one run at a time
  echo "issue11_run: another run is going; wait for it to end: $other" >&2
  exit 2
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
  echo "$commit" >"$runs/venv/.src"
elif [ "$(cat "$runs/venv/.src" 2>/dev/null || echo 71e517b)" != "$commit" ]; then  # no .src: made from 71e517b
  "$runs/venv/bin/pip" install -q --force-reinstall --no-deps "$src"
  echo "$commit" >"$runs/venv/.src"
fi
resume=() how=started
[ -f "$run/checkpoint.pt" ] && resume=(--resume) how=resumed
nohup "$runs/venv/bin/plif-zoo" train fashion-mnist-plif \
  --data-dir /usr/share/datasets/fashion-mnist --out "$run" \
  --epochs "$epochs" --t-max "$epochs" --batch-size 16 --lr 1e-3 --seed 2020 --T 8 --amp --compile \
  --threads 2 --checkpoint-every 500 "${resume[@]}" >>"$run.log" 2>&1 &
echo "issue11_run: $how in $run (pid $!); log $run.log"
