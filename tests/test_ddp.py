"""`torchrun --nproc_per_node=2 --no-python plif-zoo train ...` on the CPU (gloo): two processes
share the epoch, only rank 0 writes, and a distributed run resumes with every rank's RNG state."""

from __future__ import annotations

import csv
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.fashion_mnist  # tests/conftest.py skips it


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def torchrun_command(*args: str) -> list[str]:
    """`torchrun --nproc_per_node=2 ... plif-zoo train ARGS` on a free local port."""
    bin_dir = Path(sys.executable).parent
    return [
        str(bin_dir / "torchrun"),
        "--nproc_per_node=2",
        "--master_addr=127.0.0.1",
        f"--master_port={free_port()}",
        "--no-python",
        str(bin_dir / "plif-zoo"),
        "train",
        *args,
    ]


def torchrun(*args: str) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        torchrun_command(*args), capture_output=True, text=True, timeout=300, env=ENV
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    return proc


def test_two_cpu_processes_train_one_run_and_resume(tmp_path, tiny_config):
    config = tiny_config
    out = tmp_path / "run"
    common = [
        str(config),
        "--out",
        str(out),
        "--batch-size",
        "4",
        "--max-train-samples",
        "64",
        "--max-eval-samples",
        "24",
        "--threads",
        "1",
        "--checkpoint-every",
        "3",
    ]
    first = torchrun(*common, "--epochs", "1")
    assert "batch 4 x 2" in first.stdout
    assert first.stdout.count("epoch 1/1:") == 1  # one process prints
    # 64 images / (4 per process x 2 processes) = 8 steps per epoch
    assert "step 6/8" in first.stdout
    ckpt = torch.load(out / "checkpoint.pt", weights_only=True)
    assert len(ckpt["rng"]) == 2 and not torch.equal(
        ckpt["rng"][0]["torch"], ckpt["rng"][1]["torch"]
    )
    # resumed with --compile: the network compiled inside DDP (a runtime choice, like --threads)
    torchrun(*common, "--epochs", "2", "--resume", "--compile")
    with open(out / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    assert all(
        int(r["test_samples"]) == 24 and int(r["val_samples"]) == 24 for r in rows
    )  # shards add up
    assert len(list((out / "tb").glob("events.*"))) == 2  # rank 0 only: one file per launch
    assert (out / "best" / "model.safetensors").is_file()
    # one process cannot resume a two-process run: each rank had its own data shard and RNG
    bin_dir = Path(sys.executable).parent
    alone = subprocess.run(
        [str(bin_dir / "plif-zoo"), "train", *common, "--epochs", "3", "--resume"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert alone.returncode == 1 and len(alone.stderr.strip().splitlines()) == 1, alone.stderr
    assert "trained by 2 process(es), not 1" in alone.stderr


def test_sigterm_to_torchrun_checkpoints_every_rank_and_resumes(tmp_path, tiny_config):
    """A session's end under torchrun: the ranks agree on one step, rank 0 checkpoints, all exit."""
    out = tmp_path / "run"
    common = [
        str(tiny_config),
        "--out",
        str(out),
        "--batch-size",
        "4",
        "--max-train-samples",
        "160",
        "--max-eval-samples",
        "24",
        "--threads",
        "1",
    ]
    cmd = torchrun_command(*common, "--epochs", "50")
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=ENV)
    try:
        deadline = time.time() + 240
        while time.time() < deadline and not (out / "metrics.csv").exists():
            time.sleep(0.05)
        assert (out / "metrics.csv").exists(), "the first epoch did not finish in 240 s"
        proc.send_signal(signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        proc.kill()
    stdout, stderr = stdout.decode(), stderr.decode()
    assert "continue with --resume" in stdout, stdout[-2000:] + stderr[-4000:]
    assert "forcefully exiting" not in stderr  # no rank needed torchrun's SIGKILL
    ckpt = torch.load(out / "checkpoint.pt", weights_only=True)
    assert len(ckpt["rng"]) == 2 and 1 <= ckpt["epoch"] + (ckpt["step"] > 0) < 50
    done = ckpt["epoch"] + 1 + (ckpt["step"] > 0)
    torchrun(*common, "--epochs", str(done), "--resume")
    assert [int(r["epoch"]) for r in csv.DictReader(open(out / "metrics.csv"))] == list(
        range(1, done + 1)
    )
