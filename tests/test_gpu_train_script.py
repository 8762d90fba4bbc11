"""scripts/gpu_train.sh's choices, with stand-ins for the GPU, pytest and `plif-zoo train`.

The script runs on the device machine once per lent GPU, so its decisions (which probe's
speed sets the epoch budget, whether the CUDA-graph run is taken, what comes back in $OUT)
are checked here, where a mistake costs seconds instead of a GPU session.
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# A stand-in python3: `-` and `-c` go to the real interpreter; `-m pip|pytest` succeed;
# `-m plif_zoo.cli train ...` logs its arguments and writes a run folder whose images/s are
# 1,500 eagerly and $FAKE_GRAPH_IPS with --compile under TORCHINDUCTOR_CUDAGRAPHS=1; the run
# (not a probe) first sleeps $FAKE_TRAIN_SECONDS.
FAKE_PYTHON = r"""#!/usr/bin/env bash
case "$1" in
  -c) exit 0 ;;  # the "does torch see CUDA" check
  -) exec "$REAL_PYTHON" "$@" ;;
esac
case "$2" in
  pip|pytest) exit 0 ;;
esac
echo "TRAIN graphs=${TORCHINDUCTOR_CUDAGRAPHS:-unset} ${*:3}" >> "$CALLS"
out=; compile=0; epochs=1; args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do
  case "${args[i]}" in
    --out) out=${args[i+1]} ;; --epochs) epochs=${args[i+1]} ;; --compile) compile=1 ;;
  esac
done
ips=1500
if [ $compile = 1 ]; then
  [ -n "${FAKE_COMPILE_FAILS:-}" ] && exit 1
  [ "${TORCHINDUCTOR_CUDAGRAPHS:-}" = 1 ] && ips=$FAKE_GRAPH_IPS
fi
[ "$epochs" -gt 2 ] && sleep "${FAKE_TRAIN_SECONDS:-0}"  # the run, not the probes
mkdir -p "$out/best"
{ echo "epoch,train_images_per_s,val_top1"
  for e in $(seq "$epochs"); do echo "$e,$ips,0.84"; done; } > "$out/metrics.csv"
echo '{}' > "$out/summary.json"; echo '{}' > "$out/best/config.json"; : > "$out/tau.csv"
exec "$REAL_PYTHON" -c "import numpy, sys; from safetensors.numpy import save_file
save_file({'w': numpy.ones(3, numpy.float32)}, sys.argv[1])" "$out/best/model.safetensors"
"""


def _run(tmp_path: Path, *args: str, **env: str) -> tuple[str, list[str], Path]:
    pytest.importorskip("safetensors")
    repo = tmp_path / "repo"
    (repo / "scripts").mkdir(parents=True, exist_ok=True)
    shutil.copy(ROOT / "scripts" / "gpu_train.sh", repo / "scripts")
    for name in (".data/fashion-mnist/train-images-idx3-ubyte.gz", ".whl/sj2/stand-in.whl"):
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        (repo / name).touch()
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / "nvidia-smi").write_text("#!/bin/sh\necho 'GPU 0: stand-in'\n")
    (bin_dir / "python3").write_text(FAKE_PYTHON)
    for f in bin_dir.iterdir():
        f.chmod(0o755)
    calls, out = tmp_path / "calls", tmp_path / f"out{len(args)}"
    done = subprocess.run(
        ["bash", "scripts/gpu_train.sh", *args],
        cwd=repo,
        env={
            **os.environ,
            "PATH": f"{bin_dir}:{os.environ['PATH']}",
            "PYTHON": str(bin_dir / "python3"),
            "REAL_PYTHON": sys.executable,
            "CALLS": str(calls),
            "OUT": str(out),
            "WORK": str(tmp_path / "work"),
            "FAKE_GRAPH_IPS": "8000",
            **env,
        },
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout, calls.read_text().splitlines(), out


def test_a_faster_cuda_graph_probe_sets_the_run_and_its_epochs(tmp_path):
    log, calls, out = _run(tmp_path)
    probes, run = calls[:2], calls[2]
    assert "--compile" not in probes[0] and "graphs=1" in probes[1] and "--compile" in probes[1]
    assert "graphs=1" in run and "--compile" in run
    # 8,000 images/s: 1.1 x 51,000 / 8,000 + 3 = 10 s an epoch; the budget gives 40 or more.
    epochs = int(run.split("--epochs ")[1].split()[0])
    assert 40 <= epochs <= 55 and f"--t-max {epochs}" in run
    assert "TORCHINDUCTOR_CUDAGRAPHS=1 plif-zoo train" in log
    assert sorted(p.name for p in out.iterdir()) == [
        "best_config.json", "gpu_train.log", "metrics.csv", "summary.json", "tau.csv",
        "w16.part-aa",
    ]  # fmt: skip


@pytest.mark.parametrize(
    "env", [{"FAKE_COMPILE_FAILS": "1"}, {"FAKE_GRAPH_IPS": "1600"}], ids=["fails", "not-faster"]
)
def test_the_run_stays_eager_when_the_cuda_graph_probe_fails_or_is_not_faster(tmp_path, env):
    log, calls, _ = _run(tmp_path, **env)
    run = calls[-1]
    assert "--compile" not in run and "graphs=1" not in run
    assert "the run is eager" in log
    epochs = int(run.split("--epochs ")[1].split()[0])  # 40 s an epoch at 1,500 images/s
    assert 8 <= epochs <= 14


def test_a_run_longer_than_the_call_goes_on_and_the_second_call_collects_it(tmp_path):
    env = {"GPU_TRAIN_SECONDS": "780", "GPU_TRAIN_CALL_SECONDS": "3", "FAKE_TRAIN_SECONDS": "5"}
    log, calls, out = _run(tmp_path, **env)
    assert "goes on in the background" in log and "--collect" in log
    assert not list(out.glob("w16.part-*"))  # nothing to publish yet
    epochs = int(calls[-1].split("--epochs ")[1].split()[0])
    assert epochs == 64  # 780 s at 10 s an epoch: more than 64 would fit; 64 is the cap
    env["GPU_TRAIN_CALL_SECONDS"] = "60"
    log, _, out = _run(tmp_path, "--collect", **env)
    assert "train rc=0" in log and (out / "w16.part-aa").is_file()
    assert (out / "summary.json").is_file() and (out / "best_config.json").is_file()


def test_collect_without_a_run_says_what_happened(tmp_path):
    done = subprocess.run(
        ["bash", str(ROOT / "scripts" / "gpu_train.sh"), "--collect"],
        env={**os.environ, "WORK": str(tmp_path / "none"), "OUT": str(tmp_path / "out")},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1 and "no run in" in done.stdout and "given back" in done.stdout


def test_collect_of_a_run_whose_processes_are_gone_fails_clearly(tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    (work / "run.log").write_text("epoch 1/64: ...\n")  # started, then killed: no run.rc
    done = subprocess.run(
        ["bash", str(ROOT / "scripts" / "gpu_train.sh"), "--collect"],
        env={**os.environ, "WORK": str(work), "OUT": str(tmp_path / "out")},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1 and "processes are gone" in done.stdout
