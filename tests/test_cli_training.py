"""`plif-zoo train / eval / finetune / plot` as a user runs them, on tiny real Fashion-MNIST
subsets."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from plif_zoo import data

pytestmark = pytest.mark.fashion_mnist  # tests/conftest.py skips it
SMALL = [
    "--batch-size",
    "8",
    "--max-train-samples",
    "48",
    "--max-eval-samples",
    "24",
    "--threads",
    "1",
]


def cli(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    plif_zoo = Path(sys.executable).with_name("plif-zoo")
    proc = subprocess.run(
        [str(plif_zoo), *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"plif-zoo {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}"
        )
    return proc


@pytest.fixture
def config(tiny_config) -> Path:
    return tiny_config


def epochs_of(run: Path) -> list[int]:
    with open(run / "metrics.csv") as f:
        return [int(r["epoch"]) for r in csv.DictReader(f)]


def test_train_then_resume_continues_the_epoch_count(tmp_path, config):
    out = tmp_path / "run"
    first = cli("train", str(config), "--epochs", "1", "--out", str(out), *SMALL)
    assert "epoch 1/1" in first.stdout
    assert epochs_of(out) == [1]
    cli("train", str(config), "--epochs", "2", "--out", str(out), "--resume", *SMALL)
    assert epochs_of(out) == [1, 2]
    again = cli("train", str(config), "--epochs", "2", "--out", str(out), *SMALL, check=False)
    assert again.returncode == 1 and "--resume" in again.stderr and "Traceback" not in again.stderr

    result = json.loads(cli("eval", str(out / "best"), "--max-eval-samples", "16", "--json").stdout)
    assert result["samples"] == 16 and 0.0 <= result["top1"] <= 1.0
    assert {
        "loss",
        "firing_rates",
        "spikes_per_sample",
        "synops_per_sample",
        "images_per_s",
    } <= set(result)

    plots = cli("plot", str(out)).stdout.split()
    assert [Path(p).name for p in plots] == ["accuracy.png", "tau.png"]


def test_eval_of_an_untrained_registry_model_on_the_validation_split():
    result = json.loads(
        cli(
            "eval",
            "fashion-mnist-plif",
            "--pretrained",
            "false",
            "--split",
            "val",
            "--max-eval-samples",
            "8",
            "--T",
            "2",
            "--backend",
            "torch",
            "--json",
        ).stdout
    )
    assert result["split"] == "val" and result["samples"] == 8 and result["pretrained"] is False


def test_a_missing_data_folder_is_a_clear_error(tmp_path, config):
    proc = cli(
        "train",
        str(config),
        "--data-dir",
        str(tmp_path / "no-such-folder"),
        "--out",
        str(tmp_path / "r"),
        check=False,
    )
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "no-such-folder" in proc.stderr and "does not exist" in proc.stderr
    empty = tmp_path / "empty"
    empty.mkdir()
    proc = cli(
        "eval", "fashion-mnist-plif", "--pretrained", "false", "--data-dir", str(empty), check=False
    )
    assert proc.returncode == 1
    assert "train-images-idx3-ubyte" in proc.stderr and "dataset-fashion-mnist" in proc.stderr


def test_finetune_to_a_new_class_count(tmp_path, config):
    from PIL import Image

    base = tmp_path / "base"
    cli("train", str(config), "--epochs", "1", "--out", str(base), *SMALL)
    test = data.get_dataset("fashion-mnist", "test")
    for split, offset in (("train", 0), ("test", 100)):
        for c in (3, 5):
            folder = tmp_path / "images" / split / f"c{c}"
            folder.mkdir(parents=True)
            for i in (test.targets == c).nonzero().flatten()[offset : offset + 8].tolist():
                Image.fromarray(test.images[i, 0].numpy()).save(folder / f"{i}.png")
    out = tmp_path / "ft"
    proc = cli(
        "finetune",
        str(base / "best"),  # a bare model folder
        "--data-dir",
        str(tmp_path / "images"),
        "--num-classes",
        "2",
        "--freeze-features",
        "--epochs",
        "1",
        "--batch-size",
        "4",
        "--T",
        "4",
        "--threads",
        "1",
        "--backend",
        "torch",
        "--out",
        str(out),
    )
    assert "imagefolder" in proc.stdout
    config_json = json.loads((out / "best" / "config.json").read_text())
    assert config_json["architecture"]["num_classes"] == 2
    assert config_json["card"]["base_model"] == f"local-dir:{base / 'best'}"
