"""plif_zoo.training on tiny subsets of real Fashion-MNIST: recipe, logs, checkpoints, resume,
evaluation statistics, fine-tuning, plots. A narrow network (same layer types as the paper's)
keeps each run to a few seconds on 2 CPU cores."""

from __future__ import annotations

import csv
import dataclasses
import importlib.util
import itertools
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import plif_zoo
from plif_zoo import data, training

pytestmark = pytest.mark.fashion_mnist  # tests/conftest.py skips it

NARROW = {"channels": 32, "fc_hidden": [128]}
# lr 1e-2: a narrow network barely fires at first, and the recipe's 1e-3 needs many steps to wake it
TINY = dict(
    model="fashion-mnist-plif",
    model_kwargs=NARROW,
    T=4,
    batch_size=8,
    max_train_samples=48,
    max_eval_samples=24,
    threads=1,
    backend="torch",
    lr=1e-2,
)


def run(tmp_path: Path, name: str = "run", **kw):
    args = {**TINY, "epochs": 1, "out": str(tmp_path / name), **kw}
    return training.train(args.pop("model"), progress=False, **args)


def weights(path: Path) -> dict[str, torch.Tensor]:
    return training.load_checkpoint(path)["model"]


def assert_same_weights(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def read_csv(path: Path) -> list[dict]:
    with open(path) as f:
        return list(csv.DictReader(f))


def test_recipe_defaults_are_the_papers():
    cfg = training.load_config("fashion-mnist-plif")
    assert (cfg.lr, cfg.t_max, cfg.batch_size, cfg.seed, cfg.val_fraction, cfg.weight_decay) == (
        1e-3,
        64,
        16,
        2020,
        0.15,
        0.0,
    )
    assert cfg.dataset == "fashion-mnist"
    assert (
        training.load_config("fashion-mnist-plif", batch_size=64, lr=4e-3, epochs=None).batch_size
        == 64
    )


def test_every_registry_id_has_a_config_naming_its_dataset():
    for model_id in plif_zoo.list_models():
        assert (training.CONFIG_DIR / f"{model_id}.yaml").is_file(), model_id
        assert training.load_config(model_id).dataset == plif_zoo.model_info(model_id).dataset


def test_a_config_file_with_unknown_keys_is_rejected(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("model: fashion-mnist-plif\nlearning_rate: 0.1\n")
    with pytest.raises(ValueError, match="unknown config keys.*learning_rate"):
        training.load_config(str(path))


def test_training_lowers_the_loss_and_writes_the_run_folder(tmp_path):
    result = run(tmp_path, epochs=3, max_train_samples=96)
    losses = [row["train_loss"] for row in result.history]
    assert losses[-1] < losses[0]
    out = tmp_path / "run"
    rows = read_csv(out / "metrics.csv")
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]
    for key in (
        "train_loss",
        "val_top1",
        "test_top1",
        "accuracy_a",
        "accuracy_b",
        "lr",
        "train_images_per_s",
    ):
        assert key in rows[0]
    # accuracy-A is the best test top-1 so far; accuracy-B the test top-1 at the best validation
    # epoch
    tests = [float(r["test_top1"]) for r in rows]
    vals = [float(r["val_top1"]) for r in rows]
    assert float(rows[-1]["accuracy_a"]) == max(tests)
    assert float(rows[-1]["accuracy_b"]) == tests[vals.index(max(vals))]
    taus = read_csv(out / "tau.csv")
    assert [int(r["epoch"]) for r in taus] == [0, 1, 2, 3]
    assert set(taus[0]) == {"epoch", "features.1", "features.4", "classifier.3", "classifier.6"}
    assert float(taus[0]["features.1"]) == pytest.approx(2.0) and float(
        taus[-1]["features.1"]
    ) != pytest.approx(2.0, abs=1e-7)
    assert list((out / "tb").glob("events.out.tfevents.*"))
    # the best model is a zoo model folder with its metrics in the card
    best = plif_zoo.load(f"local-dir:{out / 'best'}")
    card = plif_zoo.model_folder.read_config(out / "best")["card"]
    assert card["best_epoch"] == int(rows[vals.index(max(vals))]["epoch"])
    assert card["metrics"]["accuracy_b"] == pytest.approx(
        100 * tests[card["best_epoch"] - 1]
    )  # percent
    assert best.config.channels == 32
    again = training.evaluate(
        f"local-dir:{out / 'best'}", "fashion-mnist", max_samples=24, backend="torch"
    )
    assert again["top1"] == pytest.approx(
        card["metrics"]["test_top1"] / 100
    )  # the card's number is reproducible
    summary = json.loads((out / "summary.json").read_text())
    assert summary["accuracy_a"] == max(tests) and summary["accuracy_b"] == float(
        rows[-1]["accuracy_b"]
    )
    assert summary["epochs_done"] == 3 and summary["accuracy_b_epoch"] == card["best_epoch"]


def test_checkpoint_is_weights_only_loadable_with_optimizer_scheduler_and_rng(tmp_path):
    run(tmp_path)
    ckpt = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)
    assert ckpt["epoch"] == 1 and ckpt["step"] == 0
    assert ckpt["optimizer"]["state"] and ckpt["scheduler"]["last_epoch"] == 1
    assert isinstance(ckpt["rng"][0]["torch"], torch.Tensor)
    # checkpoint format 1, as written before training became a package: runs in progress resume
    assert set(ckpt) == {
        "format",
        "config",
        "model",
        "optimizer",
        "scheduler",
        "scaler",
        "rng",
        "history",
        "taus",
        "best_val",
        "best_test",
        "best_epoch",
        "wall_s",
        "epoch",
        "step",
        "running",
    }
    assert ckpt["format"] == 1 and ckpt["running"] == [0.0, 0.0, 0.0]
    assert not list((tmp_path / "run").glob("*.tmp"))


def test_resume_continues_the_epoch_count_exactly(tmp_path):
    run(tmp_path, "straight", epochs=2)
    run(tmp_path, "split", epochs=1)
    resumed = run(tmp_path, "split", epochs=2, resume=True)
    assert [row["epoch"] for row in resumed.history] == [1, 2]
    assert len(read_csv(tmp_path / "split" / "metrics.csv")) == 2
    assert_same_weights(weights(tmp_path / "straight"), weights(tmp_path / "split"))


OLD_COMMIT = "50992df"  # the last commit with the single-file training.py


def old_training_module(tmp_path: Path):
    """plif_zoo/training.py as of OLD_COMMIT, loaded as a module of today's package."""
    repo = Path(__file__).resolve().parent.parent
    try:
        source = subprocess.run(
            ["git", "show", f"{OLD_COMMIT}:plif_zoo/training.py"],
            cwd=repo,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip(f"needs the git history of this repository (commit {OLD_COMMIT})")
    path = tmp_path / "training_old.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("plif_zoo._training_old", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    try:
        spec.loader.exec_module(module)
    finally:
        del sys.modules[spec.name]
    return module


def test_a_mid_epoch_checkpoint_of_the_single_file_training_resumes_exactly(tmp_path):
    """A run started (and stopped mid-epoch) by the code before the package split resumes with
    today's code and ends bit-identical to a run trained by today's code alone."""
    old = old_training_module(tmp_path)
    steps = itertools.count(1)
    old._any = lambda flag, dist_info, device: (
        next(steps) == 3
    )  # a stop request at step 3 of epoch 1
    args = {**TINY, "epochs": 2}
    stopped = old.train(args.pop("model"), out=str(tmp_path / "old"), progress=False, **args)
    assert stopped == {"stopped": True, "epoch": 0, "step": 3, "out": str(tmp_path / "old")}
    assert training.load_checkpoint(tmp_path / "old")["running"][2] == 24.0  # 3 steps x batch 8
    resumed = run(tmp_path, "old", epochs=2, resume=True)
    straight = run(tmp_path, "new", epochs=2)
    assert_same_weights(weights(tmp_path / "new"), weights(tmp_path / "old"))
    assert resumed.history == [
        {
            **row,
            "train_images_per_s": resumed.history[i]["train_images_per_s"],
            "train_wall_s": resumed.history[i]["train_wall_s"],
        }
        for i, row in enumerate(straight.history)
    ]


def test_resume_refuses_a_changed_recipe_and_a_run_is_not_overwritten(tmp_path):
    run(tmp_path)
    with pytest.raises(ValueError, match="already holds a run.*--resume"):
        run(tmp_path)
    with pytest.raises(ValueError, match="lr: checkpoint 0.01 vs now 0.02"):
        run(tmp_path, epochs=2, lr=0.02, resume=True)
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        run(tmp_path, "fresh", resume=True)


def test_checkpoints_inside_an_epoch_resume_exactly_after_a_kill(tmp_path):
    """Kill -9 a run as soon as it has checkpointed mid-epoch; the resumed run ends bit-identical
    to an uninterrupted one and keeps every finished epoch."""
    kw = dict(TINY, epochs=2, max_train_samples=400, batch_size=4, checkpoint_every=5)
    run(tmp_path, "straight", **{k: v for k, v in kw.items() if k != "model"})
    out = tmp_path / "killed"
    script = textwrap.dedent(f"""
        from plif_zoo import training
        kw = {kw!r}
        training.train(kw.pop("model"), out={str(out)!r}, progress=False, **kw)
    """)
    proc = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        deadline = time.time() + 120
        while time.time() < deadline and proc.poll() is None:
            ckpt = out / "checkpoint.pt"
            if (
                ckpt.exists()
                and training.load_checkpoint(ckpt)["epoch"] == 1
                and training.load_checkpoint(ckpt)["step"] > 0
            ):
                break
            time.sleep(0.05)
        assert proc.poll() is None, (
            "the run ended before it could be killed: " + proc.stderr.read().decode()[-2000:]
        )
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    ckpt = training.load_checkpoint(out)
    assert ckpt["epoch"] == 1 and ckpt["step"] > 0  # mid-way through epoch 2, epoch 1 finished
    assert [row["epoch"] for row in ckpt["history"]] == [1]
    resumed = run(tmp_path, "killed", resume=True, **{k: v for k, v in kw.items() if k != "model"})
    assert [row["epoch"] for row in resumed.history] == [1, 2]
    assert_same_weights(weights(tmp_path / "straight"), weights(out))
    straight = read_csv(tmp_path / "straight" / "metrics.csv")
    killed = read_csv(out / "metrics.csv")
    for a, b in zip(straight, killed, strict=True):
        assert (
            a["train_loss"] == pytest.approx(float(b["train_loss"]), rel=1e-6)
            or a["train_loss"] == b["train_loss"]
        )


def test_sigterm_checkpoints_and_stops(tmp_path):
    out = tmp_path / "stopped"
    kw = dict(TINY, epochs=50, max_train_samples=400, batch_size=4)
    script = textwrap.dedent(f"""
        import sys
        from plif_zoo import training
        kw = {kw!r}
        r = training.train(kw.pop("model"), out={str(out)!r}, progress=False, **kw)
        sys.exit(3 if r.stopped else 0)
    """)
    proc = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        deadline = time.time() + 120
        while time.time() < deadline and not (out / "metrics.csv").exists():
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        stdout, _ = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 3
    assert b"continue with --resume" in stdout
    ckpt = training.load_checkpoint(out)
    # mid-epoch (step > 0), or at the end of the epoch the signal arrived in (step 0)
    assert ckpt["epoch"] >= 1 and ckpt["epoch"] + (ckpt["step"] > 0) < 50
    assert f"epoch {ckpt['epoch'] + (ckpt['step'] > 0)}".encode() in stdout


def test_spike_counter_counts_synaptic_operations_from_spikes():
    net = nn.Sequential(nn.Linear(4, 3, bias=False), nn.Conv2d(1, 2, 3, padding=1, bias=False))
    counter = training.SpikeCounter(net)
    net[0](torch.tensor([[1.0, 0.0, 1.0, 1.0]]))  # 3 spikes x 3 targets
    x = torch.zeros(1, 1, 4, 4)
    x[0, 0, 0, 0] = 1.0  # a corner spike reaches 2 x 2 positions in each of 2 output channels
    x[0, 0, 2, 2] = 1.0  # an inner spike reaches 3 x 3 positions in each of 2 output channels
    net[1](x)
    assert counter.synops == 3 * 3 + 2 * 4 + 2 * 9
    net[0](torch.tensor([[0.5, 0.0, 1.0, 1.0]]))  # real-valued input: dense MACs
    assert counter.macs == 4 * 3
    counter.close()


def test_evaluate_reports_accuracy_loss_rates_spikes_and_synops(tmp_path):
    model = plif_zoo.create_model("fashion-mnist-plif", T=4, backend="torch", **NARROW)
    r = training.evaluate(model, "fashion-mnist", max_samples=16, batch_size=8)
    assert r["samples"] == 16 and 0.0 <= r["top1"] <= 1.0 and r["loss"] > 0
    assert set(r["firing_rates"]) == {"features.1", "features.4", "classifier.3", "classifier.6"}
    assert all(0.0 <= v <= 1.0 for v in r["firing_rates"].values())
    assert r["spikes_per_sample"] > 0 and r["synops_per_sample"] > 0 and r["images_per_s"] > 0
    # first conv sees the image once: 8 outputs x 28 x 28 positions x 9 weights
    assert r["dense_macs_per_sample"] == 32 * 28 * 28 * 9


def _imagefolder(root: Path, classes: list[int], per_class: int) -> None:
    from PIL import Image

    for split, ds in (
        ("train", data.get_dataset("fashion-mnist", "train-full")),
        ("test", data.get_dataset("fashion-mnist", "test")),
    ):
        for c in classes:
            d = root / split / f"class{c}"
            d.mkdir(parents=True)
            idx = (ds.targets == c).nonzero().flatten()[:per_class]
            for i in idx.tolist():
                Image.fromarray(ds.images[i, 0].numpy()).save(d / f"{i}.png")


def test_finetune_replaces_the_output_layer_and_can_freeze_the_features(tmp_path):
    base = run(tmp_path, "base", epochs=2, max_train_samples=96)
    _imagefolder(tmp_path / "images", [0, 1, 7], per_class=12)
    before = {k: v.clone() for k, v in base.model.state_dict().items()}
    with pytest.warns(UserWarning, match="output layer rebuilt for 3 classes"):
        result = training.finetune(
            f"local-dir:{tmp_path / 'base' / 'best'}",
            tmp_path / "images",
            3,
            freeze_features=True,
            out=str(tmp_path / "ft"),
            epochs=1,
            batch_size=4,
            T=4,
            lr=1e-2,
            threads=1,
            backend="torch",
            progress=False,
        )
    model = result.model
    assert model.num_classes == 3 and model.output_layer.out_features == 30
    after = model.state_dict()
    for k, v in after.items():
        if k.startswith("features."):
            assert torch.equal(v, before[k]), k  # weights and BatchNorm statistics stay
    assert not torch.equal(after["classifier.2.weight"], before["classifier.2.weight"])
    assert result.history[0]["test_samples"] == 36
    again = plif_zoo.load(f"local-dir:{tmp_path / 'ft' / 'best'}")
    assert again.num_classes == 3


def test_plot_writes_accuracy_and_tau_figures(tmp_path):
    import matplotlib

    run(tmp_path, epochs=2)
    before = matplotlib.get_backend()
    matplotlib.use("pdf")  # as a notebook's inline backend: plotting must not switch it
    try:
        paths = training.plot_run(tmp_path / "run")
        assert matplotlib.get_backend() == "pdf"
    finally:
        matplotlib.use(before)
    assert [p.name for p in paths] == ["accuracy.png", "tau.png"]
    for p in paths:
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.stat().st_size > 5000


def test_amp_on_cpu_trains_in_bfloat16(tmp_path):
    result = run(tmp_path, amp=True, max_train_samples=16)
    assert np.isfinite(result.history[0]["train_loss"])


def test_event_frames_train_end_to_end(tmp_path):
    from test_data import nmnist_bin, random_events

    rng = np.random.default_rng(0)
    for split, n in (("Train", 7), ("Test", 1)):
        for digit in range(10):
            folder = tmp_path / "nmnist" / "extract" / split / str(digit)
            folder.mkdir(parents=True)
            for k in range(n):
                (folder / f"{k:05d}.bin").write_bytes(nmnist_bin(random_events(rng, 40, 34)))
    result = training.train(
        "nmnist-plif",
        data_dir=str(tmp_path / "nmnist"),
        out=str(tmp_path / "run"),
        epochs=1,
        T=4,
        batch_size=8,
        model_kwargs=NARROW,
        threads=1,
        backend="torch",
        progress=False,
    )
    row = result.history[0]
    assert (row["val_samples"], row["test_samples"]) == (10, 10) and np.isfinite(row["train_loss"])


def test_eval_slice_is_evenly_spaced_and_covers_a_class_sorted_split():
    targets = torch.arange(10).repeat_interleave(100)  # event splits are ordered by class
    picked = training.eval_slice(len(targets), 20)
    assert picked == list(range(0, 1000, 50))
    assert torch.bincount(targets[picked]).tolist() == [2] * 10
    assert training.eval_slice(5, 20) == [0, 1, 2, 3, 4]


def test_compile_trains_with_fused_adam_and_resumes_exactly(tmp_path):
    # --compile: the training step through torch.compile(fullgraph=True) and fused Adam; the
    # checkpoint holds the plain model's weights, and a compiled run resumes bit for bit.
    from torch._dynamo.utils import counters

    kw = dict(compile=True, backend="auto", max_train_samples=24)
    counters.clear()
    straight = run(tmp_path, "straight", epochs=2, **kw)
    assert counters["stats"]["unique_graphs"] >= 1 and not counters["graph_break"]
    run(tmp_path, "split", epochs=1, **kw)
    run(tmp_path, "split", epochs=2, resume=True, **kw)
    assert all(np.isfinite(row["train_loss"]) for row in straight.history)
    ckpt = torch.load(tmp_path / "straight" / "checkpoint.pt", weights_only=True)
    assert ckpt["optimizer"]["param_groups"][0]["fused"] is True
    assert not any("_orig_mod" in k for k in ckpt["model"])
    assert_same_weights(weights(tmp_path / "straight"), weights(tmp_path / "split"))
    # the best/ folder of a compiled run is an ordinary zoo model folder
    plif_zoo.load(f"local-dir:{tmp_path / 'straight' / 'best'}")


def test_a_resume_with_compile_keeps_the_adam_it_started_with(tmp_path):
    """Loading the optimizer state restores its ``fused`` flag; Adam must be built with the same
    one (a fused flag on an unfused Adam breaks GradScaler.step on CUDA)."""
    from plif_zoo.training.build import build_run
    from plif_zoo.training.runtime import Dist

    run(tmp_path, "eager", epochs=1)
    ckpt = training.load_checkpoint(tmp_path / "eager")
    assert not ckpt["optimizer"]["param_groups"][0]["fused"]
    cfg = training.load_config(TINY["model"], **{**TINY, "out": str(tmp_path / "eager")})
    cfg = training.load_config(TINY["model"], **{**dataclasses.asdict(cfg), "compile": True})
    built = build_run(cfg, None, ckpt, Dist(), torch.device("cpu"))
    assert not built.optimizer.defaults["fused"]
    assert not getattr(built.optimizer, "_step_supports_amp_scaling", False)
    # a CPU run's scaler is stored disabled ({}); resumed where --amp enables one: a fresh one
    from plif_zoo.training.checkpoint import restore_checkpoint

    assert ckpt["scaler"] == {}
    scaler = torch.amp.GradScaler("cpu", enabled=True)
    restore_checkpoint(ckpt, {**built.parts(), "scaler": scaler}, 0, torch.device("cpu"))
    assert scaler.is_enabled() and scaler.get_scale() == 2.0**16


def test_without_validation_best_keeps_the_first_of_tied_epochs(tmp_path, monkeypatch):
    from plif_zoo.training import loop

    ties = iter([0.5, 0.5])

    def tied(run_):
        return {"test_loss": 0.1, "test_top1": next(ties), "test_samples": 24}

    monkeypatch.setattr(loop, "_evaluate_epoch", tied)
    run(tmp_path, "tied", epochs=2, val_fraction=0)
    summary = json.loads((tmp_path / "tied" / "summary.json").read_text())
    card = json.loads((tmp_path / "tied" / "best" / "config.json").read_text())["card"]
    assert summary["accuracy_a_epoch"] == 1 and card["best_epoch"] == 1


def test_a_stop_during_evaluation_ends_the_run_after_that_epochs_checkpoint(tmp_path, monkeypatch):
    from plif_zoo.training import loop

    straight = run(tmp_path, "straight", epochs=2)
    evaluate = loop._evaluate_epoch

    def evaluate_then_sigterm(run_):
        os.kill(os.getpid(), signal.SIGTERM)  # as a session's end would, mid-evaluation
        return evaluate(run_)

    monkeypatch.setattr(loop, "_evaluate_epoch", evaluate_then_sigterm)
    stopped = run(tmp_path, "split", epochs=2)
    assert stopped.stopped and stopped.epochs == 1
    assert stopped.step == 0  # no step of epoch 2 after the signal
    assert training.load_checkpoint(tmp_path / "split")["step"] == 0
    assert len(read_csv(tmp_path / "split" / "metrics.csv")) == 1
    monkeypatch.setattr(loop, "_evaluate_epoch", evaluate)
    resumed = run(tmp_path, "split", epochs=2, resume=True)
    assert [row["epoch"] for row in resumed.history] == [1, 2]
    assert_same_weights(weights(tmp_path / "straight"), weights(tmp_path / "split"))
    assert resumed.accuracy_b == straight.accuracy_b


def test_eval_of_the_val_split_uses_the_hold_out_the_run_trained_with(tmp_path):
    from plif_zoo.training.evaluation import _val_fraction_of_model

    run(tmp_path, "v30", val_fraction=0.3)
    assert _val_fraction_of_model(f"local-dir:{tmp_path / 'v30' / 'best'}") == 0.3
    assert _val_fraction_of_model("fashion-mnist-plif") == 0.15  # published cards: the recipe's
    run(tmp_path, "all", val_fraction=0)
    with pytest.raises(ValueError, match="no validation hold-out"):
        training.evaluate(str(tmp_path / "all" / "best"), split="val", max_samples=8)
    r = training.evaluate(
        str(tmp_path / "all" / "best"), split="val", val_fraction=0.2, max_samples=8, T=2
    )
    assert r["split"] == "val" and r["samples"] == 8


def test_eval_reads_the_card_of_a_local_dir_under_the_home_folder(tmp_path, monkeypatch):
    from plif_zoo.training.evaluation import _dataset_name_of_model, _val_fraction_of_model

    model = plif_zoo.create_model("mnist-plif", T=2, backend="torch")
    card = dict(model_id="mnist-plif", dataset="mnist", recipe={"val_fraction": 0.25})
    plif_zoo.save_pretrained(model, tmp_path / "m", **card)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert _dataset_name_of_model("local-dir:~/m") == "mnist"
    assert _val_fraction_of_model("local-dir:~/m") == 0.25


def test_eval_takes_fewer_classes_than_the_model_outputs_and_refuses_more():
    torch.manual_seed(0)
    model = plif_zoo.create_model(
        "mnist-plif", T=1, channels=4, fc_hidden=(8,), backend="torch"
    ).eval()
    images = torch.rand(4, 1, 28, 28)
    few = torch.utils.data.TensorDataset(images, torch.tensor([0, 3, 4, 2]))
    few.targets = few.tensors[1]  # 5 of the model's 10 classes
    assert training.evaluate(model, few)["samples"] == 4
    many = torch.utils.data.TensorDataset(images, torch.tensor([0, 3, 11, 2]))
    many.targets = many.tensors[1]
    with pytest.raises(ValueError, match="the dataset has 12 classes but the model outputs 10"):
        training.evaluate(model, many)


@pytest.mark.parametrize("num_workers", [0, 2])
def test_augmented_batches_are_the_same_whether_the_epoch_resumes_or_not(num_workers):
    """Random augmentation (MNIST's RandomAffine) with DataLoader workers: each batch is seeded
    by its step, not by the worker that happens to read it after a resume."""
    from plif_zoo.data import TensorImageDataset, train_transform
    from plif_zoo.training.datasets import train_loader

    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (48, 1, 28, 28), dtype=torch.uint8, generator=g)
    ds = TensorImageDataset(images, torch.zeros(48, dtype=torch.long), train_transform("mnist"))
    batches = [list(range(i * 6, (i + 1) * 6)) for i in range(8)]

    kw = dict(seed=2020, epoch=3, rank=0, num_workers=num_workers, pin=False)
    torch.manual_seed(1)
    through, at_step_3 = [], None
    for step, (x, _) in enumerate(train_loader(ds, batches, 0, **kw)):
        through.append(x)
        if step == 2:  # what the checkpoint at step 3 holds of the global RNG
            at_step_3 = torch.get_rng_state()
    torch.set_rng_state(at_step_3)
    resumed = [x for x, _ in train_loader(ds, batches, 3, **kw)]
    assert len(resumed) == 5
    assert all(torch.equal(a, b) for a, b in zip(through[3:], resumed, strict=True))
    assert not torch.equal(through[0], through[1])  # the augmentation is random per batch
